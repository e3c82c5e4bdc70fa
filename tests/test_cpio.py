"""newc cpio: a faithful round trip of the real Tiny Core rootfs, and refusal of hostile archives."""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import ROOTFS, needs_fixtures, pebuilder

from pebuilder.errors import Exit, UnsafeArchiveError
from pebuilder.formats import cpio
from pebuilder.fsroot import TreeMeta


def _key(e: cpio.Entry):
    name = e.name.removeprefix("./") or "."
    return (name, e.mode, e.uid, e.gid, e.mtime, e.rdevmajor, e.rdevminor, e.link_target, e.nlink)


def _contents(path: Path) -> dict[str, bytes]:
    out = {}
    for e, body in cpio.iter_archive(path):
        if e.kind == "file":
            data = b"".join(body.chunks())
            name = e.name.removeprefix("./")
            if data or name not in out:
                out[name] = data
    return out


@needs_fixtures
def test_real_rootfs_round_trip_keeps_every_entry(tmp_path):
    meta_path = tmp_path / "meta.json"
    meta = cpio.extract(ROOTFS, tmp_path / "x", meta_path)
    out = tmp_path / "out.gz"
    cpio.pack(tmp_path / "x", meta, out)
    before = {_key(e)[0]: _key(e) for e in cpio.list_entries(ROOTFS)}
    after = {_key(e)[0]: _key(e) for e in cpio.list_entries(out)}
    assert len(before) == 700
    assert before == after
    assert _contents(ROOTFS) == _contents(out)
    # device nodes and owners survive an extraction that could create neither
    kinds = {e.kind for e in cpio.list_entries(out)}
    assert {"chr", "blk", "symlink", "dir", "file"} <= kinds
    staff = [e for e in cpio.list_entries(out) if e.name == "usr/local/tce.installed"]
    assert staff and staff[0].gid == 50 and stat.S_IMODE(staff[0].mode) == 0o775
    # GNU cpio reads what we write
    listing = subprocess.run(f"zcat {out} | cpio -t", shell=True, capture_output=True, text=True)
    assert listing.returncode == 0 and "usr/bin/tce-load" in listing.stdout


@needs_fixtures
def test_repack_is_deterministic_with_source_date_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    meta = cpio.extract(ROOTFS, tmp_path / "x", tmp_path / "m.json")
    (tmp_path / "x/new-file").write_text("added\n")
    cpio.pack(tmp_path / "x", meta, tmp_path / "a.gz")
    os.utime(tmp_path / "x/new-file", (1800000000, 1800000000))
    cpio.pack(tmp_path / "x", meta, tmp_path / "b.gz")
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    new = [e for e in cpio.list_entries(tmp_path / "a.gz") if e.name == "new-file"][0]
    assert (new.uid, new.gid, new.mtime) == (0, 0, 1700000000)


