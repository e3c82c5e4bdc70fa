"""A kernel and its modules from a Debian package (or a local build), and module dependency closure.

Nothing is installed on the host: the package is unpacked into pebuilder's cache, and depmod runs
on that copy so modules.dep is there to compute which files an initrd needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pebuilder.config.model import KernelSpec
from pebuilder.debian import apt
from pebuilder.errors import Exit, PebuilderError
from pebuilder.runner import run


@dataclass
class KernelFiles:
    vmlinuz: Path
    kver: str
    root: Path  # holds lib/modules/<kver>
    source: str

    @property
    def moddir(self) -> Path:
        return self.root / "lib/modules" / self.kver


def _single_kver(root: Path, where: str) -> str:
    mods = sorted(p.name for p in (root / "lib/modules").glob("*") if p.is_dir())
    if len(mods) != 1:
        raise PebuilderError(f"{where}: expected one lib/modules/<version> folder, found {mods or 'none'}", Exit.KERNEL)
    return mods[0]


def prepare(spec: KernelSpec) -> KernelFiles:
    if spec.debian:
        deb = apt.download(apt.kernel_package(spec.debian))
        root = apt.unpack(deb)
        kver = _single_kver(root, deb.name)
        vmlinuz = root / "boot" / f"vmlinuz-{kver}"
        source = deb.name
    else:
        assert spec.vmlinuz is not None
        if not spec.vmlinuz.is_file():
            raise PebuilderError(f"kernel.vmlinuz: {spec.vmlinuz} does not exist", Exit.KERNEL)
        if spec.modules is None:
            raise PebuilderError("kernel.modules: give the folder holding lib/modules/<version> for this kernel",
                                 Exit.KERNEL)
        root = spec.modules
        kver = _single_kver(root, str(root))
        vmlinuz = spec.vmlinuz
        source = str(spec.vmlinuz)
    if not vmlinuz.is_file():
        raise PebuilderError(f"no kernel image {vmlinuz}", Exit.KERNEL)
    kf = KernelFiles(vmlinuz, kver, root, source)
    if not (kf.moddir / "modules.dep").exists():
        run(["depmod", "-a", "-b", root, kver], what=f"indexing modules of {kver}", code=Exit.KERNEL)
    return kf


def _name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    return base.replace("-", "_")


def module_index(kf: KernelFiles) -> tuple[dict[str, tuple[str, list[str]]], set[str]]:
    """name -> (relative path, dependency paths), and the names built into the kernel."""
    index: dict[str, tuple[str, list[str]]] = {}
    for line in (kf.moddir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        path, _, deps = line.partition(":")
        index[_name(path)] = (path.strip(), deps.split())
    builtin = set()
    bfile = kf.moddir / "modules.builtin"
    if bfile.exists():
        builtin = {_name(x) for x in bfile.read_text().split()}
    return index, builtin


def closure(kf: KernelFiles, names: list[str], optional: list[str] = ()) -> tuple[list[str], list[str]]:
    """Module files (relative to the modules folder) for `names` and `optional` with their dependencies.

    A name in `names` that is neither a module nor built in is an error; `optional` ones are skipped.
    Returns (files, names found built in).
    """
    index, builtin = module_index(kf)
    files: list[str] = []
    built: list[str] = []
    for n in [*names, *optional]:
        key = n.replace("-", "_")
        if key in index:
            path, deps = index[key]
            for f in [*deps, path]:
                if f not in files:
                    files.append(f)
        elif key in builtin:
            built.append(n)
        elif n in names:
            raise PebuilderError(f"kernel module {n!r} is in no module tree of {kf.kver} ({kf.source}) and not "
                                 "built in; check the name (modinfo) or choose another kernel", Exit.KERNEL)
    return files, built
