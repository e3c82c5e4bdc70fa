"""A 32-bit Tiny Core remaster on the machine `.ci/setup` made: the template is detected as Tiny Core x86,
`pebuilder remaster` packages it with isolinux (BIOS) and GRUB i386-efi (BOOTIA32.EFI, 32-bit UEFI), and
the ISO boots under qemu-system-i386 both ways to the template's own console lines.

There is no 32-bit Tiny Core among the fixtures, so the template is built here in Tiny Core's shape
(Core-7.2.iso: boot/vmlinuz, boot/core.gz, boot/isolinux/) from a real 32-bit kernel and userland:
Debian's i386 `linux-image-686` and `busybox-static`, fetched through pebuilder's verified archive code
from the host's mirror, with the scripts in tests/tc-i386/ as /init, rcS and tc-config. Built once per
session; each firmware boots once.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import EXT_MARKER, ROOT, TEST_CACHE, make_iso, make_marker_extension, network_unavailable, pebuilder
from shared import built

from pebuilder import arch
from pebuilder.boot.qemu import boot, console_text
from pebuilder.formats import cpio
from pebuilder.fsroot import FsRoot, TreeMeta
from pebuilder.runner import require

SCRIPTS = ROOT / "tests" / "tc-i386"
HOST = "pbi386"  # fixed: the build is shared by xdist workers; the template alone says "box"
TC_VERSION = "7.2"
# What the template's links point at: busybox init and the applets its scripts call before busybox
# --install could run (Tiny Core's initrd has these links too).
APPLETS = {"bin": ["sh", "mount", "umount", "cat", "echo", "rm", "mkdir", "ls", "hostname", "uname", "sleep",
                   "grep", "sed"],
           "sbin": ["init", "reboot", "poweroff", "halt", "getty"]}
ISOLINUX_CFG = """display boot.msg
default microcore

label microcore
\tkernel /boot/vmlinuz
\tinitrd /boot/core.gz
\tappend loglevel=3

implicit 0
prompt 1
timeout 300
F1 boot.msg
"""


def setup_packages() -> list[str]:
    """The PACKAGES list of .ci/setup, as bash reads it."""
    text = (ROOT / ".ci/setup").read_text()
    body = re.search(r"^PACKAGES=\((.*?)\)", text, re.S | re.M)
    assert body, ".ci/setup has no PACKAGES=( ... ) list"
    return shlex.split(body.group(1))


def test_setup_installs_everything_doctor_lists():
    """The README's set-up leaves every tool `pebuilder doctor` checks installed, 32-bit UEFI included."""
    from pebuilder.runner import TOOLS

    packages = set(setup_packages())
    assert {t.package for t in TOOLS.values()} <= packages, {t.package for t in TOOLS.values()} - packages
    assert {"grub-i386-efi", "ovmf-ia32", "qemu-system-i386"} <= set(TOOLS)
    for a in arch.ALL:  # every arch boots under UEFI in the boot checks: its firmware is set up and checked
        assert a.uefi_firmware is not None and a.uefi_firmware.package in packages, a
        assert any(t.path == a.uefi_firmware.code for t in TOOLS.values()), f"doctor does not check {a}'s firmware"
    for a in (arch.X86_64, arch.I386):  # Tiny Core templates of both get GRUB from the host (arm64's is unpacked)
        assert a.grub_efi_package in packages, a
        assert any(t.path == f"/usr/lib/grub/{a.grub_efi}/linux.mod" for t in TOOLS.values()), a
    proc = pebuilder("doctor", check=False)
    assert re.search(r"^ok +grub-i386-efi +/usr/lib/grub/i386-efi/linux.mod", proc.stdout, re.M), proc.stdout
    assert re.search(r"^ok +ovmf-ia32 +/usr/share/OVMF/OVMF32_CODE_4M.secboot.fd", proc.stdout, re.M), proc.stdout


def test_linux_image_686_is_a_meta_package():
    """i386's flavour starts with a digit: linux-image-686 must still be read as the meta package."""
    from pebuilder.debian.kernel_pkg import VERSIONED

    assert not VERSIONED.match("linux-image-686") and not VERSIONED.match("linux-image-686-pae")
    assert not VERSIONED.match("linux-image-amd64") and not VERSIONED.match("linux-image-cloud-amd64")
    assert VERSIONED.match("linux-image-6.1.0-28-686") and VERSIONED.match("linux-image-6.1.0-28-amd64")


