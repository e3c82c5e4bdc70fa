"""The cheap paths stay cheap: a no-op reads nothing and runs nothing, a change of the onboot list or of
boot codes repacks nothing, and pebuilder's own digest is remembered without ever going stale.

Behaviour only (which stages ran, how many files' contents were read, that the initrd file and the
extracted tree are untouched); the timings are bench/remaster_speed.py's business.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, TCZ, make_iso, make_template_tree, needs_fixtures, pebuilder, ran

from pebuilder.engine import fingerprint
from pebuilder.engine.fingerprint import tree_digest

INITRD_CHAIN = {"unpack-initrd", "extensions-initrd", "customise", "kernel-modules", "pack-initrd"}


def write_config(folder: Path, iso: Path, *, onboot: list[str], codes: list[str], hostname: str,
                 autologin: bool = True, serial: bool = False, timeout: float = 1) -> Path:
    cfg = folder / "pebuilder.toml"
    cfg.write_text(
        f'system = "tinycore"\n[template]\niso = "{iso}"\n[work]\ndir = "work"\n'
        f'[extensions]\ndirs = ["{TCZ}"]\ninitrd = ["kmaps", "getlocale"]\nonboot = {json.dumps(onboot)}\n'
        f'[boot]\ncodes = {json.dumps(codes)}\nhostname = "{hostname}"\nautologin = {str(autologin).lower()}\n'
        f'serial = {str(serial).lower()}\ntimeout = {timeout}\n'
        f'[output.iso]\npath = "out/cheap.iso"\n')
    return cfg


def remaster(cfg: Path, function: str = "rebuild") -> dict:
    return json.loads(pebuilder("remaster", cfg, function, "--json").stdout)


class Snapshot:
    """What must not change when nothing that feeds the initrd changed."""

    def __init__(self, work: Path):
        initrd = work / ".pebuilder/initrd/corepure64.gz"
        st = initrd.stat()
        self.initrd = (hashlib.sha256(initrd.read_bytes()).hexdigest(), st.st_ino, st.st_mtime_ns)
        self.extract = tree_digest(work / "extract")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and (self.initrd, self.extract) == (other.initrd, other.extract)


@pytest.fixture
def built(tmp_path, template_iso):
    """A Tiny Core remaster with extensions in the initrd and onboot, built once."""
    cfg = write_config(tmp_path, template_iso, onboot=["dialog", "db"], codes=["loglevel=3"], hostname="pbcheap")
    first = remaster(cfg)
    assert set(ran(first)) >= INITRD_CHAIN and first["hashed_files"] > 0
    return tmp_path, cfg, template_iso


@needs_fixtures
def test_no_op_rebuild_and_packagehd_run_nothing_and_read_nothing(built):
    folder, cfg, _ = built
    work, iso = folder / "work", folder / "out/cheap.iso"
    before, iso_sum = Snapshot(work), hashlib.sha256(iso.read_bytes()).hexdigest()
    for _ in range(2):
        again = remaster(cfg)
        assert ran(again) == [] and again["hashed_files"] == 0
    assert Snapshot(work) == before and hashlib.sha256(iso.read_bytes()).hexdigest() == iso_sum
    # a skipped stage still reports its outputs' sizes (recorded when it ran)
    sizes = {s["stage"]: s["outputs"] for s in again["stages"]}
    assert sizes["pack-initrd"] == {str(work / ".pebuilder/initrd"): (work / ".pebuilder/initrd/corepure64.gz")
                                    .stat().st_size}

    hd = remaster(cfg, "packagehd")
    assert ran(hd) == ["disk-buildpackage.raw"] and hd["hashed_files"] == 0
    hd_again = remaster(cfg, "packagehd")
    assert ran(hd_again) == [] and hd_again["hashed_files"] == 0
    assert "package-iso" not in [s["stage"] for s in hd_again["stages"]]
    assert Snapshot(work) == before


@needs_fixtures
def test_onboot_change_repacks_nothing(built):
    folder, _, iso_in = built
    work = folder / "work"
    before = Snapshot(work)
    cfg = write_config(folder, iso_in, onboot=["dialog", "ethtool"], codes=["loglevel=3"], hostname="pbcheap")
    report = remaster(cfg)
    assert "pack-initrd" not in ran(report) and not INITRD_CHAIN & set(ran(report))
    assert "extensions-cde" in ran(report) and "package-iso" in ran(report)
    assert Snapshot(work) == before
    assert (work / ".pebuilder/cde/onboot.lst").read_text() == "dialog.tcz\nethtool.tcz\n"
    assert (work / "image/cde/optional/ethtool.tcz").is_file()
    assert not (work / "image/cde/optional/db.tcz").exists()


@needs_fixtures
@pytest.mark.parametrize("change", [
    {"codes": ["loglevel=3", "waitusb=5"]},
    {"hostname": "pbother"},
    {"autologin": False},
    {"serial": True},
    {"timeout": 3},
])
def test_boot_code_change_repacks_nothing(built, change):
    """hostname, autologin and serial are boot codes (host=, noautologin, console=) in Tiny Core: none
    of them may rerun the initrd chain, whose rerun would repack the initrd with new time stamps."""
    folder, _, iso_in = built
    work = folder / "work"
    before = Snapshot(work)
    kwargs: dict = {"onboot": ["dialog", "db"], "codes": ["loglevel=3"], "hostname": "pbcheap", **change}
    report = remaster(write_config(folder, iso_in, **kwargs))
    assert "pack-initrd" not in ran(report) and not INITRD_CHAIN & set(ran(report))
    assert ran(report)[0] == "bootcode" and "package-iso" in ran(report)
    assert Snapshot(work) == before
    menu = (work / "image/boot/isolinux/isolinux.cfg").read_text()
    if "codes" in change:
        assert "waitusb=5" in menu
    if "hostname" in change:
        assert "host=pbother" in menu and "host=pbcheap" not in menu
    if "autologin" in change:
        assert "noautologin" in menu
    if "serial" in change:
        assert "console=ttyS0,115200" in menu


@needs_fixtures
def test_large_template_iso_is_hashed_once(tmp_path):
    """A 64 MiB template ISO is read on the first run only; a touch costs one read and reruns nothing."""
    tree = make_template_tree(tmp_path / "tree")
    (tree / "filler.bin").write_bytes(os.urandom(1 << 20) * 64)
    big = make_iso(tree, tmp_path / "big.iso")
    assert big.stat().st_size > 64 << 20
    cfg = write_config(tmp_path, big, onboot=["dialog"], codes=[], hostname="pbbig")
    first = remaster(cfg)
    assert "template" in ran(first)
    noop = remaster(cfg)
    assert ran(noop) == [] and noop["hashed_files"] == 0
    os.utime(big)  # same bytes, new mtime: read once more to learn that, then remembered again
    touched = remaster(cfg)
    assert ran(touched) == [] and touched["hashed_files"] == 1
    assert remaster(cfg)["hashed_files"] == 0


@needs_fixtures
def test_no_op_imports_neither_rich_nor_the_builders(built):
    """The no-op path (key computation) loads no progress display, no Debian library and no writer."""
    folder, cfg, _ = built
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pebuilder", "remaster", str(cfg), "rebuild"],
                          capture_output=True, text=True, env=env, check=True)
    assert "skipped (unchanged)" in proc.stderr and "✓" not in proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    for heavy in ("rich", "debian", "pebuilder.outputs.iso", "pebuilder.outputs.disk", "pebuilder.customise.accounts",
                  "pebuilder.tinycore.initrd_ext", "pebuilder.formats.squashfs"):
        assert heavy not in imported, heavy


# -- pebuilder's own digest ------------------------------------------------------------------------

@pytest.fixture
def package_copy(tmp_path, monkeypatch) -> Iterator[Path]:
    """A copy of a small package, with files old enough that their digest may be remembered."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("A = 1\n")
    (pkg / "sub/b.py").write_text("B = 2\n")
    (pkg / "sub/data.sh").write_text("#!/bin/sh\n")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__/a.cpython-311.pyc").write_bytes(b"ignored")
    for p in pkg.rglob("*"):
        os.utime(p, (1_600_000_000, 1_600_000_000))
    monkeypatch.setattr(fingerprint, "PACKAGE", pkg)
    monkeypatch.setenv("PEBUILDER_CACHE", str(tmp_path / "cache"))
    fingerprint.source_digest.cache_clear()
    yield pkg
    fingerprint.source_digest.cache_clear()


