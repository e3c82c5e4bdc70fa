"""Extensions in Tiny Core's format: a squashfs plus sidecar files (.dep, .md5.txt), found in folders
and loaded in tce-load's dependency order. Both systems use it: Tiny Core remasters and the Debian
live system's /ext."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pebuilder.errors import Exit, PebuilderError
from pebuilder.fsutil import file_md5, write_text_atomic

log = logging.getLogger("pebuilder.tcz")


PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class ExtensionMissing(PebuilderError):
    code = Exit.EXTENSION_MISSING


def tcz_name(name: str) -> str:
    """Tiny Core's own rule: an extension name always carries the .tcz suffix."""
    name = name.strip()
    return name if name.endswith(".tcz") else name + ".tcz"


def ext_name(v: str) -> str | None:
    """None for a plain file name; else why not (names become paths in caches and images)."""
    if not PLAIN_NAME.fullmatch(v) or ".." in v:
        return f"{v!r} is not a plain extension file name (letters, digits and . _ + -, no '/' or '..')"
    return None


def kernel_name(name: str, kver: str | None) -> str:
    """tce-load's rule: `-KERNEL.tcz` names the module extension built for the image's kernel."""
    name = tcz_name(name)
    if kver and name.endswith("-KERNEL.tcz"):
        return name[: -len("KERNEL.tcz")] + kver + ".tcz"
    return name


def check_name(name: str, where: str) -> str:
    """Names from .dep files and mirrors become file names in the cache and the image: plain ones only."""
    msg = ext_name(name)
    if msg:
        raise ExtensionMissing(f"{where}: {msg}; refusing it")
    return name


def parse_dep(text: str, kver: str | None = None, where: str = ".dep") -> list[str]:
    """tce-load reads .dep files with every space and tab removed and empty lines skipped.

    It has no comment syntax: a `#` line names an extension called `#...`, as in Tiny Core (and is
    then refused here as not a plain file name).
    """
    out = []
    for line in text.splitlines():
        name = line.replace(" ", "").replace("\t", "").replace("\r", "")
        if name:
            out.append(check_name(kernel_name(name, kver), where))
    return out


def locate(name: str, dirs: Iterable[Path]) -> Path:
    looked = []
    for d in dirs:
        for cand in (d / name, d / "optional" / name):
            looked.append(str(cand.parent))
            if cand.is_file():
                return cand
    where = ", ".join(dict.fromkeys(looked)) or "no folders (give --ext-dir DIR or [extensions] dirs)"
    raise ExtensionMissing(f"extension {name} not found; looked in: {where}")


def md5_text(tcz: Path) -> str:
    """The `.md5.txt` line Tiny Core's tools write: md5, two spaces, the bare file name."""
    return f"{file_md5(tcz)}  {tcz.name}\n"


def verify_md5(tcz: Path) -> None:
    side = tcz.with_name(tcz.name + ".md5.txt")
    if not side.is_file():
        return
    expected = side.read_text().split()[0] if side.read_text().split() else ""
    actual = file_md5(tcz)
    if expected.lower() != actual:
        raise PebuilderError(f"{tcz}: md5 {actual} does not match {side.name} ({expected}); "
                             "the file is damaged or the .md5.txt is stale", Exit.EXTENSION_MISSING)


@dataclass
class Resolution:
    order: list[str] = field(default_factory=list)  # dependencies before what needs them
    missing: dict[str, list[str]] = field(default_factory=dict)  # name -> chain that asked for it
    cycles: list[list[str]] = field(default_factory=list)
    tree: dict[str, list[str]] = field(default_factory=dict)


def resolve(roots: Iterable[str], deps_of: Callable[[str], list[str] | None]) -> Resolution:
    """Depth-first as tce-load: each dependency loads before its dependant, each name once.

    `deps_of` returns the names in a .dep (an empty list when there is none) or None when the
    extension itself cannot be found.
    """
    res = Resolution()
    done: set[str] = set()

    def visit(name: str, chain: list[str]) -> None:
        if name in done:
            return
        if name in chain:
            cycle = [*chain[chain.index(name):], name]
            res.cycles.append(cycle)
            log.warning("dependency loop: %s", " -> ".join(cycle))
            return
        deps = deps_of(name)
        if deps is None:
            res.missing.setdefault(name, [*chain, name])
            done.add(name)
            return
        res.tree[name] = deps
        for d in deps:
            visit(d, [*chain, name])
        done.add(name)
        res.order.append(name)

    for r in roots:
        visit(r, [])
    return res


def local_deps(dirs: list[Path], kver: str | None) -> Callable[[str], list[str] | None]:
    def deps_of(name: str) -> list[str] | None:
        try:
            tcz = locate(name, dirs)
        except ExtensionMissing:
            return None
        dep = tcz.with_name(tcz.name + ".dep")
        return parse_dep(dep.read_text(errors="replace"), kver, str(dep)) if dep.is_file() else []

    return deps_of


def copy_with_sidecars(tczs: list[Path], folder: Path) -> None:
    """Extensions into a folder the way tce-load finds them: NAME.tcz, its .dep, a fresh .md5.txt
    (each checked against its own .md5.txt first, so a damaged file never travels on)."""
    folder.mkdir(parents=True, exist_ok=True)
    for tcz in tczs:
        verify_md5(tcz)
        shutil.copyfile(tcz, folder / tcz.name)
        dep = tcz.with_name(tcz.name + ".dep")
        if dep.is_file():
            shutil.copyfile(dep, folder / dep.name)
        write_text_atomic(folder / f"{tcz.name}.md5.txt", md5_text(tcz))
