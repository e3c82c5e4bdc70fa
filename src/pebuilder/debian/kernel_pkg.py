"""Which Debian package holds a kernel, and the kernel's files once unpacked."""

from __future__ import annotations

import re
from pathlib import Path

from pebuilder.arch import Arch
from pebuilder.customise.modules import KernelFiles, ensure_index, single_kver
from pebuilder.debian.archive import Archive, Package
from pebuilder.errors import Exit, PebuilderError

# linux-image-6.1.0-28-686, not the meta package linux-image-686 (whose flavour starts with a digit too)
VERSIONED = re.compile(r"^linux-image-\d+\.\d")


def meta_name(arch: Arch, package: str | None) -> str:
    return package or f"linux-image-{arch.kernel_flavour}"


def image_package(archive: Archive, meta: str) -> Package:
    """The versioned linux-image package a meta package such as linux-image-amd64 stands for."""
    pkg = archive.package(meta)
    if VERSIONED.match(pkg.name):
        return pkg
    for alts in pkg.depends:
        for dep in alts:
            if VERSIONED.match(dep.name):
                return archive.package(dep.name)
    raise PebuilderError(f"{meta} does not depend on a versioned linux-image package", Exit.KERNEL)


def files(root: Path, source: str) -> KernelFiles:
    """The kernel image and module tree of an unpacked linux-image package."""
    kver = single_kver(root, source)
    candidates = [root / "boot" / f"vmlinuz-{kver}", root / "boot" / f"vmlinux-{kver}"]
    vmlinuz = next((c for c in candidates if c.is_file()), None)
    if vmlinuz is None:
        raise PebuilderError(f"{source} holds no boot/vmlinuz-{kver}", Exit.KERNEL)
    kf = KernelFiles(vmlinuz, kver, root, source)
    ensure_index(kf)
    return kf


def for_grub(vmlinuz: Path, gz: Path) -> Path:
    """The kernel file the boot menus load: an uncompressed arm64 Image is gzip'd into `gz` (33 MB to
    about 11 MB for Debian's; GRUB inflates it), anything else (a self-extracting bzImage) is used as is."""
    from pebuilder.formats import compress
    from pebuilder.formats.kernel import is_arm64_image

    if not is_arm64_image(vmlinuz):
        gz.unlink(missing_ok=True)
        return vmlinuz
    compress.compress_file(vmlinuz, gz, "gzip", "default")
    return gz
