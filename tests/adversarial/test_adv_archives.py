"""Archives someone else made (issue 9): initrds, extensions, template ISOs and mirrors crafted by the
test to reach outside the work tree. Each aims at a canary folder that must stay untouched; the build
either succeeds with the hostile entry kept inside the image, or fails with one line and its code."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest
from adversarial.helpers import (
    DIR,
    LNK,
    REG,
    Canary,
    assert_error,
    assert_ok,
    build,
    initrd_entries,
    initrd_member,
    iso_member,
    make_tcz,
    make_template,
    newc,
    tc_config,
    tmp_leftovers,
)
from conftest import ROOTFS, TCZ, make_template_tree, needs_fixtures, ssh_public_key
from mirror_server import MirrorServer

from pebuilder.errors import Exit, PebuilderError
from pebuilder.formats import cpio, iso
from pebuilder.fsroot import Budget, FsRoot

GIB = 1 << 30


def du(folder: Path) -> int:
    """Bytes actually allocated under a folder (sparse holes do not count)."""
    return sum(os.lstat(p).st_blocks * 512 for p in folder.rglob("*")) if folder.exists() else 0


# -- newc: the hard link resolved through a later symlink ------------------------------------------

def hardlink_trick(target: Path) -> bytes:
    """h1 (nlink 2, ino 4242), then h1 again as a symlink to a host path, then h2 (same inode) with data."""
    return newc([
        {"name": "h1", "mode": REG, "ino": 4242, "nlink": 2, "data": b""},
        {"name": "h1", "mode": LNK, "data": str(target)},
        {"name": "h2", "mode": REG, "ino": 4242, "nlink": 2, "data": b"EVIL from h2\n"},
    ])


def test_cpio_hard_link_through_later_symlink_stays_inside(tmp_path):
    canary = Canary(tmp_path)
    archive = tmp_path / "evil.cpio"
    archive.write_bytes(hardlink_trick(canary.file))
    dest = tmp_path / "x"
    cpio.extract(archive, dest, tmp_path / "meta.json")
    canary.check()
    assert (dest / "h1").is_symlink()
    assert not (dest / "h2").is_symlink() and (dest / "h2").read_bytes() == b"EVIL from h2\n"
    assert os.stat(dest / "h2").st_nlink == 1  # not linked to what h1 pointed at, nor to the first h1


@pytest.mark.parametrize("members", [
    # a symlinked parent, then a hard-link group inside it: both land inside the root
    [{"name": "d", "mode": LNK, "data": "CANARY/sub"},
     {"name": "d/h1", "mode": REG, "ino": 7, "nlink": 2, "data": b"one"},
     {"name": "h2", "mode": REG, "ino": 7, "nlink": 2, "data": b"two"}],
    # the first member of the group is itself a symlink to the host file
    [{"name": "h1", "mode": LNK, "data": "CANARY/file.txt"},
     {"name": "h2", "mode": REG, "ino": 9, "nlink": 2, "data": b"x"},
     {"name": "h3", "mode": REG, "ino": 9, "nlink": 2, "data": b"EVIL"}],
    # a group member replaced by a folder, then the group continued
    [{"name": "h1", "mode": REG, "ino": 5, "nlink": 3, "data": b""},
     {"name": "h1", "mode": DIR},
     {"name": "h2", "mode": REG, "ino": 5, "nlink": 3, "data": b"EVIL"}],
    # a relative symlink climbing out, then a file written through it
    [{"name": "up", "mode": LNK, "data": "../../../../../../../../../../CANARY"},
     {"name": "up/file.txt", "mode": REG, "data": b"EVIL"},
     {"name": "up/new.txt", "mode": REG, "data": b"EVIL"}],
], ids=["symlinked-parent", "group-head-is-link", "group-member-replaced", "relative-climb"])
def test_cpio_link_tricks_never_touch_the_host(tmp_path, members):
    canary = Canary(tmp_path)
    members = [{**m, "data": m["data"].replace("CANARY", str(canary.dir))} if isinstance(m.get("data"), str)
               else m for m in members]
    archive = tmp_path / "evil.cpio"
    archive.write_bytes(newc(members))
    cpio.extract(archive, tmp_path / "x", tmp_path / "meta.json")  # accepted: the links resolve inside
    canary.check()
    for p in (tmp_path / "x").rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert os.stat(p).st_ino not in {os.stat(c).st_ino for c in canary.dir.rglob("*")}


@needs_fixtures
def test_template_initrd_hard_link_trick_in_a_build(tmp_path):
    canary = Canary(tmp_path)
    tpl = make_template(tmp_path / "tpl.iso", extra_initrd=hardlink_trick(canary.file))
    out = tmp_path / "out" / "x.iso"
    proc = build(tc_config(tmp_path, tpl))
    assert_ok(proc)
    canary.check()
    entries = initrd_entries(out, tmp_path / "got")
    assert entries["h1"].kind == "symlink" and entries["h1"].link_target == str(canary.file)
    assert entries["h2"].kind == "file"
    assert initrd_member(out, "h2", tmp_path / "got2") == b"EVIL from h2\n"


# -- extensions whose symlinks redirect pebuilder's own writes -----------------------------------------

def evil_ext(folder: Path, name: str, links: dict[str, str], script: bool = True) -> Path:
    files = {f"usr/local/share/{name}/data.txt": f"{name}\n"}
    if script:
        files[f"usr/local/tce.installed/{name}"] = "#!/bin/sh\necho ran\n"
    return make_tcz(folder, name, files, links=links, modes={f"usr/local/tce.installed/{name}": 0o755})


@needs_fixtures
@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_extension_setup_lst_link_to_host_file(tmp_path, template_iso, relative):
    canary = Canary(tmp_path)
    exts = tmp_path / "exts"
    target = str(canary.file) if not relative else "../" * 12 + str(canary.file).lstrip("/")
    evil_ext(exts, "evilsetup", {"tmp/setup.lst": target})
    cfg = tc_config(tmp_path, template_iso, extensions={"dirs": [str(exts)], "initrd": ["evilsetup"]})
    assert_ok(build(cfg))
    canary.check()
    out = tmp_path / "out" / "x.iso"
    entries = initrd_entries(out, tmp_path / "got")
    assert entries["tmp/setup.lst"].kind == "file"
    assert initrd_member(out, "tmp/setup.lst", tmp_path / "g2") == b"/usr/local/tce.installed/evilsetup\n"


@needs_fixtures
def test_extension_tce_installed_marker_link_to_host_path(tmp_path, template_iso):
    canary = Canary(tmp_path)
    exts = tmp_path / "exts"
    links = {"usr/local/tce.installed/evilmark": str(canary.dir / "created-by-pebuilder"),
             "usr/local/tce.installed/evilfile": str(canary.file)}
    make_tcz(exts, "evilmark", {"usr/local/share/evilmark/x": "x\n"}, links=links)
    make_tcz(exts, "evilfile", {"usr/local/share/evilfile/x": "x\n"})
    cfg = tc_config(tmp_path, template_iso, extensions={"dirs": [str(exts)], "initrd": ["evilmark", "evilfile"]})
    assert_ok(build(cfg))
    canary.check()
    entries = initrd_entries(tmp_path / "out" / "x.iso", tmp_path / "got")
    assert entries["usr/local/tce.installed/evilmark"].kind == "file"


@needs_fixtures
def test_extension_builtin_folder_link_to_host_dir(tmp_path, template_iso):
    canary = Canary(tmp_path)
    exts = tmp_path / "exts"
    evil_ext(exts, "evilbuiltin", {"tmp/builtin": str(canary.dir / "empty")}, script=False)
    for f in TCZ.glob("kmaps.tcz*"):
        shutil.copy(f, exts / f.name)
    cfg = tc_config(tmp_path, template_iso,
                    extensions={"dirs": [str(exts)], "initrd": ["evilbuiltin"], "builtin": ["kmaps"]})
    assert_ok(build(cfg))
    canary.check()
    out = tmp_path / "out" / "x.iso"
    entries = initrd_entries(out, tmp_path / "got")
    assert entries["tmp/builtin"].kind == "dir"
    assert entries["tmp/builtin/optional/kmaps.tcz"].kind == "file"
    assert initrd_member(out, "tmp/builtin/onboot.lst", tmp_path / "g2") == b"kmaps.tcz\n"


HOSTILE_LINKS = {  # path in the template's initrd -> where it points on the host (under the canary)
    "tmp/setup.lst": "file.txt", "tmp/builtin": "empty", "usr/local/tce.installed/pbtest": "sub/passwd",
    "etc/passwd": "sub/passwd", "etc/shadow": "sub/shadow", "etc/group": "sub/group", "etc/sudoers": "file.txt",
    "etc/inittab": "file.txt", "etc/securetty": "file.txt", "opt/bootlocal.sh": "file.txt",
    "opt/.filetool.lst": "file.txt", "home/alice": "empty", "usr/local/etc/ssl": "empty", "usr/local/etc/ssh": "sub",
    "etc/skel/.X.d": "empty", "etc/sysconfig/Xserver": "file.txt", "etc/evil": "empty", "etc/motd": "file.txt",
}


@needs_fixtures
def test_template_initrd_links_redirect_no_customisation(tmp_path):
    """The same redirections planted in the template's own initrd, aimed at every file customisation
    writes: accounts, sudoers, inittab, boot scripts, SSH, CA bundle, kiosk, overlay files."""
    canary = Canary(tmp_path)
    (canary.dir / "sub" / "ssh_host_rsa_key").write_text("host key of the build machine\n")
    canary.rebase()
    tpl = make_template(tmp_path / "tpl.iso", extra_initrd=newc([
        {"name": rel, "mode": LNK, "data": str(canary.dir / target)} for rel, target in HOSTILE_LINKS.items()]))
    exts = tmp_path / "exts"
    evil_ext(exts, "pbtest", {})
    for f in TCZ.glob("kmaps.tcz*"):
        shutil.copy(f, exts / f.name)
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    motd = tmp_path / "motd"
    motd.write_text("overlay motd\n")
    keys = tmp_path / "hostkeys"
    keys.mkdir()
    (keys / "ssh_host_ed25519_key").write_text("supplied key\n")
    (keys / "ssh_host_ed25519_key.pub").write_text("supplied key.pub\n")
    cfg = tc_config(tmp_path, tpl, extensions={"dirs": [str(exts)], "initrd": ["pbtest"], "builtin": ["kmaps"]},
                    users=[{"name": "alice", "uid": 1500, "password_hash": "$6$abcdefgh$" + "x" * 86, "sudo": True,
                            "authorized_keys": [ssh_public_key()]}],
                    boot={"serial_getty": True}, ssh={"enable": True, "host_keys": str(keys)},
                    certificates={"bundle": str(pem)}, kiosk={"url": "http://kiosk.example/"},
                    services={"bootlocal": ["echo hi"], "filetool": ["home/alice"]},
                    files=[{"source": str(motd), "dest": "/etc/evil/motd"}, {"source": str(motd), "dest": "/etc/motd"}])
    assert_ok(build(cfg))
    canary.check()
    out = tmp_path / "out" / "x.iso"
    # every file is where the booted system will look for it (links resolved as if the image were /)
    booted = FsRoot(tmp_path / "work" / "extract")
    for name in ("tmp/setup.lst", "usr/local/tce.installed/pbtest", "tmp/builtin/onboot.lst", "etc/passwd",
                 "etc/shadow", "etc/group", "etc/sudoers", "etc/inittab", "opt/bootlocal.sh", "opt/.filetool.lst",
                 "home/alice/.ssh/authorized_keys", "usr/local/etc/ssl/certs/ca-certificates.crt",
                 "usr/local/etc/ssh/sshd_config", "usr/local/etc/ssh/ssh_host_ed25519_key", "etc/skel/.X.d/kiosk",
                 "etc/sysconfig/Xserver", "etc/evil/motd", "etc/motd"):
        assert booted.is_file(name), name
    assert booted.read_bytes("usr/local/etc/ssh/ssh_host_ed25519_key") == b"supplied key\n"
    assert b"alice:" in booted.read_bytes("etc/passwd") and b"alice" in booted.read_bytes("etc/sudoers")
    assert initrd_member(out, "tmp/setup.lst", tmp_path / "g") == b"/usr/local/tce.installed/pbtest\n"
    assert initrd_member(out, "etc/motd", tmp_path / "g3") == b"overlay motd\n"


@needs_fixtures
def test_setuid_bits_stay_in_metadata(tmp_path, template_iso):
    exts = tmp_path / "exts"
    make_tcz(exts, "evilsuid", {"usr/local/bin/evilsuid": "#!/bin/sh\n", "usr/local/bin/evilsgid": "#!/bin/sh\n"},
             modes={"usr/local/bin/evilsuid": 0o4755, "usr/local/bin/evilsgid": 0o2711})
    cfg = tc_config(tmp_path, template_iso, extensions={"dirs": [str(exts)], "initrd": ["evilsuid"]})
    assert_ok(build(cfg))
    extract = tmp_path / "work" / "extract"
    host_bits = {p.relative_to(extract).as_posix(): stat.S_IMODE(p.lstat().st_mode) & 0o7000
                 for p in extract.rglob("*") if not p.is_symlink()}
    assert not {k: v for k, v in host_bits.items() if v}, "setuid/setgid/sticky bits on the builder's disk"
    entries = initrd_entries(tmp_path / "out" / "x.iso", tmp_path / "got")
    assert stat.S_IMODE(entries["usr/local/bin/evilsuid"].mode) == 0o4755
    assert stat.S_IMODE(entries["usr/local/bin/evilsgid"].mode) == 0o2711
    # the template's own setuid entries come back too
    template_suid = {e.name for e in cpio.list_entries(ROOTFS) if e.kind == "file" and e.mode & 0o6000}
    assert {n.removeprefix("./") for n in template_suid} <= {n for n, e in entries.items() if e.mode & 0o6000}


@needs_fixtures
@pytest.mark.parametrize("where", ["template", "extension", "files"])
def test_entry_that_would_replace_a_folder(tmp_path, template_iso, where):
    """A link or file where the image has a folder (home): refused with one line, naming the archive."""
    canary = Canary(tmp_path)
    tpl, over = template_iso, {}
    if where == "template":
        tpl = make_template(tmp_path / "tpl.iso", extra_initrd=newc([
            {"name": "home", "mode": LNK, "data": str(canary.dir / "empty")}]))
        code, needles = Exit.CPIO, ["corepure64.gz", "'home'"]
    elif where == "extension":
        make_tcz(tmp_path / "exts", "evilhome", {"x": "x"}, links={"home": str(canary.dir / "empty")})
        over = {"extensions": {"dirs": [str(tmp_path / "exts")], "initrd": ["evilhome"]}}
        code, needles = Exit.UNSAFE_ARCHIVE, ["evilhome.tcz", "'home'"]
    else:
        over = {"files": [{"source": str(canary.file), "dest": "/home"}]}
        code, needles = Exit.CONFIG_INVALID, ["files[0].dest", "'home'"]
    assert_error(build(tc_config(tmp_path, tpl, **over)), code, *needles)
    canary.check()


# -- device nodes, fifos and sparse giants in extensions ------------------------------------------------

@needs_fixtures
def test_extension_device_node_and_fifo_are_recorded_never_opened(tmp_path, template_iso):
    exts = tmp_path / "exts"
    make_tcz(exts, "evildev", {"usr/local/share/evildev/x": "x\n", "dev/.keep": ""},
             pseudo=["dev/evilzero c 666 0 0 1 5", "usr/local/share/evildev/zero c 644 0 0 1 5",
                     "usr/local/share/evildev/fifo i 644 0 0 f", "dev/evilsda b 660 0 6 8 0"])
    cfg = tc_config(tmp_path, template_iso, extensions={"dirs": [str(exts)], "initrd": ["evildev"]})
    proc = build(cfg)
    assert_ok(proc)
    assert du(tmp_path / "work") < 64 << 20
    entries = initrd_entries(tmp_path / "out" / "x.iso", tmp_path / "got")
    for name, kind, dev in (("dev/evilzero", "chr", (1, 5)), ("usr/local/share/evildev/zero", "chr", (1, 5)),
                            ("dev/evilsda", "blk", (8, 0))):
        e = entries[name]
        assert (e.kind, (e.rdevmajor, e.rdevminor), e.size) == (kind, dev, 0), name
    assert entries["usr/local/share/evildev/fifo"].kind == "fifo"


@needs_fixtures
@pytest.mark.parametrize("size,limit", [(2 * GIB, "1G"), (5 * GIB, None)], ids=["2GiB-limit-1G", "5GiB-default"])
def test_extension_sparse_giant_is_refused_before_unpacking(tmp_path, template_iso, size, limit):
    exts = tmp_path / "exts"
    tcz = make_tcz(exts, "evilsparse", {"usr/local/share/evilsparse/x": "x\n"},
                   sparse={"usr/local/share/evilsparse/big": size})
    assert tcz.stat().st_size < 64 << 10
    over = {"extensions": {"dirs": [str(exts)], "initrd": ["evilsparse"]}}
    if limit:
        over["work"] = {"dir": str(tmp_path / "work"), "extract_limit": limit}
    proc = build(tc_config(tmp_path, template_iso, **over))
    assert_error(proc, Exit.UNSAFE_ARCHIVE, "extraction limit", "evilsparse")
    assert du(tmp_path / "work") < 64 << 20


@needs_fixtures
def test_extensions_share_one_budget(tmp_path, template_iso):
    """Three extensions of 7 MiB each against a 16 MiB limit: each fits, together they do not."""
    exts = tmp_path / "exts"
    names = [f"evilpart{i}" for i in range(3)]
    for n in names:
        make_tcz(exts, n, {f"usr/local/share/{n}/x": "x\n"}, sparse={f"usr/local/share/{n}/big": 7 << 20})
    proc = build(tc_config(tmp_path, template_iso, work={"dir": str(tmp_path / "work"), "extract_limit": "16M"},
                           extensions={"dirs": [str(exts)], "initrd": names}))
    assert_error(proc, Exit.UNSAFE_ARCHIVE, "extraction limit", "evilpart2")


def test_squashfs_budget_unit(tmp_path):
    from pebuilder.formats import squashfs

    tcz = make_tcz(tmp_path, "s", {"a": "a"}, sparse={"big": 2 * GIB})
    with pytest.raises(PebuilderError) as exc:
        squashfs.extract(tcz, FsRoot(tmp_path / "root"), tmp_path / "scratch", Budget(max_bytes=GIB, what="s.tcz"))
    assert exc.value.code == Exit.UNSAFE_ARCHIVE and "extraction limit" in str(exc.value)
    assert not (tmp_path / "root" / "big").exists()


@needs_fixtures
def test_template_initrd_over_the_limit(tmp_path):
    """A zero-filled member compresses 1000:1: 100 MiB in the template's initrd against a 64 MiB limit."""
    tpl = make_template(tmp_path / "tpl.iso", extra_initrd=newc([
        {"name": "usr/share/zeros", "mode": REG, "data": bytes(100 << 20)}]))
    proc = build(tc_config(tmp_path, tpl, work={"dir": str(tmp_path / "work"), "extract_limit": "64M"}))
    assert_error(proc, Exit.UNSAFE_ARCHIVE, "extraction limit", "usr/share/zeros")


