"""Remastering the real CorePure64-6.4.1-style template: contents, idempotence, owners, reproducibility."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import TCZ, needs_fixtures, pebuilder, seed_style_setup

from pebuilder.formats import cpio, iso

pytestmark = needs_fixtures


def iso_file(image: Path, name: str, dest: Path) -> Path:
    got = iso.extract_files(image, [name], dest)
    assert name in got, f"{name} not in {image}"
    return got[name]


@pytest.fixture
def built(tmp_path, template_iso):
    work = tmp_path / "work"
    cfg, exts = seed_style_setup(tmp_path, template_iso, work, "pbcontent")
    args = [cfg, "rebuild", "--ext-dir", exts, "--ext-dir", TCZ, "--menu-timeout", "1", "--json"]
    first = pebuilder("remaster", *args)
    return {"cfg": cfg, "work": work, "args": args, "first": first, "tmp": tmp_path}


def test_remaster_contents(built):
    tmp, work = built["tmp"], built["work"]
    out = work / "ezremaster.iso"
    files = set(iso.list_files(out))
    assert {"/cde/onboot.lst", "/cde/optional/dialog.tcz", "/cde/optional/db.tcz",
            "/cde/optional/dialog.tcz.md5.txt", "/cde/optional/db.tcz.md5.txt",
            "/cde/optional/dialog.tcz.dep", "/boot/grub/grub.cfg"} <= files
    # extracted extensions are not also copied beside the initrd
    assert "/cde/optional/kmaps.tcz" not in files and "/cde/optional/pbtest.tcz" not in files
    got = tmp / "got"
    assert iso_file(out, "cde/onboot.lst", got).read_text() == "dialog.tcz\ndb.tcz\n"
    for name in ("dialog.tcz", "db.tcz"):
        tcz = iso_file(out, f"cde/optional/{name}", got)
        md5 = iso_file(out, f"cde/optional/{name}.md5.txt", got).read_text()
        assert md5 == f"{hashlib.md5(tcz.read_bytes()).hexdigest()}  {name}\n"
        assert md5 == (TCZ / f"{name}.md5.txt").read_text().strip() + "\n"
    initrd = iso_file(out, "boot/corepure64.gz", got)
    entries = {e.name: e for e in cpio.list_entries(initrd)}
    assert "usr/share/kmap/azerty/fr.kmap" in entries or any(n.startswith("usr/share/kmap/") for n in entries)
    assert entries["usr/local/tce.installed/kmaps"].kind == "file"
    assert entries["usr/local/tce.installed/pbtest"].mode & 0o111
    assert cpio.read_member(initrd, "tmp/setup.lst") == b"/usr/local/tce.installed/pbtest\n"
    # the template's owners are kept; what pebuilder added is root's
    tci = entries["usr/local/tce.installed"]
    assert (tci.uid, tci.gid, stat.S_IMODE(tci.mode)) == (0, 50, 0o775)
    kmap = [e for n, e in entries.items() if n.startswith("usr/share/kmap/") and e.kind == "file"][0]
    assert (kmap.uid, kmap.gid) == (0, 0)
    report = json.loads(built["first"].stdout)
    assert [s["stage"] for s in report["stages"]] == [
        "template", "kernel", "unpack-initrd", "extensions-initrd", "customise", "kernel-modules", "extensions-cde",
        "bootcode",
        "pack-initrd", "efi-boot", "package-iso"]


def test_rebuild_twice_codes_once_and_nothing_redone(built):
    work = built["work"]
    out = work / "ezremaster.iso"
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    second = json.loads(pebuilder("remaster", *built["args"]).stdout)
    assert [s["stage"] for s in second["stages"] if s["ran"]] == []
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before
    cfg_text = iso_file(out, "boot/isolinux/isolinux.cfg", built["tmp"] / "g").read_text()
    grub_text = iso_file(out, "boot/grub/grub.cfg", built["tmp"] / "g").read_text()
    append = [ln.split() for ln in cfg_text.splitlines() if ln.strip().startswith("append")][0]
    linux = [ln.split() for ln in grub_text.splitlines() if ln.strip().startswith("linux")][0]
    for words in (append, linux):
        for code in ("console=ttyS0", "host=pbcontent", "cde", "loglevel=3"):
            assert words.count(code) == 1, (code, words)
    assert "timeout 10" in cfg_text and "SERIAL 0 115200" in cfg_text
    # a changed list replaces the old codes; the other stages stay cached
    cfg = built["cfg"]
    cfg.write_text(cfg.read_text().replace("host=pbcontent", "host=pbchanged"))
    third = json.loads(pebuilder("remaster", *built["args"]).stdout)
    ran = [s["stage"] for s in third["stages"] if s["ran"]]
    assert "unpack-initrd" not in ran and "bootcode" in ran and "package-iso" in ran
    cfg_text = iso_file(out, "boot/isolinux/isolinux.cfg", built["tmp"] / "h").read_text()
    assert "host=pbchanged" in cfg_text and "host=pbcontent" not in cfg_text


def test_hand_edit_of_extract_tree_is_packed(built):
    """remaster.sh users edit temp_dir/extract between steps; package must notice."""
    work = built["work"]
    (work / "extract/etc/pebuilder-hand-edit").write_text("edited\n")
    pebuilder("remaster", built["cfg"], "package", "--ext-dir", built["tmp"] / "exts", "--ext-dir", TCZ,
              "--menu-timeout", "1")
    got = iso_file(work / "ezremaster.iso", "boot/corepure64.gz", built["tmp"] / "e")
    assert cpio.read_member(got, "etc/pebuilder-hand-edit") == b"edited\n"


def test_functions_run_their_part(tmp_path, template_iso):
    work = tmp_path / "w"
    cfg, exts = seed_style_setup(tmp_path, template_iso, work, "pbfunc")
    pebuilder("remaster", cfg, "extractimage", "--ext-dir", exts, "--ext-dir", TCZ)
    assert (work / "extract/usr/local/tce.installed/kmaps").exists()
    assert (work / "image/cde/onboot.lst").exists()
    assert not (work / "ezremaster.iso").exists()
    pebuilder("remaster", cfg, "bootcode", "--ext-dir", exts, "--ext-dir", TCZ)
    assert "host=pbfunc" in (work / "image/boot/isolinux/isolinux.cfg").read_text()
    assert not (work / "ezremaster.iso").exists()
    pebuilder("remaster", cfg, "package", "--ext-dir", exts, "--ext-dir", TCZ)
    assert (work / "ezremaster.iso").exists()


def test_missing_extension_names_where_it_looked(tmp_path, template_iso):
    cfg = tmp_path / "ez.cfg"
    cfg.write_text(f"cd_location = {template_iso}\ntemp_dir = {tmp_path}/w\napp_extract_initrd = nosuch.tcz\n")
    proc = pebuilder("remaster", cfg, "rebuild", "--ext-dir", TCZ, check=False)
    assert proc.returncode == 31
    assert "extension nosuch.tcz not found; looked in:" in proc.stderr and str(TCZ) in proc.stderr
    assert "Traceback" not in proc.stderr


def _build_as(user: str | None, base: Path, iso_path: Path, epoch: str) -> Path:
    cfg, exts = seed_style_setup(base, iso_path, base / "work", "pbrepro")
    if user:
        subprocess.run(["chown", "-R", user, str(base)], check=True)
    pebuilder("remaster", cfg, "rebuild", "--ext-dir", exts, "--ext-dir", TCZ, "--menu-timeout", "1",
              env={"SOURCE_DATE_EPOCH": epoch}, user=user)
    return base / "work/ezremaster.iso"


def test_unprivileged_build_is_root_owned_and_reproducible(open_workspace):
    """Built once as root and once as nobody, with one SOURCE_DATE_EPOCH: the same bytes."""
    shared, iso_copy = open_workspace
    a = _build_as(None, shared / "as-root", iso_copy, "1700000000")
    b = _build_as("65534", shared / "as-nobody", iso_copy, "1700000000")
    assert os.stat(b).st_uid == 65534
    assert hashlib.sha256(a.read_bytes()).hexdigest() == hashlib.sha256(b.read_bytes()).hexdigest()
    initrd = iso_file(b, "boot/corepure64.gz", shared / "got")
    entries = {e.name: e for e in cpio.list_entries(initrd)}
    owners = {(e.uid, e.gid) for n, e in entries.items() if n.startswith("usr/share/kmap/qwerty/")}
    assert owners == {(0, 0)}
    tci = entries["usr/local/tce.installed"]
    assert (tci.uid, tci.gid, stat.S_IMODE(tci.mode)) == (0, 50, 0o775)
    devs = [e for e in entries.values() if e.kind in ("chr", "blk")]
    assert len(devs) > 100


def test_two_builds_same_epoch_same_sha256(tmp_path, template_iso):
    a = _build_as(None, tmp_path / "a", template_iso, "1600000000")
    b = _build_as(None, tmp_path / "b", template_iso, "1600000000")
    assert hashlib.sha256(a.read_bytes()).hexdigest() == hashlib.sha256(b.read_bytes()).hexdigest()


def test_inspect(template_iso, tmp_path):
    info = json.loads(pebuilder("inspect", template_iso, "--json").stdout)
    assert info["tc_version"] == "6.4.1" and info["arch"] == "x86_64"
    assert info["kernel"] == "boot/vmlinuz64" and info["initrds"] == ["boot/corepure64.gz"]
    assert info["kernel_version"] == "3.16.6-tinycore64"
    text = pebuilder("inspect", template_iso).stdout
    assert "6.4.1" in text and "3.16.6-tinycore64" in text


def test_inspect_rejects_non_tinycore_iso(tmp_path):
    tree = tmp_path / "tree"
    (tree / "isolinux").mkdir(parents=True)
    (tree / "isolinux/isolinux.cfg").write_text("default x\nlabel x\n kernel /vmlinuz\n initrd /initrd.gz\n")
    (tree / "vmlinuz").write_bytes(b"not a kernel")
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("other\n")
    cpio.pack(root, cpio.TreeMeta(), tree / "initrd.gz")
    out = tmp_path / "other.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-r", "-o", str(out), str(tree)], check=True)
    proc = pebuilder("inspect", out, check=False)
    assert proc.returncode == 35
    assert "is not a Tiny Core ISO" in proc.stderr and "tc-config" in proc.stderr
    empty = tmp_path / "empty"
    (empty / "docs").mkdir(parents=True)
    (empty / "docs/readme").write_text("x")
    out2 = tmp_path / "noboot.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-r", "-o", str(out2), str(empty)], check=True)
    proc = pebuilder("inspect", out2, check=False)
    assert proc.returncode == 9 and "no isolinux.cfg" in proc.stderr


def test_cde_layout_with_copy2fs(tmp_path):
    from pebuilder.tinycore import cde

    note = cde.write(tmp_path / "cde", onboot=["dialog.tcz"], files=[TCZ / "dialog.tcz", TCZ / "db.tcz"],
                     copy2fs=["db.tcz"])
    assert note == "2 in cde/optional, 1 on boot"
    assert (tmp_path / "cde/copy2fs.lst").read_text() == "db.tcz\n"
    assert not (tmp_path / "cde/copy2fs.flg").exists()
    cde.write(tmp_path / "cde", onboot=["dialog.tcz"], files=[TCZ / "dialog.tcz"], copy2fs_all=True)
    assert (tmp_path / "cde/copy2fs.flg").exists() and not (tmp_path / "cde/copy2fs.lst").exists()
    assert sorted(p.name for p in (tmp_path / "cde/optional").iterdir()) == [
        "dialog.tcz", "dialog.tcz.dep", "dialog.tcz.md5.txt"]
