"""Shared test helpers: the real Tiny Core fixtures, a template ISO built from them, the CLI.

Honest skips: a test that needs the Tiny Core fixtures says so per test (`@needs_fixtures`, or by
using `template_iso`); it skips when they are absent, and fails instead when
PEBUILDER_REQUIRE_FIXTURES=1 (CI), so a missing fixture folder can never turn the suite green.
Tests that need Debian's mirror (apt) are marked `network` and fail instead of skipping when
PEBUILDER_REQUIRE_NETWORK=1.

Downloads go to a private cache in the repository (`.test-cache`), never to ~/.cache, and are
reused between runs.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import fixtures as tc_fixtures
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_CACHE = ROOT / ".test-cache"
# Session-wide, before any test or subprocess runs: pebuilder (in-process and through the CLI, which
# inherits the environment) keeps its downloads here.
os.environ["PEBUILDER_CACHE"] = str(TEST_CACHE)
# $PEBUILDER_FIXTURES, else ../shared/fixtures/tinycore, else the pinned files downloaded (once, verified)
# from Tiny Core's mirror into the test cache: see fixtures.py.
LOCATED = tc_fixtures.locate()
FIXTURES = LOCATED.folder or LOCATED.expected
TCZ = FIXTURES / "tcz-14.x-x86_64"
ROOTFS = FIXTURES / "tc6.4.1-x86_64" / "rootfs64.gz"
VMLINUZ = FIXTURES / "tc6.4.1-x86_64" / "vmlinuz64"
ISOLINUX = FIXTURES / "tc6.x-corepure64-isolinux"
EXT_MARKER = "PEBUILDER-EXT-MARKER-OK"

needs_fixtures = pytest.mark.needs_fixtures


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def require_fixtures() -> None:
    """Skip (or, with PEBUILDER_REQUIRE_FIXTURES=1, fail) when the Tiny Core fixtures are absent."""
    if LOCATED.folder is not None:
        return
    if _flag("PEBUILDER_REQUIRE_FIXTURES"):
        pytest.fail(f"{MISSING} ({LOCATED.reason}) and PEBUILDER_REQUIRE_FIXTURES=1", pytrace=False)
    pytest.skip(f"{MISSING} (how to get them: see the end of the run)")


MISSING = "Tiny Core fixtures missing"


def pytest_report_header(config) -> str | None:
    if LOCATED.folder is not None:
        return f"Tiny Core fixtures: {LOCATED.folder} ({LOCATED.source})"
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The one loud explanation of the fixture skips, with the commands that end them."""
    if LOCATED.folder is not None:
        return
    hit = [r for kind in ("skipped", "failed", "error") for r in terminalreporter.stats.get(kind, [])
           if MISSING in str(getattr(r, "longrepr", ""))]
    if not hit:
        return
    tr = terminalreporter
    cmd = " ".join(["pytest", *config.invocation_params.args])
    tr.write_sep("!", f"{len(hit)} tests did not run: {MISSING}", red=True, bold=True)
    for note in LOCATED.notes:
        tr.write_line(f"  {note}", red=True)
    tr.write_line("Run the whole suite with one of:", bold=True)
    tr.write_line(f"  PEBUILDER_FIXTURES=/path/to/fixtures/tinycore {cmd}")
    tr.write_line(f"  {cmd}    # where http://tinycorelinux.net/ is reachable: the pinned files are downloaded once "
                  f"into {LOCATED.expected}")
    tr.write_line(f"  PEBUILDER_TC_MIRROR=http://<a Tiny Core mirror>/ {cmd}")
    tr.write_line("(the files, their md5s and their places on the mirror are listed in tests/fixtures.py)")


def network_unavailable(reason: str) -> None:
    """For `network` tests whose download failed: skip, or fail with PEBUILDER_REQUIRE_NETWORK=1."""
    if _flag("PEBUILDER_REQUIRE_NETWORK"):
        pytest.fail(reason + " (PEBUILDER_REQUIRE_NETWORK=1)", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "first: a long test chain started before everything else")
    config.addinivalue_line("markers", "needs_fixtures: needs the Tiny Core fixtures in ../shared (skips, or "
                                       "fails with PEBUILDER_REQUIRE_FIXTURES=1)")
    TEST_CACHE.mkdir(exist_ok=True)


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `first` (one long chain of boots, e.g. a whole netinstall) start before the rest,
    so that with `-n 2` they run beside the others instead of after them (pyproject's `--dist loadgroup`
    keeps each such chain, an `xdist_group`, on one worker)."""
    items.sort(key=lambda item: item.get_closest_marker("first") is None)


def pytest_runtest_setup(item) -> None:
    if item.get_closest_marker("needs_fixtures"):
        require_fixtures()


def pebuilder(*args: str | os.PathLike, check: bool = True, env: dict | None = None,
              cwd: Path | None = None, user: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pebuilder", *map(str, args)]
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(ROOT / "src")
    proc = subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"pebuilder {' '.join(map(str, args))} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def ssh_public_key(comment: str = "alice@test", seed: str = "pebuilder-test") -> str:
    """A well-formed ed25519 public key line (the blob decodes to its type); not anyone's real key."""
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + hashlib.sha256(seed.encode()).digest()
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


