"""A kernel for a Tiny Core remaster: a Debian package (through the verified archive, as the live
system gets its own) or a local vmlinuz with its modules folder.

Nothing is installed on the host: the package is unpacked into pebuilder's cache, and depmod runs
on that copy so modules.dep is there to compute which files an image needs.
"""

from __future__ import annotations

from pebuilder.arch import Arch
from pebuilder.config.model import Kernel
from pebuilder.customise.modules import KernelFiles, ensure_index, single_kver
from pebuilder.debian import kernel_pkg, lock
from pebuilder.errors import Exit, PebuilderError
from pebuilder.net.cache import DownloadCache


def prepare(spec: Kernel, arch: Arch, suite: str, mirror: str | None, offline: bool) -> KernelFiles:
    if spec.package:
        cache = DownloadCache(offline=offline)
        archive = lock.open_archive(suite, arch, mirror, cache, offline)
        parts = [lock.Pinned.of(p) for p in kernel_pkg.image_packages(archive, spec.package)]
        return kernel_pkg.files([lock.unpacked(p, cache) for p in parts], parts[-1].deb_name)
    if spec.vmlinuz is None or spec.modules_dir is None:
        raise PebuilderError("[kernel]: give package, or vmlinuz and modules_dir", Exit.KERNEL)
    if not spec.vmlinuz.is_file():
        raise PebuilderError(f"kernel.vmlinuz: {spec.vmlinuz} does not exist", Exit.KERNEL)
    kver = single_kver(spec.modules_dir, str(spec.modules_dir))
    kf = KernelFiles(spec.vmlinuz, kver, spec.modules_dir, str(spec.vmlinuz))
    ensure_index(kf)
    return kf
