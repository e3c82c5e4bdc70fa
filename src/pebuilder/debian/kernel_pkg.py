"""Which Debian packages hold a kernel, and the kernel's files once unpacked.

Up to trixie one versioned package holds it all (linux-image-6.12.x-amd64: /boot/vmlinuz-* and the
modules). Newer kernels (forky's 7.x) split it: linux-image-<abi> is then an empty package that
depends on linux-binary-<abi> (the image, as /usr/lib/modules/<version>/vmlinuz) and
linux-modules-<abi> (the modules), so those parts are pinned with it and unpacked side by side.
"""

from __future__ import annotations

import re
from pathlib import Path

from pebuilder.arch import Arch
from pebuilder.customise.modules import KernelFiles, ensure_index, single_kver
from pebuilder.debian.archive import Archive, Package
from pebuilder.errors import Exit, PebuilderError

# linux-image-6.1.0-28-686, not the meta package linux-image-686 (whose flavour starts with a digit too)
VERSIONED = re.compile(r"^linux-image-\d+\.\d")
PARTS = ("linux-binary-", "linux-modules-")  # the split kernel's packages, followed by the ABI name


def meta_name(arch: Arch, package: str | None) -> str:
    return package or f"linux-image-{arch.kernel_flavour}"


def is_part(name: str) -> bool:
    """A package that holds (part of) a kernel: the versioned image or one of its split parts."""
    return bool(VERSIONED.match(name)) or name.startswith(PARTS)


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


def image_packages(archive: Archive, meta: str) -> list[Package]:
    """The packages that hold the kernel of `meta`: the split parts its versioned image depends on (if
    any), then the versioned image itself (always last)."""
    image = image_package(archive, meta)
    abi = image.name.removeprefix("linux-image-")
    parts = [archive.package(dep.name) for alts in image.depends for dep in alts[:1]
             if dep.name in {p + abi for p in PARTS}]
    return [*parts, image]


def files(roots: list[Path], source: str) -> KernelFiles:
    """The kernel image and module tree of unpacked kernel packages (one, or a split kernel's parts).
    Modules live under /lib/modules (bookworm) or /usr/lib/modules (trixie on: packages ship only the
    merged-/usr paths); the image is /boot/vmlinuz-<version>, or /usr/lib/modules/<version>/vmlinuz
    where a split kernel's linux-binary package puts it (its postinst copies it to /boot)."""
    trees = [r / sub for r in roots for sub in ("", "usr") if (r / sub / "lib/modules").is_dir()]
    kvers = sorted({p.name for t in trees for p in (t / "lib/modules").iterdir() if p.is_dir()})
    if len(kvers) != 1:
        raise PebuilderError(f"{source}: expected one lib/modules/<version> folder, found {kvers or 'none'}",
                             Exit.KERNEL)
    kver = kvers[0]
    with_modules = [t for t in trees if (t / "lib/modules" / kver / "kernel").is_dir()]
    modroot = (with_modules or trees)[0]
    single_kver(modroot, source)
    candidates = [*(r / "boot" / f"{name}-{kver}" for r in roots for name in ("vmlinuz", "vmlinux")),
                  *(t / "lib/modules" / kver / "vmlinuz" for t in trees)]
    vmlinuz = next((c for c in candidates if c.is_file()), None)
    if vmlinuz is None:
        raise PebuilderError(f"{source} holds no boot/vmlinuz-{kver} (nor lib/modules/{kver}/vmlinuz)", Exit.KERNEL)
    kf = KernelFiles(vmlinuz, kver, modroot, source)
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
