"""Tiny Core repository files for a folder of extensions, so users can host their own mirror.

Written: info.lst (+ .gz), md5.db.gz, dep.db.gz, sizelist.gz, and per extension .md5.txt, .list
(its files, one per line, as `unsquashfs -l` lists them without the root) and .tree (the
dependency tree, three spaces per level, as Tiny Core's tools show it). The formats of dep.db and
sizelist follow what Tiny Core's mirrors serve as far as public copies show; see docs/tinycore.md.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from pebuilder.formats.tcz import parse_dep
from pebuilder.fsutil import atomic_output, file_md5, write_text_atomic
from pebuilder.runner import run


def _gz(path: Path, text: str) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(text.encode())


def tree_text(name: str, deps: dict[str, list[str]], depth: int = 0, seen: tuple[str, ...] = ()) -> str:
    out = "   " * depth + name + "\n"
    if name in seen:
        return out  # a loop: shown once, not followed
    for d in deps.get(name, []):
        out += tree_text(d, deps, depth + 1, (*seen, name))
    return out


def index(folder: Path) -> dict[str, int]:
    tczs = sorted(folder.glob("*.tcz"))
    names = [t.name for t in tczs]
    deps: dict[str, list[str]] = {}
    for t in tczs:
        dep = t.with_name(t.name + ".dep")
        deps[t.name] = parse_dep(dep.read_text(errors="replace")) if dep.is_file() else []
    md5s = {}
    for t in tczs:
        md5s[t.name] = file_md5(t)
        write_text_atomic(t.with_name(t.name + ".md5.txt"), f"{md5s[t.name]}  {t.name}\n")
        listing = run(["unsquashfs", "-lc", "-d", "", t], what=f"listing {t.name}").stdout.decode(
            errors="surrogateescape")
        files = [ln for ln in listing.splitlines() if ln.startswith("/")]
        write_text_atomic(t.with_name(t.name + ".list"), "".join(f"{f}\n" for f in files))
        write_text_atomic(t.with_name(t.name + ".tree"), tree_text(t.name, deps))
    info = "".join(f"{n}\n" for n in names)
    write_text_atomic(folder / "info.lst", info)
    _gz(folder / "info.lst.gz", info)
    _gz(folder / "md5.db.gz", "".join(f"{md5s[n]}  {n}\n" for n in names))
    _gz(folder / "dep.db.gz", "".join(n + "\n" + "".join(f"{d}\n" for d in deps[n]) + "\n" for n in names))
    _gz(folder / "sizelist.gz", "".join(f"{t.name} {t.stat().st_size}\n" for t in tczs))
    return {"extensions": len(names), "with_deps": sum(1 for n in names if deps[n])}
