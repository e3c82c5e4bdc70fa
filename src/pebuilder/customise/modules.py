"""Kernel modules: which files a set of module names needs (modules.dep closure), copied into a tree.

Works on any unpacked kernel (a Debian package in the cache, or a local build) and any image tree;
depmod then runs on the image's copy so busybox or kmod modprobe there finds them.

Compressed modules (Debian trixie's 6.12 ships every module as `.ko.xz`) are copied decompressed,
as plain `.ko`: whether a compressed one loads depends on the loader (busybox's insmod/modprobe
only with its xz support, Tiny Core's older busybox not at all) and on the kernel
(CONFIG_MODULE_DECOMPRESS), a plain one loads everywhere; and the image compresses them anyway
(squashfs, the initramfs), where xz inside xz only costs space. The signature appended to a signed
module is inside the compressed file, so the plain copy keeps it.
"""

from __future__ import annotations

import lzma
import os
from dataclasses import dataclass
from pathlib import Path

from pebuilder.errors import Exit, PebuilderError
from pebuilder.fsroot import FsRoot
from pebuilder.runner import run

SUFFIXES = (".ko.xz", ".ko.zst", ".ko.gz", ".ko")


@dataclass
class KernelFiles:
    vmlinuz: Path
    kver: str
    root: Path  # holds lib/modules/<kver>
    source: str

    @property
    def moddir(self) -> Path:
        return self.root / "lib/modules" / self.kver


def single_kver(root: Path, where: str) -> str:
    mods = sorted(p.name for p in (root / "lib/modules").glob("*") if p.is_dir())
    if len(mods) != 1:
        raise PebuilderError(f"{where}: expected one lib/modules/<version> folder, found {mods or 'none'}",
                             Exit.KERNEL)
    return mods[0]


def ensure_index(kf: KernelFiles) -> None:
    if not (kf.moddir / "modules.dep").exists():
        run(["depmod", "-a", "-b", kf.root, kf.kver], what=f"indexing modules of {kf.kver}", code=Exit.KERNEL)


def module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for ext in SUFFIXES:
        if base.endswith(ext):
            base = base[: -len(ext)]
    return base.replace("-", "_")


def module_index(kf: KernelFiles) -> tuple[dict[str, tuple[str, list[str]]], set[str]]:
    """name -> (relative path, dependency paths), and the names built into the kernel."""
    ensure_index(kf)
    index: dict[str, tuple[str, list[str]]] = {}
    for line in (kf.moddir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        path, _, deps = line.partition(":")
        index[module_name(path)] = (path.strip(), deps.split())
    builtin = set()
    bfile = kf.moddir / "modules.builtin"
    if bfile.exists():
        builtin = {module_name(x) for x in bfile.read_text().split()}
    return index, builtin


def closure(kf: KernelFiles, names: list[str],
            optional: list[str] | tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Module files (relative to the modules folder) for `names` and `optional`, dependencies first.

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
            for dep in [*_deps_first(index, deps), path]:
                if dep not in files:
                    files.append(dep)
        elif key in builtin:
            built.append(n)
        elif n in names:
            raise PebuilderError(f"kernel module {n!r} is in no module tree of {kf.kver} ({kf.source}) and not "
                                 "built in; check the name (modinfo) or choose another kernel", Exit.KERNEL)
    return files, built


def _deps_first(index: dict[str, tuple[str, list[str]]], deps: list[str]) -> list[str]:
    """modules.dep lists all dependencies of a module; order them so each loads after its own."""
    out: list[str] = []

    def visit(path: str, seen: tuple[str, ...]) -> None:
        if path in out or path in seen:
            return
        for d in index.get(module_name(path), (path, []))[1]:
            visit(d, (*seen, path))
        out.append(path)

    for d in deps:
        visit(d, ())
    return out


COMPRESSED = {".xz": "xz", ".zst": "zstd", ".gz": "gzip"}


def plain_name(rel: str) -> str:
    """Where a module file goes in an image: `x.ko.xz` → `x.ko` (see copy_module)."""
    for ext in COMPRESSED:
        if rel.endswith(".ko" + ext):
            return rel[: -len(ext)]
    return rel


def copy_module(fs: FsRoot, src: Path, rel: str) -> str:
    """One module file into the tree at `rel` (a compressed one decompressed, at plain_name(rel));
    returns where it went."""
    from pebuilder.formats import compress

    dest = plain_name(rel)
    if dest == rel:
        fs.copy_from(src, rel, 0o644)
        return rel
    with open(src, "rb") as raw:
        stream = compress.open_decompressed(raw, COMPRESSED[rel[len(dest):]])
        try:
            data = stream.read()
        except (EOFError, OSError, ValueError, lzma.LZMAError) as exc:
            raise PebuilderError(f"{src}: damaged compressed kernel module ({exc})", Exit.KERNEL) from None
        finally:
            stream.close()
    fs.write(dest, data, 0o644)
    os.utime(fs.path(dest), (src.stat().st_mtime,) * 2)
    return dest


def install(fs: FsRoot, kf: KernelFiles, files: list[str], base: str = "lib/modules") -> None:
    """Copy module files (decompressed, and the kernel's module lists) into the tree and run depmod there."""
    dest = f"{base}/{kf.kver}"
    for rel in files:
        copy_module(fs, kf.moddir / rel, f"{dest}/{rel}")
    for extra in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        if (kf.moddir / extra).exists():
            fs.copy_from(kf.moddir / extra, f"{dest}/{extra}", 0o644)
    depmod(fs, kf.kver)


def depmod(fs: FsRoot, kver: str) -> None:
    """depmod on the image's copy. Absolute links in the modules folder (Tiny Core's kernel.tclocal ->
    /usr/local/...) are made relative for the run, so depmod never wanders into the builder's own /usr."""
    moddir = fs.path(f"lib/modules/{kver}")
    if not moddir.is_dir():
        fs.mkdir(f"lib/modules/{kver}", 0o755, keep=True)
    saved: dict[Path, str] = {}
    for p in moddir.iterdir():
        if p.is_symlink() and os.readlink(p).startswith("/"):
            saved[p] = os.readlink(p)
            p.unlink()
            os.symlink(os.path.relpath(fs.path(saved[p]), moddir), p)
    try:
        run(["depmod", "-a", "-b", fs.root, kver], what=f"running depmod for {kver}", code=Exit.KERNEL)
    finally:
        for p, target in saved.items():
            p.unlink()
            os.symlink(target, p)
    for f in sorted(moddir.glob("modules.*")):
        fs.meta.set(fs.rel(f), 0o100644, 0, 0)
