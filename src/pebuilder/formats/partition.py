"""Partition tables written by sfdisk on a plain file: MBR (msdos) and GPT.

Identifiers (disk id, partition UUIDs) are derived from a seed, so the same config gives the same
table byte for byte.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from pebuilder.runner import run

SECTOR = 512
ALIGN = 2048  # 1 MiB in sectors

GPT_TYPES = {
    "linux": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "bios": "21686148-6449-6E6F-744E-656564454649",
}
MBR_TYPES = {"linux": "83", "esp": "ef"}


@dataclass
class Partition:
    role: str  # linux, esp, bios
    name: str
    start: int  # sectors
    size: int  # sectors
    bootable: bool = False
    uuid: str = ""

    @property
    def offset(self) -> int:
        return self.start * SECTOR

    @property
    def bytes(self) -> int:
        return self.size * SECTOR


def stable_uuid(seed: str, purpose: str) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(f"{seed}|{purpose}".encode()).digest()[:16], version=4))


def layout(total_bytes: int, table: str, parts: list[tuple[str, str, int | None, bool]], seed: str) -> list[Partition]:
    """Place partitions 1 MiB-aligned; a size of None takes what is left before the next fixed one."""
    total = total_bytes // SECTOR
    end_limit = total - 34 if table == "gpt" else total  # GPT keeps a backup header at the end
    end_limit -= end_limit % ALIGN
    fixed_after = 0
    out: list[Partition] = []
    start = ALIGN
    for i, (role, name, size, boot) in enumerate(parts):
        if size is None:
            fixed_after = sum((s or 0) // SECTOR for _, _, s, _ in parts[i + 1:])
            sectors = end_limit - start - fixed_after
        else:
            sectors = (size + SECTOR - 1) // SECTOR
            sectors += (-sectors) % ALIGN
        out.append(Partition(role, name, start, sectors, boot, stable_uuid(seed, f"part{i}")))
        start += sectors
    return out


def write_table(image: Path, table: str, parts: list[Partition], seed: str) -> None:
    if table == "gpt":
        lines = ["label: gpt", f"label-id: {stable_uuid(seed, 'disk').upper()}", "first-lba: 2048"]
        for p in parts:
            lines.append(f'start={p.start}, size={p.size}, type={GPT_TYPES[p.role]}, uuid={p.uuid.upper()}, '
                         f'name="{p.name}"' + (", attrs=LegacyBIOSBootable" if p.bootable else ""))
    else:
        disk_id = int.from_bytes(hashlib.sha256(f"{seed}|disk".encode()).digest()[:4], "little") or 1
        lines = ["label: dos", f"label-id: 0x{disk_id:08x}"]
        for p in parts:
            lines.append(f"start={p.start}, size={p.size}, type={MBR_TYPES[p.role]}"
                         + (", bootable" if p.bootable else ""))
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", image],
        stdin=("\n".join(lines) + "\n").encode(), what=f"partitioning {image}")

