"""Hybrid ISO output: BIOS through isolinux, UEFI through GRUB on an appended ESP."""

from __future__ import annotations

from pathlib import Path

from pebuilder.arch import Arch
from pebuilder.formats import fat
from pebuilder.formats.iso import HybridLayout, write_hybrid
from pebuilder.fsutil import atomic_output, write_text_atomic
from pebuilder.outputs.bootmenu import BootEntry, grub_cfg
from pebuilder.outputs.esp import SignedChain, loader_files


def write_grub_files(tree: Path, entry: BootEntry, marker: str) -> None:
    """grub.cfg and the marker file GRUB's embedded config searches for."""
    write_text_atomic(tree / "boot/grub/grub.cfg", grub_cfg(entry))
    write_text_atomic(tree / marker.lstrip("/"), "pebuilder boot medium\n")


def build_esp(out: Path, arch: Arch, marker: str, workdir: Path, grub_lib: Path | None = None,
              signed: SignedChain | None = None) -> None:
    """A FAT image with GRUB (or shim, for Secure Boot) at the removable-media path UEFI firmware looks for."""
    files = loader_files(arch, marker, workdir, grub_lib, signed)
    with atomic_output(out) as tmp:
        fat.format_fat(tmp, size=fat.esp_size_for(files), label="EFIBOOT")
        fat.add_files(tmp, files)


def package(tree: Path, out: Path, *, isolinux_bin: str | None, esp: Path | None, volume_id: str) -> None:
    catalog = None
    if isolinux_bin:
        catalog = str(Path(isolinux_bin).parent / "boot.cat")
    write_hybrid(tree, out, HybridLayout(isolinux_bin=isolinux_bin, boot_catalog=catalog, esp_image=esp,
                                         volume_id=volume_id))
