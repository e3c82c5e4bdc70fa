"""The `cde/` folder of a Tiny Core ISO (or `/tce` on a disk): extensions loaded at boot.

The folder is written whole every time, so removing an extension from the config removes it
from the image, and the onboot list never accumulates duplicates.
"""

from __future__ import annotations

from pathlib import Path

from pebuilder.formats.tcz import copy_with_sidecars
from pebuilder.fsutil import rmtree, write_text_atomic


def write(folder: Path, *, onboot: list[str], files: list[Path], copy2fs_all: bool = False,
          copy2fs: list[str] | None = None) -> str:
    if folder.exists():
        rmtree(folder)
    folder.mkdir(parents=True)
    if not files and not onboot:
        return "no extensions outside the initrd"
    copy_with_sidecars(files, folder / "optional")
    write_text_atomic(folder / "onboot.lst", "".join(f"{n}\n" for n in onboot))
    if copy2fs_all:
        write_text_atomic(folder / "copy2fs.flg", "")
    if copy2fs:
        write_text_atomic(folder / "copy2fs.lst", "".join(f"{n}\n" for n in copy2fs))
    return f"{len(files)} in {folder.name}/optional, {len(onboot)} on boot"
