"""FAT filesystems written with mtools, in a file or at an offset inside a disk image (no mount).

mtools honours SOURCE_DATE_EPOCH for the times it stamps; the volume serial is passed in so the
same inputs give the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from pebuilder.runner import run

MIB = 1 << 20


def _target(image: Path, offset: int) -> str:
    return f"{image}@@{offset}" if offset else str(image)


def format_fat(image: Path, *, offset: int = 0, size: int | None = None, label: str = "ESP",
               serial: int = 0x50454246, hidden_sectors: int = 0) -> None:
    """Make a FAT filesystem; when `offset` is 0 and `size` given, the file is created at that size."""
    if offset == 0 and size is not None:
        with open(image, "wb") as f:
            f.truncate(size)
    args = ["mformat", "-i", _target(image, offset), "-N", f"{serial:08x}", "-v", label[:11]]
    if size is not None:
        sectors = size // 512
        args += ["-T", str(sectors), "-h", "64", "-s", "32"]
    if hidden_sectors:
        args += ["-H", str(hidden_sectors)]
    args.append("::")
    run(args, what=f"formatting FAT in {image}")


def add_files(image: Path, files: dict[str, Path], *, offset: int = 0) -> None:
    """Copy files in; `files` maps a destination like EFI/BOOT/BOOTX64.EFI to a source path."""
    target = _target(image, offset)
    folders: set[str] = set()
    for dest in files:
        for parent in reversed(PurePosixPath(dest).parents):
            if str(parent) not in (".", "/"):
                folders.add(str(parent))
    for folder in sorted(folders):
        run(["mmd", "-D", "s", "-i", target, f"::/{folder}"], what=f"making {folder} in {image}")
    for dest, src in sorted(files.items()):
        run(["mcopy", "-m", "-o", "-i", target, os.fspath(src), f"::/{dest}"],
            what=f"copying {dest} into {image}")


def esp_size_for(files: dict[str, Path], minimum: int = MIB) -> int:
    """A size with room for the files plus FAT overhead (tables, root folder, cluster slack), rounded
    to whole MiB: every MiB here is a MiB of the ISO."""
    payload = sum(p.stat().st_size for p in files.values())
    size = max(minimum, payload + payload // 16 + 128 * 1024)
    return (size + MIB - 1) // MIB * MIB
