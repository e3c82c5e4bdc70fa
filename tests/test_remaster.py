"""Remastering the real CorePure64-6.4.1-style template: contents, idempotence, owners, reproducibility,
and the issue's reproductions (a rebuild after an input changed, a template with two initrds)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import (
    ROOTFS,
    TCZ,
    VMLINUZ,
    make_iso,
    make_template_tree,
    needs_fixtures,
    pebuilder,
    ran,
    seed_style_setup,
)

from pebuilder.formats import cpio, iso
from pebuilder.fsroot import TreeMeta

STAGES = ["template", "kernel", "unpack-initrd", "extensions-initrd", "customise", "kernel-modules",
          "extensions-cde", "bootcode", "pack-initrd", "efi-boot", "assemble-image", "package-iso"]


def iso_file(image: Path, name: str, dest: Path) -> Path:
    got = iso.extract_files(image, [name], dest)
    assert name in got, f"{name} not in {image}"
    return got[name]


def initrd_of(image: Path, dest: Path, name: str = "boot/corepure64.gz") -> Path:
    return iso_file(image, name, dest)


def seed_build(base: Path, template: Path, host: str) -> dict:
    work = base / "work"
    cfg, exts = seed_style_setup(base, template, work, host)
    args = [cfg, "rebuild", "--ext-dir", exts, "--ext-dir", TCZ, "--menu-timeout", "1", "--json"]
    first = json.loads(pebuilder("remaster", *args).stdout)
    return {"cfg": cfg, "work": work, "args": args, "first": first, "tmp": base, "iso": work / "ezremaster.iso"}


@pytest.fixture(scope="module")
def built(tmp_path_factory, template_iso):
    """One seed-style build shared by the tests that only read it."""
    return seed_build(tmp_path_factory.mktemp("seed"), template_iso, "pbcontent")


@needs_fixtures
def test_remaster_contents(built, tmp_path):
    out = built["iso"]
    files = set(iso.list_files(out))
    assert {"/cde/onboot.lst", "/cde/optional/dialog.tcz", "/cde/optional/db.tcz",
            "/cde/optional/dialog.tcz.md5.txt", "/cde/optional/db.tcz.md5.txt",
            "/cde/optional/dialog.tcz.dep", "/boot/grub/grub.cfg", "/boot/vmlinuz64"} <= files
    # extracted extensions are not also copied beside the initrd
    assert "/cde/optional/kmaps.tcz" not in files and "/cde/optional/pbtest.tcz" not in files
    got = tmp_path / "got"
    assert iso_file(out, "cde/onboot.lst", got).read_text() == "dialog.tcz\ndb.tcz\n"
    for name in ("dialog.tcz", "db.tcz"):
        tcz = iso_file(out, f"cde/optional/{name}", got)
        md5 = iso_file(out, f"cde/optional/{name}.md5.txt", got).read_text()
        assert md5 == f"{hashlib.md5(tcz.read_bytes()).hexdigest()}  {name}\n"
        assert md5 == (TCZ / f"{name}.md5.txt").read_text().strip() + "\n"
    assert iso_file(out, "boot/vmlinuz64", got).read_bytes() == VMLINUZ.read_bytes()
    initrd = initrd_of(out, got)
    entries = {e.name: e for e in cpio.list_entries(initrd)}
    assert "usr/share/kmap/azerty/fr-latin1.kmap" in entries
    assert entries["usr/share/kmap/azerty/fr-latin1.kmap"].kind == "file"
    assert entries["usr/local/tce.installed/kmaps"].kind == "file"
    assert entries["usr/local/tce.installed/pbtest"].mode & 0o111
    assert cpio.read_member(initrd, "usr/local/share/pbtest/hello.txt") == b"hello from pbtest\n"
    assert cpio.read_member(initrd, "tmp/setup.lst") == b"/usr/local/tce.installed/pbtest\n"
    # every entry of the template's initrd is still there
    assert {e.name.removeprefix("./") for e in cpio.list_entries(ROOTFS)} - {"."} <= set(entries)
    # the template's owners are kept; what pebuilder added is root's
    tci = entries["usr/local/tce.installed"]
    assert (tci.uid, tci.gid, stat.S_IMODE(tci.mode)) == (0, 50, 0o775)
    kmap = entries["usr/share/kmap/azerty/fr-latin1.kmap"]
    assert (kmap.uid, kmap.gid) == (0, 0)
    report = built["first"]
    assert [s["stage"] for s in report["stages"]] == STAGES and ran(report) == STAGES


@needs_fixtures
def test_rebuild_twice_codes_once_and_nothing_redone(tmp_path, template_iso):
    b = seed_build(tmp_path, template_iso, "pbcontent")
    out = b["iso"]
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    second = json.loads(pebuilder("remaster", *b["args"]).stdout)
    assert ran(second) == [] and second["hashed_files"] == 0
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before
    cfg_text = iso_file(out, "boot/isolinux/isolinux.cfg", tmp_path / "g").read_text()
    grub_text = iso_file(out, "boot/grub/grub.cfg", tmp_path / "g").read_text()
    append = [ln.split() for ln in cfg_text.splitlines() if ln.strip().startswith("append")][0]
    linux = [ln.split() for ln in grub_text.splitlines() if ln.strip().startswith("linux")][0]
    for words in (append, linux):
        for code in ("console=ttyS0", "host=pbcontent", "cde", "loglevel=3"):
            assert words.count(code) == 1, (code, words)
    assert "timeout 10" in cfg_text and "SERIAL 0 115200" in cfg_text
    # a changed list replaces the old codes; the stages that do not read it stay cached
    cfg = b["cfg"]
    cfg.write_text(cfg.read_text().replace("host=pbcontent", "host=pbchanged"))
    third = json.loads(pebuilder("remaster", *b["args"]).stdout)
    assert ran(third) == ["bootcode", "efi-boot", "assemble-image", "package-iso"]
    cfg_text = iso_file(out, "boot/isolinux/isolinux.cfg", tmp_path / "h").read_text()
    assert "host=pbchanged" in cfg_text and "host=pbcontent" not in cfg_text
    grub_text = iso_file(out, "boot/grub/grub.cfg", tmp_path / "h").read_text()
    assert "host=pbchanged" in grub_text and "host=pbcontent" not in grub_text

    # remaster.sh users edit temp_dir/extract between steps; package must notice
    (b["work"] / "extract/etc/pebuilder-hand-edit").write_text("edited\n")
    fourth = json.loads(pebuilder("remaster", b["cfg"], "package", *b["args"][2:]).stdout)
    assert ran(fourth) == ["pack-initrd", "assemble-image", "package-iso"]
    assert cpio.read_member(initrd_of(out, tmp_path / "e"), "etc/pebuilder-hand-edit") == b"edited\n"


@needs_fixtures
def test_functions_run_their_part(tmp_path, template_iso):
    work = tmp_path / "w"
    cfg, exts = seed_style_setup(tmp_path, template_iso, work, "pbfunc")
    flags = ["--ext-dir", exts, "--ext-dir", TCZ, "--json"]
    check = json.loads(pebuilder("remaster", cfg, "checkimage", *flags).stdout)
    assert ran(check) == ["template"]
    extract = json.loads(pebuilder("remaster", cfg, "extractimage", *flags).stdout)
    assert ran(extract) == STAGES[1:STAGES.index("extensions-cde") + 1]
    assert (work / "extract/usr/local/tce.installed/kmaps").is_file()
    assert not (work / "ezremaster.iso").exists()
    pebuilder("remaster", cfg, "bootcode", *flags)
    assert "host=pbfunc" in (work / ".pebuilder/boot/boot/isolinux/isolinux.cfg").read_text()
    assert not (work / "ezremaster.iso").exists()
    package = json.loads(pebuilder("remaster", cfg, "package", *flags).stdout)
    assert ran(package) == ["pack-initrd", "efi-boot", "assemble-image", "package-iso"]
    assert "host=pbfunc" in (work / "image/boot/isolinux/isolinux.cfg").read_text()
    assert iso.list_files(work / "ezremaster.iso")


@needs_fixtures
def test_checkimage_does_not_run_the_kernel_stage(tmp_path, template_iso):
    """checkimage only looks at the template: a [kernel] it would fail on is not touched."""
    cfg = tmp_path / "pebuilder.toml"
    cfg.write_text(f'[template]\niso = "{template_iso}"\n[work]\ndir = "w"\n'
                   '[kernel]\nvmlinuz = "no/vmlinuz"\nmodules_dir = "no/modules"\n')
    report = json.loads(pebuilder("remaster", cfg, "checkimage", "--json").stdout)
    assert [s["stage"] for s in report["stages"]] == ["template"] and ran(report) == ["template"]
    assert not (tmp_path / "w/.pebuilder/kernel.json").exists()
    proc = pebuilder("remaster", cfg, "rebuild", check=False)  # the kernel stage, when it runs, does fail
    assert proc.returncode == 39 and "kernel.vmlinuz:" in proc.stderr and "does not exist" in proc.stderr


@needs_fixtures
def test_missing_extension_names_where_it_looked(tmp_path, template_iso):
    cfg = tmp_path / "ez.cfg"
    cfg.write_text(f"cd_location = {template_iso}\ntemp_dir = {tmp_path}/w\napp_extract_initrd = nosuch.tcz\n")
    proc = pebuilder("remaster", cfg, "rebuild", "--ext-dir", TCZ, check=False)
    assert proc.returncode == 31
    assert "extension nosuch.tcz not found; looked in:" in proc.stderr and str(TCZ) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "w/ezremaster.iso").exists()


# -- the reproductions ---------------------------------------------------------------------

PEM = "-----BEGIN CERTIFICATE-----\nMIIB{}\n-----END CERTIFICATE-----\n"


@needs_fixtures
def test_rebuild_after_editing_ca_bundle_and_host_key(tmp_path, template_iso):
    """(a) Files the customisation reads are inputs: editing them reruns the customise chain, and the
    ISO's initrd holds the new CA and the new private key."""
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keys / "ssh_host_ed25519_key"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nfirst\n-----END OPENSSH PRIVATE KEY-----\n")
    (keys / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAAfirst host\n")
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM.format("first"))
    cfg = tmp_path / "pebuilder.toml"
    cfg.write_text(f'[template]\niso = "{template_iso}"\n[work]\ndir = "w"\n[output.iso]\npath = "out.iso"\n'
                   '[certificates]\nbundle = "ca.pem"\n[ssh]\nhost_keys = "keys"\n')
    first = json.loads(pebuilder("build", cfg, "--json").stdout)
    assert ran(first) == STAGES
    initrd = initrd_of(tmp_path / "out.iso", tmp_path / "g1")
    assert cpio.read_member(initrd, "usr/local/etc/ssl/certs/ca-certificates.crt") == ca.read_bytes()
    assert cpio.read_member(initrd, "usr/local/etc/ssh/ssh_host_ed25519_key") == key.read_bytes()

    ca.write_text(PEM.format("second"))
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecond\n-----END OPENSSH PRIVATE KEY-----\n")
    second = json.loads(pebuilder("build", cfg, "--json").stdout)
    chain = ["unpack-initrd", "extensions-initrd", "customise", "kernel-modules"]
    # bootcode reads kernel-modules' report (zram), so it reruns too; its menus come out the same
    assert ran(second) == [*chain, "bootcode", "pack-initrd", "assemble-image", "package-iso"]
    initrd = initrd_of(tmp_path / "out.iso", tmp_path / "g2")
    for rel in ("usr/local/etc/ssl/certs/ca-certificates.crt", "etc/ssl/certs/ca-certificates.crt"):
        assert cpio.read_member(initrd, rel) == PEM.format("second").encode()
    assert cpio.read_member(initrd, "usr/local/etc/ssh/ssh_host_ed25519_key") == key.read_bytes()
    entry = {e.name: e for e in cpio.list_entries(initrd)}["usr/local/etc/ssh/ssh_host_ed25519_key"]
    assert (entry.uid, entry.gid, stat.S_IMODE(entry.mode)) == (0, 0, 0o600)
    # a host key added to the folder is an input too
    (keys / "ssh_host_rsa_key").write_text("rsa private\n")
    third = json.loads(pebuilder("build", cfg, "--json").stdout)
    assert "customise" in ran(third)
    assert cpio.read_member(initrd_of(tmp_path / "out.iso", tmp_path / "g3"),
                            "usr/local/etc/ssh/ssh_host_rsa_key") == b"rsa private\n"
    assert ran(json.loads(pebuilder("build", cfg, "--json").stdout)) == []