def _digest_counting_reads(monkeypatch) -> tuple[str, int]:
    reads = []
    real = fingerprint._content_digest

    def counting(files: list) -> str:
        reads.append(1)
        return real(files)

    monkeypatch.setattr(fingerprint, "_content_digest", counting)
    fingerprint.source_digest.cache_clear()
    return fingerprint.source_digest(), len(reads)


def test_source_digest_is_remembered_and_never_stale(package_copy, monkeypatch):
    pkg = package_copy
    first, reads = _digest_counting_reads(monkeypatch)
    assert reads == 1
    assert _digest_counting_reads(monkeypatch) == (first, 0)  # remembered: no file read
    # an edit that keeps the size (the mtime moves, as every write moves it)
    (pkg / "sub/b.py").write_text("B = 3\n")
    os.utime(pkg / "sub/b.py", (1_600_000_100, 1_600_000_100))
    edited, reads = _digest_counting_reads(monkeypatch)
    assert edited != first and reads == 1
    assert _digest_counting_reads(monkeypatch) == (edited, 0)
    # an added file, a removed file, a reinstall (new inodes, mtimes kept)
    (pkg / "new.py").write_text("")
    os.utime(pkg / "new.py", (1_600_000_000, 1_600_000_000))
    added, _ = _digest_counting_reads(monkeypatch)
    assert added != edited
    (pkg / "new.py").unlink()
    assert _digest_counting_reads(monkeypatch)[0] == edited
    (pkg / "a.py.new").write_bytes((pkg / "a.py").read_bytes())  # made while the old one exists: a new inode
    os.utime(pkg / "a.py.new", (1_600_000_000, 1_600_000_000))
    os.replace(pkg / "a.py.new", pkg / "a.py")
    assert _digest_counting_reads(monkeypatch) == (edited, 1)
    # byte code is not pebuilder's source
    (pkg / "__pycache__/a.cpython-311.pyc").write_bytes(b"other")
    assert _digest_counting_reads(monkeypatch) == (edited, 0)


def test_source_digest_of_a_file_just_written_is_not_remembered(package_copy, monkeypatch):
    """Within one mtime tick a file can change again without its stat changing: no record is kept."""
    (package_copy / "a.py").write_text("A = 5\n")  # mtime: now
    d1, reads1 = _digest_counting_reads(monkeypatch)
    d2, reads2 = _digest_counting_reads(monkeypatch)
    assert d1 == d2 and (reads1, reads2) == (1, 1)


def test_source_digest_survives_a_damaged_or_unwritable_cache(package_copy, monkeypatch, tmp_path):
    first, _ = _digest_counting_reads(monkeypatch)
    for record in (tmp_path / "cache/source-digest").iterdir():
        record.write_text("{not json")
    assert _digest_counting_reads(monkeypatch) == (first, 1)
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    monkeypatch.setenv("PEBUILDER_CACHE", str(blocker))
    assert _digest_counting_reads(monkeypatch)[0] == first
