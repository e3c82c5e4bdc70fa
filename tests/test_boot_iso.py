"""The remastered real Tiny Core ISO boots: BIOS as CD, BIOS as disk, UEFI as CD (and UEFI as disk)."""

from __future__ import annotations

import secrets

import pytest
from conftest import EXT_MARKER, TCZ, needs_fixtures, pebuilder, seed_style_setup

pytestmark = pytest.mark.boot

HOST = "pb" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def remastered(tmp_path_factory, template_iso):
    base = tmp_path_factory.mktemp("bootiso")
    cfg, exts = seed_style_setup(base, template_iso, base / "work", HOST)
    pebuilder("remaster", cfg, "rebuild", "--ext-dir", exts, "--ext-dir", TCZ, "--menu-timeout", "1")
    return base / "work/ezremaster.iso"


@needs_fixtures
@pytest.mark.parametrize("firmware,media", [("bios", "cdrom"), ("bios", "disk"), ("uefi", "cdrom"), ("uefi", "disk")])
def test_remastered_iso_boots(remastered, firmware, media, tmp_path):
    log = tmp_path / "serial.log"
    proc = pebuilder("boot", remastered, "--firmware", firmware, "--as", media,
                     "--expect", f"Setting hostname to {HOST}", "--expect", EXT_MARKER,
                     "--timeout", "170", "--log", log, check=False)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    # each expected text is printed with the time it appeared, then a summary
    seen = {ln.split(" s  ", 1)[1] for ln in lines[:-1]}
    assert seen == {f"Setting hostname to {HOST}", EXT_MARKER}
    assert all(float(ln.split()[0]) > 0 for ln in lines[:-1])
    assert lines[-1].startswith("booted: all 2 expected texts seen in ")
    assert EXT_MARKER in log.read_text(errors="replace")


def test_boot_failure_reports_tail_and_exit_code(tmp_path):
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"\0" * (1 << 20))
    proc = pebuilder("boot", blank, "--as", "disk", "--expect", "never printed", "--timeout", "8", check=False)
    assert proc.returncode == 36
    assert "boot check failed (timed out after 8 s)" in proc.stderr and "'never printed'" in proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
