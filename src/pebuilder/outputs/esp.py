"""What an EFI system partition carries: pebuilder's own GRUB, or a signed chain for Secure Boot.

With Secure Boot on, firmware starts only what a key in its db signed. Machines ship Microsoft's UEFI
CA, which signed shim; shim carries the distribution's CA and starts the GRUB it signed; that GRUB
verifies the kernel through shim and loads no modules from disk. So the signed GRUB finds its config
the way its build embedded: `$prefix/grub.cfg` with prefix `/EFI/<distro>` on the ESP it was started
from. pebuilder puts a stub there that finds the medium by its marker file, as its own GRUB does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pebuilder.arch import Arch
from pebuilder.formats import grub
from pebuilder.fsutil import build_time, write_text_atomic


@dataclass(frozen=True)
class SignedChain:
    shim: Path  # signed by Microsoft's UEFI CA: becomes the removable-media loader (BOOTX64.EFI)
    grub: Path  # signed by the distribution: shim starts it by this name from its own folder
    grub_name: str  # e.g. grubx64.efi
    prefix: str  # the folder the signed GRUB reads grub.cfg from, e.g. EFI/debian
    mok_manager: Path | None = None  # mmx64.efi: shim starts it when a signature is not trusted


def loader_files(arch: Arch, marker: str, workdir: Path, grub_lib: Path | None = None,
                 signed: SignedChain | None = None) -> dict[str, Path]:
    """ESP path -> local file: the loaders and (for the signed chain) the stub config."""
    if signed is None:
        loader = workdir / (arch.efi_loader or "loader.efi")
        grub.build_efi(loader, arch, marker, workdir, grub_lib)
        return {arch.efi_boot_path: loader}
    stub = workdir / "grub-signed.cfg"
    write_text_atomic(stub, grub.embedded_config(marker))
    t = build_time()  # FAT records the file's time: the same inputs give the same ESP
    os.utime(stub, (t, t))
    files = {arch.efi_boot_path: signed.shim, f"EFI/BOOT/{signed.grub_name}": signed.grub,
             f"{signed.prefix}/grub.cfg": stub}
    if signed.mok_manager:
        files[f"EFI/BOOT/{signed.mok_manager.name.removesuffix('.signed')}"] = signed.mok_manager
    return files