# -- the 32-bit template -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def i386_parts() -> tuple[Path, Path]:
    """Debian's i386 kernel (bzImage) and static busybox, verified against the signed index, unpacked in
    the test cache. Only the release suite: a test template needs no security updates, and an -updates or
    -security index caught mid-update would stop the test for nothing."""
    from pebuilder.debian import kernel_pkg, lock
    from pebuilder.debian.archive import Archive
    from pebuilder.debian.sources import host_sources
    from pebuilder.errors import PebuilderError
    from pebuilder.net.cache import DownloadCache

    cache = DownloadCache(TEST_CACHE)
    try:
        archive = Archive([s for s in host_sources("bookworm") if s.suite == "bookworm"], arch.I386, cache).load()
        kernel = lock.unpacked(lock.Pinned.of(kernel_pkg.image_package(archive, "linux-image-686")), cache)
        busybox = lock.unpacked(lock.Pinned.of(archive.package("busybox-static")), cache)
    except PebuilderError as exc:
        network_unavailable(f"Debian's i386 packages cannot be fetched here: {exc}")
    (vmlinuz,) = (kernel / "boot").glob("vmlinuz-*")
    return vmlinuz, busybox / "bin/busybox"


def make_i386_template(folder: Path, vmlinuz: Path, busybox: Path) -> Path:
    """Core-7.2.iso's shape: isolinux, boot/vmlinuz (32-bit bzImage), boot/core.gz (newc, gzip), built
    rootless: owners, modes and /dev/console live in the archive, not on this machine's disk."""
    tree = folder / "iso-tree"
    fs = FsRoot(folder / "core", TreeMeta())
    for d, mode in [("bin", 0o755), ("sbin", 0o755), ("dev", 0o755), ("etc/init.d", 0o755), ("proc", 0o555),
                    ("sys", 0o555), ("mnt", 0o755), ("opt", 0o775), ("root", 0o700), ("tmp", 0o1777),
                    ("usr/bin", 0o755), ("usr/sbin", 0o755), ("usr/share/doc/tc", 0o755)]:
        fs.mkdir(d, mode)
    fs.mkdir("usr/local/tce.installed", 0o775, 0, 50)  # root:staff 775, as Tiny Core's
    fs.copy_from(busybox, "bin/busybox", 0o755)
    for folder_name, names in APPLETS.items():
        for name in names:
            fs.symlink(f"{folder_name}/{name}", "/bin/busybox")
    fs.special("dev/console", stat.S_IFCHR | 0o600, 5, 1)
    fs.special("dev/null", stat.S_IFCHR | 0o666, 1, 3)
    fs.copy_from(SCRIPTS / "init", "init", 0o755)
    fs.copy_from(SCRIPTS / "rcS", "etc/init.d/rcS", 0o755)
    fs.copy_from(SCRIPTS / "tc-config", "etc/init.d/tc-config", 0o755)
    fs.copy_from(SCRIPTS / "inittab", "etc/inittab", 0o644)
    fs.write("usr/share/doc/tc/release.txt", TC_VERSION + "\n", 0o644)
    fs.write("etc/passwd", "root:x:0:0:root:/root:/bin/sh\ntc:x:1001:50:Linux User,,,:/home/tc:/bin/sh\n", 0o644)
    fs.write("etc/group", "root:x:0:\nstaff:x:50:tc\n", 0o644)
    fs.write("etc/shadow", "root:*:13525:0:99999:7:::\ntc:*:13525:0:99999:7:::\n", 0o600)
    fs.write("opt/bootsync.sh", "#!/bin/sh\n/opt/bootlocal.sh &\n", 0o775, 0, 50)
    fs.write("opt/bootlocal.sh", "#!/bin/sh\n", 0o775, 0, 50)
    (tree / "boot/isolinux").mkdir(parents=True)
    cpio.pack(fs.root, fs.meta, tree / "boot/core.gz", "gzip", "default")
    shutil.copyfile(vmlinuz, tree / "boot/vmlinuz")
    for tool in ("isolinux", "ldlinux"):  # Debian's isolinux 6 (Tiny Core 7.2 shipped 4.x, which needs no ldlinux)
        src = Path(require(tool))
        shutil.copyfile(src, tree / "boot/isolinux" / src.name)
    (tree / "boot/isolinux/isolinux.cfg").write_text(ISOLINUX_CFG)
    (tree / "boot/isolinux/boot.msg").write_text("Core 7.2 (i386 test template)\n")
    iso = make_iso(tree, folder / "Core-7.2.iso", volume="Core")
    shutil.rmtree(tree)
    shutil.rmtree(fs.root)
    return iso


