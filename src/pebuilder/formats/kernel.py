"""Facts read from kernel and program binaries: bzImage version strings and ELF machines."""

from __future__ import annotations

import struct
from pathlib import Path

ELF_MACHINES = {0x03: "x86", 0x3E: "x86_64", 0x28: "armv7", 0xB7: "aarch64"}


def bzimage_version(path: Path) -> str | None:
    """The kernel release (`uname -r`) from an x86 bzImage header, or None if it is no bzImage."""
    with open(path, "rb") as f:
        head = f.read(0x240)
        if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
            return None
        (offset,) = struct.unpack_from("<H", head, 0x20E)
        if offset == 0:
            return None
        f.seek(offset + 0x200)
        raw = f.read(256).split(b"\0", 1)[0].decode("ascii", errors="replace")
    return raw.split(" ", 1)[0] or None


def bzimage_is_64bit(path: Path) -> bool | None:
    with open(path, "rb") as f:
        head = f.read(0x240)
    if len(head) < 0x238 or head[0x202:0x206] != b"HdrS":
        return None
    (version,) = struct.unpack_from("<H", head, 0x206)
    if version < 0x020C:
        return None
    (xloadflags,) = struct.unpack_from("<H", head, 0x236)
    return bool(xloadflags & 1)


def elf_arch(data: bytes) -> str | None:
    if len(data) < 20 or data[:4] != b"\x7fELF":
        return None
    endian = "<" if data[5] == 1 else ">"
    (machine,) = struct.unpack_from(endian + "H", data, 18)
    return ELF_MACHINES.get(machine)


def is_arm64_image(path: Path) -> bool:
    """An uncompressed arm64 `Image` (magic "ARM\\x64" at 0x38). arm64 kernels carry no decompressor:
    the boot loader must inflate a compressed one, which GRUB does (gzio) and firmware does not."""
    with open(path, "rb") as f:
        head = f.read(0x40)
    return len(head) == 0x40 and head[0x38:0x3C] == b"ARM\x64"