# -- the template ISO ---------------------------------------------------------------------------------

@needs_fixtures
@pytest.mark.parametrize("link", ["boot/grub", "cde", "boot/grub/grub.cfg"])
def test_template_iso_link_to_host_dir(tmp_path, link):
    """A template ISO whose boot/grub (or cde/, where extensions go) is a link to a host folder."""
    canary = Canary(tmp_path)

    def edit(tree: Path) -> None:
        (tree / link).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(str(canary.dir / ("file.txt" if link.endswith(".cfg") else "empty")), tree / link)

    tpl = make_template(tmp_path / "tpl.iso", edit=edit)
    assert_ok(build(tc_config(tmp_path, tpl, extensions={"dirs": [str(TCZ)], "onboot": ["kmaps"]})))
    canary.check()
    out = tmp_path / "out" / "x.iso"
    files = iso.list_files(out)
    assert {"/boot/grub/grub.cfg", "/cde/onboot.lst", "/cde/optional/kmaps.tcz"} <= set(files)
    assert "menuentry" in iso_member(out, "boot/grub/grub.cfg", tmp_path / "got").read_text()


@needs_fixtures
@pytest.mark.parametrize("member,code", [("boot/isolinux/isolinux.cfg", Exit.NO_ISOLINUX_CFG),
                                         ("boot/vmlinuz64", Exit.NO_TEMPLATE),
                                         ("boot/corepure64.gz", Exit.NO_TEMPLATE)])
