"""Bootable hard-disk images without root: a sparse file, sfdisk, mke2fs -d, mtools, grub-mkimage.

The writer knows nothing of Tiny Core or Debian: it gets a folder to become the root filesystem, a
boot entry, the disk spec and the target architecture (no BIOS paths where there is no BIOS).
Layouts:

    msdos + bios          [root*]                 GRUB core.img in the gap after the MBR
    msdos + uefi/both     [esp, root*]
    gpt + bios            [bios-boot, root]       core.img in the BIOS boot partition (patched)
    gpt + uefi            [esp, root]
    gpt + both            [bios-boot, esp, root]
    (+ an optional data partition at the end)
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pebuilder.arch import Arch
from pebuilder.errors import Exit, PebuilderError
from pebuilder.formats import extfs, fat, grub, partition
from pebuilder.fsutil import atomic_output, build_time, human_size, write_text_atomic
from pebuilder.outputs.bootmenu import BootEntry, grub_cfg
from pebuilder.outputs.esp import SignedChain, loader_files
from pebuilder.runner import run

MIB = 1 << 20
ESP_SIZE = 32 * MIB
BIOS_BOOT_SIZE = 1 * MIB


class DiskError(PebuilderError):
    code = Exit.DISK


@dataclass
class DiskSpec:
    path: Path
    size: int
    table: str  # msdos | gpt
    firmware: str  # bios | uefi | both
    filesystem: str  # ext2 | ext3 | ext4
    label: str
    format: str  # raw | qcow2 | vmdk
    data_size: int | None = None
    data_label: str = "PBDATA"

    @property
    def bios(self) -> bool:
        return self.firmware in ("bios", "both")

    @property
    def uefi(self) -> bool:
        return self.firmware in ("uefi", "both")


@dataclass
class DiskPlan:
    parts: list[partition.Partition]
    root: partition.Partition
    esp: partition.Partition | None
    bios_boot: partition.Partition | None
    data: partition.Partition | None


def tree_bytes(root: Path) -> tuple[int, int]:
    """Bytes (rounded up to 4 KiB blocks) and entries of a folder, to size its filesystem."""
    total = entries = 0
    for dirpath, dirnames, filenames in os.walk(root):
        entries += len(dirnames) + len(filenames)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += (os.path.getsize(p) + 4095) // 4096 * 4096
    return total, entries


def needed_root_bytes(content: int, entries: int, fstype: str) -> int:
    journal = 0 if fstype == "ext2" else 16 * MIB
    return int(content * 1.05) + entries * 256 + journal + 8 * MIB


def smallest_size(root: Path, spec: DiskSpec, margin: int = 64 * MIB) -> int:
    """A disk size that holds `root` (plus GRUB's files and a margin), for images that get written to
    bigger disks later (a PE's install image)."""
    content, entries = tree_bytes(root)
    fixed = (BIOS_BOOT_SIZE if spec.table == "gpt" and spec.bios else 0) + (ESP_SIZE if spec.uefi else 0)
    grub = 4 * MIB if spec.bios else 0
    size = needed_root_bytes(content + grub, entries + 300, spec.filesystem) + fixed + 4 * MIB + margin
    return (size + MIB - 1) // MIB * MIB


def plan(spec: DiskSpec, content_bytes: int, entries: int, seed: str) -> DiskPlan:
    wants_bios = spec.bios
    wants_uefi = spec.uefi
    parts: list[tuple[str, str, int | None, bool]] = []
    if spec.table == "gpt" and wants_bios:
        parts.append(("bios", "BIOS boot", BIOS_BOOT_SIZE, False))
    if wants_uefi:
        parts.append(("esp", "EFI system", ESP_SIZE, False))
    parts.append(("linux", spec.label, None, spec.table == "msdos" or spec.firmware != "uefi"))
    if spec.data_size:
        parts.append(("linux", spec.data_label, spec.data_size, False))
    root_min = needed_root_bytes(content_bytes, entries, spec.filesystem)
    fixed = sum(s or 0 for _, _, s, _ in parts) + 2 * MIB + (MIB if spec.table == "gpt" else 0)
    if spec.size < fixed + root_min:
        need = fixed + root_min
        raise DiskError(f"disk size {human_size(spec.size)} ({spec.size} bytes) is too small for {spec.path.name}: "
                        f"it needs at least {human_size(need)} ({need} bytes) for "
                        f"{human_size(content_bytes)} of files; set a larger size")
    placed = partition.layout(spec.size, spec.table, parts, seed)
    by_role = {p.role: p for p in placed}
    linux = [p for p in placed if p.role == "linux"]
    return DiskPlan(placed, linux[0], by_role.get("esp"), by_role.get("bios"),
                    linux[1] if len(linux) > 1 else None)


def _grub_files(staging: Path, entry: BootEntry, marker: str, bios: bool) -> None:
    write_text_atomic(staging / "boot/grub/grub.cfg", grub_cfg(entry))
    write_text_atomic(staging / marker.lstrip("/"), "pebuilder boot disk\n")
    if bios:
        mods = staging / "boot/grub/i386-pc"
        mods.mkdir(parents=True, exist_ok=True)
        for f in sorted((grub.GRUB_LIB / "i386-pc").iterdir()):
            if f.suffix in (".mod", ".lst"):
                shutil.copyfile(f, mods / f.name)
    t = build_time()
    for p in [staging, *staging.rglob("*")]:
        os.utime(p, (t, t), follow_symlinks=False)


def write(spec: DiskSpec, staging: Path, entry: BootEntry, workdir: Path, seed: str, arch: Arch,
          grub_lib: Path | None = None, signed: SignedChain | None = None) -> DiskPlan:
    """Build the disk into a temporary file beside spec.path and rename it there when whole."""
    workdir.mkdir(parents=True, exist_ok=True)
    marker = entry.marker_name(seed)
    wants_bios = spec.bios
    wants_uefi = spec.uefi
    if wants_bios and not arch.bios:
        raise DiskError(f"{spec.path.name}: {arch} has no BIOS; use firmware = \"uefi\" (and table = \"gpt\")")
    _grub_files(staging, entry, marker, wants_bios)
    content, entries = tree_bytes(staging)
    p = plan(spec, content, entries, seed)
    try:
        spec.path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DiskError(f"cannot create the output folder {spec.path.parent}: {exc.strerror}") from None
    if not os.access(spec.path.parent, os.W_OK):
        raise DiskError(f"output folder {spec.path.parent} is not writable; choose another path for {spec.path.name}")
    with atomic_output(spec.path) as final:
        raw = final if spec.format == "raw" else workdir / f"{spec.path.name}.raw"
        with open(raw, "wb") as f:
            f.truncate(spec.size)
        partition.write_table(raw, spec.table, p.parts, seed)
        extfs.make(raw, p.root.offset, p.root.bytes, spec.filesystem, spec.label,
                   partition.stable_uuid(seed, "rootfs"), staging, workdir)
        if p.data:
            extfs.make(raw, p.data.offset, p.data.bytes, spec.filesystem, spec.data_label,
                       partition.stable_uuid(seed, "datafs"), None, workdir)
        if wants_uefi and p.esp:
            files = loader_files(arch, marker, workdir, grub_lib, signed)
            serial = int.from_bytes(partition.stable_uuid(seed, "esp").encode()[:4], "little")
            fat.format_fat(raw, offset=p.esp.offset, size=p.esp.bytes, label="EFI", serial=serial,
                           hidden_sectors=p.esp.start)
            fat.add_files(raw, files, offset=p.esp.offset)
        if wants_bios:
            core = workdir / "core.img"
            prefix = "(hd0,gpt{})/boot/grub" if spec.table == "gpt" else "(hd0,msdos{})/boot/grub"
            grub.build_bios_core(core, prefix.format(p.parts.index(p.root) + 1), marker, workdir)
            if p.bios_boot:
                grub.install_bios_boot(raw, core, p.bios_boot.start, p.bios_boot.start + p.bios_boot.size)
            else:
                grub.install_bios_boot(raw, core, 1, p.parts[0].start)
        if spec.format != "raw":
            final.unlink()
            run(["qemu-img", "convert", "-O", spec.format, raw, final], what=f"converting to {spec.format}")
            raw.unlink()
    return p
