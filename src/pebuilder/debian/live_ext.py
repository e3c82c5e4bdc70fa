"""The live system's /ext folder: extensions (squashfs + .dep + .md5.txt) and onboot.lst.

Names resolve in the configured folders; each onboot or ondemand extension comes with its .dep
closure, so the initramfs (and tce-load) find every dependency on the medium.
"""

from __future__ import annotations

from pathlib import Path

from pebuilder.formats.tcz import ExtensionMissing, copy_with_sidecars, local_deps, locate, resolve, tcz_name
from pebuilder.fsutil import rmtree, write_text_atomic


def find(name: str, dirs: list[Path]) -> Path | None:
    try:
        return locate(tcz_name(name), dirs)
    except ExtensionMissing:
        return None


def _closure(dirs: list[Path], names: list[str]) -> list[str]:
    res = resolve([tcz_name(n) for n in names], local_deps(dirs, None))
    if res.missing:
        name, chain = next(iter(res.missing.items()))
        where = ", ".join(map(str, dirs)) or "no folders ([extensions] dirs is empty)"
        raise ExtensionMissing(f"extension {name} (asked for by {' -> '.join(chain[:-1]) or 'the config'}) "
                               f"is not in {where}")
    return res.order


def local_files(dirs: list[Path], onboot: list[str], ondemand: list[str]) -> list[Path]:
    out = []
    for name in _closure(dirs, [*onboot, *ondemand]):
        tcz = locate(name, dirs)
        out += [p for p in (tcz, tcz.with_name(tcz.name + ".dep")) if p.is_file()]
    return out


def write_folder(folder: Path, dirs: list[Path], onboot: list[str], ondemand: list[str]) -> str:
    rmtree(folder)
    names = _closure(dirs, [*onboot, *ondemand])
    copy_with_sidecars([locate(n, dirs) for n in names], folder)
    write_text_atomic(folder / "onboot.lst", "".join(f"{tcz_name(n)}\n" for n in onboot))
    return f"{len(names)} extensions, {len(onboot)} on boot"
