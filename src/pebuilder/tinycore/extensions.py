"""Tiny Core extensions (.tcz): finding them, their metadata, and tce-load's dependency order."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pebuilder.config.model import tcz_name
from pebuilder.errors import Exit, PebuilderError
from pebuilder.fsutil import file_md5

log = logging.getLogger("pebuilder.tcz")


class ExtensionMissing(PebuilderError):
    code = Exit.EXTENSION_MISSING


def kernel_name(name: str, kver: str | None) -> str:
    """tce-load's rule: `-KERNEL.tcz` names the module extension built for the image's kernel."""
    name = tcz_name(name)
    if kver and name.endswith("-KERNEL.tcz"):
        return name[: -len("KERNEL.tcz")] + kver + ".tcz"
    return name


def parse_dep(text: str, kver: str | None = None) -> list[str]:
    """tce-load reads .dep files with every space and tab removed and empty lines skipped.

    It has no comment syntax: a `#` line names an extension called `#...`, as in Tiny Core.
    """
    out = []
    for line in text.splitlines():
        name = line.replace(" ", "").replace("\t", "").replace("\r", "")
        if name:
            out.append(kernel_name(name, kver))
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
        return parse_dep(dep.read_text(errors="replace"), kver) if dep.is_file() else []

    return deps_of