@needs_fixtures
def test_local_kernel_and_modules_dir_changes_rerun_the_kernel(tmp_path, template_iso):
    """(a) A local [kernel] vmlinuz + modules_dir: a changed module file reruns the kernel stage and
    lands in the image; a changed vmlinuz lands on the ISO."""
    kver = "3.16.6-tinycore64"
    moddir = tmp_path / "kroot/lib/modules" / kver / "kernel/drivers/pb"
    moddir.mkdir(parents=True)
    module = moddir / "pbdummy.ko"
    module.write_bytes(b"module v1")
    vmlinuz = tmp_path / "vmlinuz"
    shutil.copyfile(VMLINUZ, vmlinuz)
    cfg = tmp_path / "pebuilder.toml"
    cfg.write_text(f'[template]\niso = "{template_iso}"\n[work]\ndir = "w"\n[output.iso]\npath = "out.iso"\n'
                   '[kernel]\nvmlinuz = "vmlinuz"\nmodules_dir = "kroot"\n[boot]\nmodules = ["pbdummy"]\n')
    first = json.loads(pebuilder("build", cfg, "--json").stdout)
    assert ran(first) == STAGES
    rel = f"lib/modules/{kver}/kernel/drivers/pb/pbdummy.ko"
    initrd = initrd_of(tmp_path / "out.iso", tmp_path / "g1")
    assert cpio.read_member(initrd, rel) == b"module v1"
    assert "kernel/drivers/pb/pbdummy.ko:" in cpio.read_member(initrd, f"lib/modules/{kver}/modules.dep").decode()
    assert "pbdummy" in cpio.read_member(initrd, "etc/init.d/pebuilder-modules").decode()

    module.write_bytes(b"module v2")
    second = json.loads(pebuilder("build", cfg, "--json").stdout)
    assert ran(second)[:2] == ["kernel", "unpack-initrd"] and "package-iso" in ran(second)
    assert cpio.read_member(initrd_of(tmp_path / "out.iso", tmp_path / "g2"), rel) == b"module v2"

    with open(vmlinuz, "ab") as f:
        f.write(b"\0" * 512)  # still a bzImage, now with other bytes
    third = json.loads(pebuilder("build", cfg, "--json").stdout)
    assert ran(third) == ["kernel", "assemble-image", "package-iso"]
    assert iso_file(tmp_path / "out.iso", "boot/vmlinuz64", tmp_path / "g3").read_bytes() == vmlinuz.read_bytes()
    assert ran(json.loads(pebuilder("build", cfg, "--json").stdout)) == []


