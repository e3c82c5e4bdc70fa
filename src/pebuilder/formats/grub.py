"""GRUB boot images made with grub-mkimage: nothing is installed on the host, nothing is mounted.

For UEFI the EFI binary carries a small embedded config that finds the boot medium by a marker
file and hands over to the real grub.cfg there. For BIOS disks, core.img goes in the gap after the
MBR (or a GPT BIOS boot partition) and boot.img's first 440 bytes into sector 0.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from pebuilder.arch import Arch
from pebuilder.errors import Exit, PebuilderError
from pebuilder.fsutil import build_time, write_text_atomic
from pebuilder.runner import run

GRUB_LIB = Path("/usr/lib/grub")

EFI_MODULES = ["part_gpt", "part_msdos", "fat", "iso9660", "ext2", "search", "search_fs_file",
               "configfile", "normal", "linux", "echo", "test", "serial", "terminal", "gzio",
               "all_video", "sleep", "ls", "cat", "halt", "reboot"]
BIOS_MODULES = ["biosdisk", "part_msdos", "part_gpt", "ext2", "search", "search_fs_file",
                "configfile", "normal", "linux", "echo", "test", "serial", "terminal", "sleep", "halt"]


def embedded_config(marker: str, cfg_path: str = "/boot/grub/grub.cfg") -> str:
    return (f"search --no-floppy --set=root --file {marker}\n"
            f"set prefix=($root)/boot/grub\n"
            f"configfile ($root){cfg_path}\n")


def efi_modules_dir(arch: Arch, lib: Path | None = None) -> Path:
    """GRUB's modules for the arch: the host's, or an unpacked grub-efi-*-bin for another arch."""
    if not arch.grub_efi:
        raise PebuilderError(f"no UEFI GRUB target for architecture {arch}", Exit.USAGE)
    folder = (lib or GRUB_LIB) / arch.grub_efi
    if not folder.is_dir():
        raise PebuilderError(f"GRUB modules for {arch.grub_efi} are missing in {folder}; "
                             f"install them with: apt-get install {arch.grub_efi_package}", Exit.TOOL_MISSING)
    return folder


def build_efi(out: Path, arch: Arch, marker: str, workdir: Path, lib: Path | None = None) -> None:
    folder = efi_modules_dir(arch, lib)
    cfg = workdir / "grub-embedded.cfg"
    write_text_atomic(cfg, embedded_config(marker))
    run(["grub-mkimage", "-O", str(arch.grub_efi), "-d", folder, "-p", "/boot/grub", "-c", cfg, "-o", out,
         *EFI_MODULES], what=f"building the GRUB {arch.grub_efi} image")
    t = build_time()  # FAT records the file's time: the same inputs give the same ESP
    os.utime(out, (t, t))


def build_bios_core(out: Path, prefix: str, marker: str, workdir: Path) -> None:
    cfg = workdir / "grub-embedded-bios.cfg"
    write_text_atomic(cfg, embedded_config(marker))
    run(["grub-mkimage", "-O", "i386-pc", "-d", GRUB_LIB / "i386-pc", "-p", prefix, "-c", cfg,
         "-o", out, *BIOS_MODULES], what="building the GRUB i386-pc core image")


def install_bios_boot(disk: Path, core: Path, core_lba: int, gap_end_lba: int) -> None:
    """Write boot.img's code into the MBR and core.img at `core_lba`, patching both pointers."""
    boot_img = (GRUB_LIB / "i386-pc" / "boot.img").read_bytes()
    core_bytes = bytearray(core.read_bytes())
    sectors = (len(core_bytes) + 511) // 512
    if core_lba + sectors > gap_end_lba:
        raise PebuilderError(
            f"GRUB's core.img ({len(core_bytes)} bytes) does not fit the {gap_end_lba - core_lba} sectors "
            "reserved for it before the first partition")
    # diskboot.img (first sector of core.img) loads the rest from the blocklist at 0x1F4.
    struct.pack_into("<Q", core_bytes, 0x1F4, core_lba + 1)
    with open(disk, "r+b") as f:
        mbr = bytearray(f.read(512))
        mbr[:440] = boot_img[:440]
        # boot.img's kernel-sector field: where core.img starts.
        struct.pack_into("<Q", mbr, 0x5C, core_lba)
        f.seek(0)
        f.write(mbr)
        f.seek(core_lba * 512)
        f.write(core_bytes)
