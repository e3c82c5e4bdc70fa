"""A kernel and its modules from a Debian package (or a local build), unpacked into the cache.

Nothing is installed on the host: the package is unpacked into pebuilder's cache, and depmod runs
on that copy so modules.dep is there to compute which files an image needs.
"""

from __future__ import annotations

from pebuilder.config.model import Kernel
from pebuilder.customise.modules import KernelFiles, ensure_index, single_kver
from pebuilder.debian import apt
from pebuilder.errors import Exit, PebuilderError


def prepare(spec: Kernel) -> KernelFiles:
    """The kernel a Tiny Core remaster asked for: a Debian package through the host's apt, or local files."""
    if spec.package:
        deb = apt.download(apt.kernel_package(spec.package))
        root = apt.unpack(deb)
        kver = single_kver(root, deb.name)
        vmlinuz = root / "boot" / f"vmlinuz-{kver}"
        source = deb.name
    else:
        if spec.vmlinuz is None or spec.modules_dir is None:
            raise PebuilderError("[kernel]: give package, or vmlinuz and modules_dir", Exit.KERNEL)
        if not spec.vmlinuz.is_file():
            raise PebuilderError(f"kernel.vmlinuz: {spec.vmlinuz} does not exist", Exit.KERNEL)
        root = spec.modules_dir
        kver = single_kver(root, str(root))
        vmlinuz = spec.vmlinuz
        source = str(spec.vmlinuz)
    if not vmlinuz.is_file():
        raise PebuilderError(f"no kernel image {vmlinuz}", Exit.KERNEL)
    kf = KernelFiles(vmlinuz, kver, root, source)
    ensure_index(kf)
    return kf