def _cpio_gz(root: Path, out: Path) -> Path:
    cpio.pack(root, TreeMeta(), out, "gzip")
    return out


@needs_fixtures
def test_template_with_two_initrds(tmp_path):
    """(b) isolinux.cfg's `initrd=/boot/corepure64.gz,/boot/extra.gz`: both are unpacked (the second
    overriding the first, as the kernel does) and packed into one; two builds run without error."""
    tree = make_template_tree(tmp_path / "tree")
    extra_root = tmp_path / "extra"
    (extra_root / "etc").mkdir(parents=True)
    (extra_root / "etc/pebuilder-extra").write_text("from the second initrd\n")
    (extra_root / "etc/hostname").write_text("second-wins\n")
    _cpio_gz(extra_root, tree / "boot/extra.gz")
    cfg_path = tree / "boot/isolinux/isolinux.cfg"
    text = cfg_path.read_text().replace("\tinitrd /boot/corepure64.gz\n", "")
    cfg_path.write_text(text.replace("append loglevel=3", "append initrd=/boot/corepure64.gz,/boot/extra.gz "
                                                          "loglevel=3"))
    template = make_iso(tree, tmp_path / "two-initrds.iso")
    info = json.loads(pebuilder("inspect", template, "--json").stdout)
    assert info["initrds"] == ["boot/corepure64.gz", "boot/extra.gz"]
    cfg = tmp_path / "pebuilder.toml"
    cfg.write_text(f'[template]\niso = "{template}"\n[work]\ndir = "w"\n[output.iso]\npath = "out.iso"\n'
                   '[boot]\ncodes = ["host=pbtwo"]\n')
    for attempt in range(2):
        report = json.loads(pebuilder("build", cfg, "--json", *(["--force"] if attempt else [])).stdout)
        assert ran(report) == STAGES
        out = tmp_path / "out.iso"
        files = set(iso.list_files(out))
        assert "/boot/corepure64.gz" in files and "/boot/extra.gz" not in files
        initrd = initrd_of(out, tmp_path / f"g{attempt}")
        assert cpio.read_member(initrd, "etc/pebuilder-extra") == b"from the second initrd\n"
        assert cpio.read_member(initrd, "etc/hostname") == b"second-wins\n"
        assert cpio.read_member(initrd, "usr/bin/tce-load") == cpio.read_member(ROOTFS, "usr/bin/tce-load")
        menu = iso_file(out, "boot/isolinux/isolinux.cfg", tmp_path / f"m{attempt}").read_text()
        append = [ln.split() for ln in menu.splitlines() if ln.strip().startswith("append")][0]
        assert append[:2] == ["append", "initrd=/boot/corepure64.gz"] and "host=pbtwo" in append
        grub = iso_file(out, "boot/grub/grub.cfg", tmp_path / f"m{attempt}").read_text()
        assert "extra.gz" not in grub and "/boot/corepure64.gz" in grub
    assert ran(json.loads(pebuilder("build", cfg, "--json").stdout)) == []


def _build_as(user: str | None, base: Path, iso_path: Path, epoch: str) -> Path:
    cfg, exts = seed_style_setup(base, iso_path, base / "work", "pbrepro")
    if user:
        subprocess.run(["chown", "-R", user, str(base)], check=True)
    # an unprivileged user cannot write the suite's root-owned cache: give it its own
    env = {"SOURCE_DATE_EPOCH": epoch, **({"PEBUILDER_CACHE": str(base / "cache")} if user else {})}
    pebuilder("remaster", cfg, "rebuild", "--ext-dir", exts, "--ext-dir", TCZ, "--menu-timeout", "1", env=env,
              user=user)
    return base / "work/ezremaster.iso"


@needs_fixtures
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


@needs_fixtures
def test_two_builds_same_epoch_same_sha256(tmp_path, template_iso):
    a = _build_as(None, tmp_path / "a", template_iso, "1600000000")
    b = _build_as(None, tmp_path / "b", template_iso, "1600000000")
    assert hashlib.sha256(a.read_bytes()).hexdigest() == hashlib.sha256(b.read_bytes()).hexdigest()


@needs_fixtures
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
    cpio.pack(root, TreeMeta(), tree / "initrd.gz")
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


@needs_fixtures
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