def ran(report: dict) -> list[str]:
    """Names of the stages that ran, from a --json report."""
    return [s["stage"] for s in report["stages"] if s["ran"]]


def make_iso(tree: Path, out: Path, volume: str = "CorePure64") -> Path:
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-l", "-J", "-R", "-V", volume,
                    "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
                    "-b", "boot/isolinux/isolinux.bin", "-c", "boot/isolinux/boot.cat", "-o", str(out),
                    str(tree)], check=True, capture_output=True)
    return out


def make_template_tree(tree: Path) -> Path:
    """The tree of a real CorePure64-6.4.1-style ISO, as the fixtures' README describes."""
    if tree.exists():
        shutil.rmtree(tree)
    (tree / "boot/isolinux").mkdir(parents=True)
    shutil.copyfile(VMLINUZ, tree / "boot/vmlinuz64")
    shutil.copyfile(ROOTFS, tree / "boot/corepure64.gz")
    for f in ISOLINUX.iterdir():
        shutil.copyfile(f, tree / "boot/isolinux" / f.name)
    return tree


def make_template_iso(out: Path) -> Path:
    """A real CorePure64-6.4.1-style ISO."""
    tree = make_template_tree(out.parent / (out.stem + "-tree"))
    make_iso(tree, out)
    shutil.rmtree(tree)
    return out


def make_marker_extension(folder: Path, name: str = "pbtest", marker: str = EXT_MARKER) -> Path:
    """A .tcz whose startup script prints a marker on the console, as tce-load would run it."""
    src = folder / f"{name}-src"
    script = src / "usr/local/tce.installed" / name
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!/bin/sh\necho {marker} > /dev/console\n")
    script.chmod(0o755)
    (src / "usr/local/share/pbtest").mkdir(parents=True, exist_ok=True)
    (src / "usr/local/share/pbtest/hello.txt").write_text("hello from pbtest\n")
    out = folder / f"{name}.tcz"
    subprocess.run(["mksquashfs", str(src), str(out), "-b", "4k", "-no-xattrs", "-all-root", "-noappend",
                    "-quiet", "-no-progress"], check=True, capture_output=True)
    shutil.rmtree(src)
    return out


@pytest.fixture(scope="session")
def template_iso(tmp_path_factory) -> Path:
    require_fixtures()
    return make_template_iso(tmp_path_factory.mktemp("template") / "CorePure64-6.4.1.iso")


def seed_style_setup(base: Path, iso: Path, work: Path, host: str) -> tuple[Path, Path]:
    """An extension folder with the marker extension, and a seed-style ezremaster.cfg using it."""
    exts = base / "exts"
    exts.mkdir(parents=True)
    make_marker_extension(exts)
    return write_seed_style_cfg(base / "ezremaster.cfg", iso, work, host), exts


def write_seed_style_cfg(path: Path, iso: Path, work: Path, host: str) -> Path:
    path.write_text(
        f"cd_location = {iso}\n"
        f"temp_dir = {work}/\n"
        f"cc = console=ttyS0 host={host}\n"
        "app_outside_initrd_onboot = dialog.tcz\n"
        "app_outside_initrd_onboot = db.tcz\n"
        "app_extract_initrd = pbtest.tcz\n"
        "app_extract_initrd = kmaps.tcz\n")
    return path


@pytest.fixture
def open_workspace(template_iso):
    """A folder outside pytest's private tmp (which only root can enter) holding a copy of the
    template ISO, so a build can run as an unprivileged user; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="pebuilder-open-"))
    os.chmod(base, 0o755)
    iso = base / "template.iso"
    shutil.copyfile(template_iso, iso)
    os.chmod(iso, 0o644)
    yield base, iso
    shutil.rmtree(base, ignore_errors=True)