def test_template_boot_files_linked_to_host_are_not_read(tmp_path, member, code):
    """isolinux.cfg, the kernel or the initrd as a link to a host file: the host's bytes are never read
    (the host copy of isolinux.cfg carries a marker that must not reach the ISO)."""
    canary = Canary(tmp_path)
    real = make_template_tree(tmp_path / "real")
    bait = canary.dir / "sub" / Path(member).name
    data = (real / member).read_bytes()
    if member.endswith(".cfg"):
        data = data.replace(b"loglevel=3", b"loglevel=3 HOSTSECRET")
    bait.write_bytes(data)
    canary.rebase()

    def edit(tree: Path) -> None:
        (tree / member).unlink()
        os.symlink(str(bait), tree / member)

    tpl = make_template(tmp_path / "tpl.iso", edit=edit)
    proc = build(tc_config(tmp_path, tpl))
    assert_error(proc, code, Path(member).name)
    canary.check()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _corrupt(p: Path) -> None:
    data = bytearray(p.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0x5A
    p.write_bytes(bytes(data))


def _truncated_xz(p: Path) -> None:
    import gzip
    import lzma

    data = lzma.compress(gzip.decompress(p.read_bytes()), format=lzma.FORMAT_XZ)
    p.write_bytes(data[: len(data) // 2])


@needs_fixtures
@pytest.mark.parametrize("damage", [_truncate, _corrupt, _truncated_xz], ids=["truncated-gzip", "corrupt-gzip",
                                                                              "truncated-xz"])
def test_damaged_initrd_in_template(tmp_path, damage):
    tpl = make_template(tmp_path / "tpl.iso", edit=lambda tree: damage(tree / "boot/corepure64.gz"))
    proc = build(tc_config(tmp_path, tpl))
    assert_error(proc, Exit.CPIO, "corepure64.gz")


# -- names from .dep files and mirrors -------------------------------------------------------------

TRAVERSALS = ["../../../../tmp/x", "../../../../../canary/x", "/CANARY/x", "ok\n../../../../../canary/y"]


def _dep_text(line: str, canary: Canary) -> str:
    return line.replace("/CANARY", str(canary.dir)) + "\n"


@needs_fixtures
@pytest.mark.parametrize("line", TRAVERSALS)
def test_mirror_dep_names_cannot_climb_out_of_the_cache(tmp_path, template_iso, line):
    canary = Canary(tmp_path)
    repo = tmp_path / "mirror" / "6.x" / "x86_64" / "tcz"
    make_tcz(repo, "evildep", {"usr/local/share/evildep/x": "x\n"})
    make_tcz(repo, "ok", {"usr/local/share/ok/x": "x\n"})
    for t in repo.glob("*.tcz"):
        (repo / f"{t.name}.md5.txt").write_text(f"{hashlib.md5(t.read_bytes()).hexdigest()}  {t.name}\n")
    (repo / "evildep.tcz.dep").write_text(_dep_text(line, canary))
    cache = tmp_path / "cache"
    host_tmp = {p.name for p in Path("/tmp").glob("x*")}
    with MirrorServer(tmp_path / "mirror") as srv:
        cfg = tc_config(tmp_path, template_iso, extensions={"dirs": [], "mirrors": [srv.url], "onboot": ["evildep"]})
        proc = build(cfg, env={"PEBUILDER_CACHE": str(cache)})
    assert_error(proc, Exit.EXTENSION_MISSING, "not a plain extension file name")
    canary.check()
    assert {p.name for p in Path("/tmp").glob("x*")} <= host_tmp
    assert not [p for p, _ in srv.requests if ".." in p or "canary" in p]  # the climbing name is never asked for
    outside = [p for p in tmp_path.rglob("*") if p.name.startswith(("x.tcz", "y.tcz"))]
    assert outside == []


@needs_fixtures
@pytest.mark.parametrize("line", TRAVERSALS + ["#comment", "a b/c"])
def test_local_dep_names_are_plain(tmp_path, template_iso, line):
    canary = Canary(tmp_path)
    exts = tmp_path / "exts"
    make_tcz(exts, "evildep", {"usr/local/share/evildep/x": "x\n"})
    make_tcz(exts, "ok", {"usr/local/share/ok/x": "x\n"})
    (exts / "evildep.tcz.dep").write_text(_dep_text(line, canary))
    cfg = tc_config(tmp_path, template_iso, extensions={"dirs": [str(exts)], "initrd": ["evildep"]})
    proc = build(cfg)
    assert_error(proc, Exit.EXTENSION_MISSING, "not a plain extension file name")
    canary.check()
    assert tmp_leftovers(tmp_path / "out") == []


def test_budget_counts_entries_too():
    b = Budget(max_bytes=GIB, max_entries=3, what="t")
    for i in range(3):
        b.take(0, f"e{i}")
    with pytest.raises(PebuilderError, match="more than 3 entries"):
        b.take(0, "e3")


def test_fifo_in_squashfs_unit_never_blocks(tmp_path):
    from pebuilder.formats import squashfs

    tcz = make_tcz(tmp_path, "f", {"a": "a"}, pseudo=["pipe i 644 0 0 f", "zero c 666 0 0 1 5"])
    fs = FsRoot(tmp_path / "root")
    squashfs.extract(tcz, fs, tmp_path / "scratch", Budget())
    for name in ("pipe", "zero"):
        st = os.lstat(tmp_path / "root" / name)
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0, name
        assert name in fs.meta.specials
    assert fs.read_bytes("zero") is None


def test_specials_survive_a_squashfs_round_trip(tmp_path):
    """Device nodes and fifos recorded from an extension are written back into a squashfs as such."""
    from pebuilder.formats import squashfs

    tcz = make_tcz(tmp_path, "sp", {"a": "a", "dev/.keep": ""},
                   pseudo=["dev/pipe i 644 0 0 f", "dev/zero c 666 0 0 1 5", "dev/sda b 660 0 6 8 0"])
    fs = FsRoot(tmp_path / "root")
    squashfs.extract(tcz, fs, tmp_path / "scratch", Budget())
    out = tmp_path / "again.sqfs"
    squashfs.make(tmp_path / "root", fs.meta, out, compression="gzip", scratch=tmp_path / "scratch")
    kinds = {e.name: (stat.S_IFMT(e.mode), e.major, e.minor) for e in squashfs.listing(out)}
    assert kinds["dev/pipe"][0] == stat.S_IFIFO
    assert kinds["dev/zero"] == (stat.S_IFCHR, 1, 5)
    assert kinds["dev/sda"] == (stat.S_IFBLK, 8, 0)