def _archive(entries: list[tuple[str, int, bytes]], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    w = cpio.CpioWriter(buf)
    for name, mode, data in entries:
        e = cpio.Entry(name=name, mode=mode, size=len(data) if stat.S_ISREG(mode) else 0)
        if stat.S_ISLNK(mode):
            e.link_target = data.decode()
        w.add(e, data)
    w.finish()
    return gzip.compress(buf.getvalue()) if gz else buf.getvalue()


@pytest.mark.parametrize("entries,message", [
    ([("../escape", stat.S_IFREG | 0o644, b"x")], "climbs out"),
    (([("/etc/escape", stat.S_IFREG | 0o644, b"x")]), "absolute path"),
    ([("d", stat.S_IFDIR | 0o755, b""), ("d/../../escape", stat.S_IFREG | 0o644, b"x")], "climbs out"),
])
def test_hostile_archives_are_refused(tmp_path, entries, message):
    outside = tmp_path / "outside"
    outside.mkdir()
    entries = [(n.replace("/tmp", str(outside)), m, d.replace(b"/tmp", str(outside).encode()))
               for n, m, d in entries]
    arc = tmp_path / "evil.cpio.gz"
    arc.write_bytes(_archive(entries, gz=True))
    with pytest.raises(UnsafeArchiveError, match=message) as info:
        cpio.extract(arc, tmp_path / "dest", tmp_path / "meta.json")
    assert info.value.code == Exit.UNSAFE_ARCHIVE
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("target", ["/tmp", "../../../tmp", "/tmp/../../.."])
def test_symlinked_parents_resolve_inside_the_root(tmp_path, target):
    """A member under a symlink lands where the link points *inside* the image, as the kernel would
    see it after switching root; never on the builder's own file system."""
    outside = tmp_path / "outside"
    outside.mkdir()
    target = target.replace("/tmp", str(outside))
    arc = tmp_path / "links.cpio"
    arc.write_bytes(_archive([("link", stat.S_IFLNK | 0o777, target.encode()),
                              ("link/escape", stat.S_IFREG | 0o644, b"x")]))
    dest = tmp_path / "dest"
    meta = cpio.extract(arc, dest, tmp_path / "meta.json")
    assert list(outside.iterdir()) == []
    assert os.readlink(dest / "link") == target  # the link itself is kept as the archive has it
    landed = [p for p in dest.rglob("escape")]
    assert len(landed) == 1 and landed[0].read_bytes() == b"x"
    assert landed[0].resolve().is_relative_to(dest.resolve())
    assert landed[0].relative_to(dest).as_posix() in meta.entries


def test_hostile_archive_via_cli_gives_clean_error(tmp_path):
    """A template ISO is someone else's archive: its initrd may not write outside the work tree, and the
    refusal is one message with exit code 34, not a traceback."""
    tree = tmp_path / "tree"
    (tree / "boot/isolinux").mkdir(parents=True)
    (tree / "boot/isolinux/isolinux.cfg").write_text(
        "default tc\nlabel tc\n kernel /boot/vmlinuz\n append initrd=/boot/core.gz quiet\n")
    (tree / "boot/vmlinuz").write_bytes(b"not a kernel")
    (tree / "boot/core.gz").write_bytes(_archive([
        ("usr", stat.S_IFDIR | 0o755, b""), ("usr/bin", stat.S_IFDIR | 0o755, b""),
        ("usr/bin/tce-load", stat.S_IFREG | 0o755, b"#!/bin/sh\n"),  # looks like Tiny Core
        ("../../escape", stat.S_IFREG | 0o644, b"x")], gz=True))
    template = tmp_path / "evil.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-r", "-o", str(template), str(tree)], check=True)
    cfg = tmp_path / "pebuilder.toml"
    cfg.write_text(f'[template]\niso = "{template}"\n[work]\ndir = "w"\n')
    proc = pebuilder("remaster", cfg, "extractimage", check=False)
    assert proc.returncode == Exit.UNSAFE_ARCHIVE == 34, proc.stderr
    assert "climbs out" in proc.stderr and "../../escape" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("pebuilder: error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "escape").exists() and not (tmp_path / "w/escape").exists()
    assert not (tmp_path / "w/extract/escape").exists()


def test_hard_links_devices_and_concatenated_compressions(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin/busybox").write_bytes(b"\x7fELF" + b"x" * 5000)
    os.link(root / "bin/busybox", root / "bin/sh")
    meta = TreeMeta()
    (root / "console").write_bytes(b"")
    meta.specials["console"] = [stat.S_IFCHR | 0o600, 5, 1]
    first = tmp_path / "first.cpio"
    cpio.pack(root, meta, first, compression="none")
    hl = [e for e in cpio.list_entries(first) if e.name.startswith("bin/")]
    assert {e.nlink for e in hl} == {2} and len({e.ino for e in hl}) == 1
    assert sorted(e.size for e in hl) == [0, 5004]  # data travels with the last link, as GNU cpio does
    dev = [e for e in cpio.list_entries(first) if e.name == "console"][0]
    assert dev.kind == "chr" and (dev.rdevmajor, dev.rdevminor) == (5, 1)

    second_root = tmp_path / "second"
    (second_root / "etc").mkdir(parents=True)
    (second_root / "etc/motd").write_text("override\n")
    for comp in ("xz", "zstd"):
        second = tmp_path / f"second.{comp}"
        cpio.pack(second_root, TreeMeta(), second, compression=comp)
        joined = tmp_path / f"joined-{comp}"
        joined.write_bytes(first.read_bytes() + second.read_bytes())
        dest = tmp_path / f"dest-{comp}"
        cpio.extract(joined, dest, tmp_path / f"m-{comp}.json")
        assert (dest / "etc/motd").read_text() == "override\n"
        assert os.stat(dest / "bin/sh").st_ino == os.stat(dest / "bin/busybox").st_ino
        assert (dest / "bin/sh").read_bytes() == (root / "bin/busybox").read_bytes()


def test_truncated_archive_is_a_clear_error(tmp_path):
    data = _archive([("f", stat.S_IFREG | 0o644, b"y" * 1000)])
    arc = tmp_path / "cut.cpio"
    arc.write_bytes(data[:300])
    with pytest.raises(cpio.CpioError, match="truncated"):
        cpio.list_entries(arc)