@pytest.fixture(scope="module")
def remaster32(tmp_path_factory, i386_parts) -> Path:
    """The template, and `pebuilder remaster` of it with an extension extracted into the initrd."""

    def make(folder: Path) -> None:
        iso = make_i386_template(folder, *i386_parts)
        exts = folder / "exts"
        exts.mkdir()
        make_marker_extension(exts)
        cfg = folder / "ezremaster.cfg"
        cfg.write_text(f"cd_location = {iso}\ntemp_dir = {folder / 'work'}/\ncc = console=ttyS0 host={HOST}\n"
                       "app_extract_initrd = pbtest.tcz\n")
        proc = pebuilder("remaster", cfg, "rebuild", "--ext-dir", exts, "--menu-timeout", "1")
        (folder / "remaster.out").write_text(proc.stdout + proc.stderr)

    return built(tmp_path_factory, "i386-remaster", make)



@pytest.mark.network
def test_i386_template_is_32bit_tiny_core(remaster32):
    info = json.loads(pebuilder("inspect", remaster32 / "Core-7.2.iso", "--json").stdout)
    assert info["arch"] == "x86" and arch.parse(info["arch"]) is arch.I386
    assert info["tc_version"] == TC_VERSION and info["is_tinycore"]
    assert info["kernel"] == "boot/vmlinuz" and info["initrds"] == ["boot/core.gz"]
    assert re.fullmatch(r"6\.1\.0-\d+-686", info["kernel_version"] or ""), info["kernel_version"]


@pytest.mark.network
def test_i386_remaster_has_bios_and_ia32_uefi(remaster32, tmp_path):
    out = remaster32 / "work/ezremaster.iso"
    assert "GRUB i386-efi" in (remaster32 / "remaster.out").read_text()
    torito = subprocess.run(["xorriso", "-indev", str(out), "-report_el_torito", "plain"], capture_output=True,
                            text=True, check=True).stdout
    assert re.search(r"El Torito boot img :\s+1\s+BIOS", torito) and re.search(r"El Torito boot img :\s+2\s+UEFI",
                                                                               torito), torito
    # The ESP (an appended partition): GRUB for 32-bit UEFI at the removable-media path, nothing 64-bit.
    parts = json.loads(subprocess.run(["sfdisk", "-J", str(out)], capture_output=True, text=True,
                                                    check=True).stdout)["partitiontable"]["partitions"]
    esp = next(p for p in parts if p["type"] in ("ef", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"))
    image = f"{out}@@{esp['start'] * 512}"
    listing = subprocess.run(["mdir", "-b", "-i", image, "::/EFI/BOOT"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert listing == ["::/EFI/BOOT/BOOTIA32.EFI"], listing
    loader = tmp_path / "BOOTIA32.EFI"
    subprocess.run(["mcopy", "-i", image, "::/EFI/BOOT/BOOTIA32.EFI", str(loader)], check=True, capture_output=True)
    data = loader.read_bytes()
    pe = int.from_bytes(data[0x3C:0x40], "little")
    assert data[:2] == b"MZ" and data[pe:pe + 4] == b"PE\0\0"
    assert int.from_bytes(data[pe + 4:pe + 6], "little") == 0x14C, "BOOTIA32.EFI is an i386 PE image"
    # The remastered initrd: the extension extracted, marked loaded and its startup script queued.
    core = tmp_path / "core.gz"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(out), "-extract", "/boot/core.gz", str(core)],
                   check=True, capture_output=True)
    names = {e.name.removeprefix("./") for e in cpio.list_entries(core)}
    assert {"usr/local/tce.installed/pbtest", "etc/init.d/tc-config", "bin/busybox"} <= names
    assert cpio.read_member(core, "tmp/setup.lst") == b"/usr/local/tce.installed/pbtest\n"


@pytest.mark.network
@pytest.mark.boot
@pytest.mark.parametrize("firmware,expected", [("bios", "firmware bios"), ("uefi", "firmware uefi 32-bit")])
def test_i386_remaster_boots(remaster32, firmware, expected, tmp_path):
    """Under qemu-system-i386 (no KVM): BIOS through isolinux, 32-bit UEFI (OVMF ia32) through GRUB."""
    log = tmp_path / "serial.log"
    up = f"tc-config: up on i686, {expected}"
    res = boot(remaster32 / "work/ezremaster.iso", arch="i386", firmware=firmware, media="cdrom", timeout=240,
               expect=[f"Setting hostname to {HOST}", EXT_MARKER, up], log_path=log)
    text = console_text(log.read_bytes())
    assert res.ok, f"{firmware}: {res.exit_reason}; missing {res.missing}\n{text[-3000:]}"
    print(f"\ni386 {firmware}: {up!r} after {res.seen[up]:.1f} s")
    assert text.index(f"Setting hostname to {HOST}") < text.index(EXT_MARKER) < text.index(up)
