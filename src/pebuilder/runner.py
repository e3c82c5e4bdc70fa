"""The one door to external programs.

Every tool pebuilder calls is named in TOOLS with the Debian package that ships it, so a missing
program becomes an error that says what to install, and `pebuilder doctor` can list them all.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pebuilder.errors import Exit, ToolFailedError, ToolMissingError

log = logging.getLogger("pebuilder.run")


@dataclass(frozen=True)
class Tool:
    name: str
    package: str
    purpose: str
    path: str | None = None  # a data file rather than a program, checked by existence


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in [
        Tool("xorriso", "xorriso", "read template ISOs, write hybrid ISOs"),
        Tool("mksquashfs", "squashfs-tools", "make .tcz extensions"),
        Tool("unsquashfs", "squashfs-tools", "extract .tcz extensions"),
        Tool("mke2fs", "e2fsprogs", "ext2/3/4 filesystems in disk images"),
        Tool("debugfs", "e2fsprogs", "fix ownership inside ext filesystems"),
        Tool("e2fsck", "e2fsprogs", "check filesystems of disk images"),
        Tool("sfdisk", "fdisk", "partition tables of disk images"),
        Tool("mformat", "mtools", "FAT filesystems for EFI system partitions"),
        Tool("mcopy", "mtools", "copy files into FAT images"),
        Tool("mmd", "mtools", "make folders in FAT images"),
        Tool("grub-mkimage", "grub-common", "build GRUB boot images"),
        Tool("grub-i386-pc", "grub-pc-bin", "GRUB modules for BIOS", "/usr/lib/grub/i386-pc/boot.img"),
        Tool("grub-x86_64-efi", "grub-efi-amd64-bin", "GRUB modules for UEFI",
             "/usr/lib/grub/x86_64-efi/linux.mod"),
        Tool("grub-i386-efi", "grub-efi-ia32-bin", "GRUB modules for 32-bit UEFI (i386 templates)",
             "/usr/lib/grub/i386-efi/linux.mod"),
        Tool("isohdpfx", "isolinux", "isohybrid MBR for BIOS disk boot", "/usr/lib/ISOLINUX/isohdpfx.bin"),
        Tool("isolinux", "isolinux", "isolinux for templates built from Debian",
             "/usr/lib/ISOLINUX/isolinux.bin"),
        Tool("ldlinux", "syslinux-common", "isolinux's ldlinux.c32", "/usr/lib/syslinux/modules/bios/ldlinux.c32"),
        Tool("depmod", "kmod", "module dependency files in initrds"),
        Tool("qemu-img", "qemu-utils", "qcow2/vmdk conversion"),
        Tool("qemu-system-x86_64", "qemu-system-x86", "boot checks"),
        Tool("ovmf", "ovmf", "UEFI firmware for boot checks", "/usr/share/OVMF/OVMF_CODE_4M.fd"),
        Tool("qemu-system-i386", "qemu-system-x86", "boot checks of 32-bit images"),
        Tool("ovmf-ia32", "ovmf-ia32", "32-bit UEFI firmware for boot checks",
             "/usr/share/OVMF/OVMF32_CODE_4M.secboot.fd"),
        Tool("openssl", "openssl", "SHA-512 crypt password hashes"),
        Tool("zstd", "zstd", "zstd-compressed initrds"),
        Tool("gpgv", "gpgv", "verify Debian archive signatures (InRelease)"),
        Tool("debian-archive-keyring", "debian-archive-keyring", "keys Debian signs its archive with",
             "/usr/share/keyrings/debian-archive-keyring.gpg"),
        Tool("mmdebstrap", "mmdebstrap", "Debian minbase systems without root (variant = \"minbase\")"),
        Tool("newuidmap", "uidmap", "user namespaces for mmdebstrap --mode=unshare"),
        Tool("busybox", "busybox-static", "applet lists of the live system's busybox"),
        Tool("qemu-system-aarch64", "qemu-system-arm", "boot checks of arm64 images"),
        Tool("aavmf", "qemu-efi-aarch64", "UEFI firmware for arm64 boot checks", "/usr/share/AAVMF/AAVMF_CODE.fd"),
    ]
}

EXTRA_PATH = ("/usr/sbin", "/sbin")


def which(name: str) -> str | None:
    """Find a program, also in sbin folders that an unprivileged user's PATH often lacks."""
    tool = TOOLS.get(name)
    if tool and tool.path:
        return tool.path if os.path.exists(tool.path) else None
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(EXTRA_PATH)
    return shutil.which(name, path=path)


def require(name: str) -> str:
    found = which(name)
    if found:
        return found
    tool = TOOLS.get(name)
    hint = f"install it with: apt-get install {tool.package}" if tool else "install it"
    raise ToolMissingError(f"{name} is needed but not found; {hint}")


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    stdout_to: Path | None = None,
    capture: bool = True,
    what: str = "",
    code: Exit = Exit.TOOL_FAILED,
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool, log the command line, and turn a non-zero exit into a readable error."""
    argv = [str(a) for a in args]
    argv[0] = require(argv[0])
    log.debug("$ %s", shlex.join(argv))
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    out = open(stdout_to, "wb") if stdout_to else (subprocess.PIPE if capture else None)  # noqa: SIM115
    try:
        proc = subprocess.run(argv, cwd=cwd, env=full_env, input=stdin, stdout=out,
                              stderr=subprocess.PIPE, check=False)
    finally:
        if stdout_to:
            out.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        tail = "\n  ".join(err[-12:]) if err else "(no output on stderr)"
        doing = f" while {what}" if what else ""
        raise ToolFailedError(
            f"{Path(argv[0]).name} failed (exit {proc.returncode}){doing}:\n  {tail}\n"
            f"  command: {shlex.join(argv)}", code)
    return proc


def missing_tools() -> list[Tool]:
    return [t for t in TOOLS.values() if which(t.name) is None]
