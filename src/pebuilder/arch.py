"""Architectures: the one place that knows every name a CPU family goes by.

Debian says amd64/arm64, the kernel and Tiny Core say x86_64/aarch64, GRUB says x86_64-efi/arm64-efi,
UEFI firmware looks for BOOTX64.EFI/BOOTAA64.EFI, QEMU has one binary per family. Everything else
asks an `Arch` instead of comparing strings, so a second architecture is a row here, not a search.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from pebuilder.errors import ConfigError


@dataclass(frozen=True)
class Firmware:
    code: str  # read-only UEFI code image
    vars: str  # template of the writable variable store
    package: str  # Debian package that ships both
    secure: bool = False  # a Secure Boot build: QEMU must give it SMM and a secure flash (keys not enrolled)


@dataclass(frozen=True)
class Arch:
    name: str  # the kernel's name (uname -m), pebuilder's canonical one
    debian: str  # Debian architecture
    tinycore: str  # folder name in Tiny Core's mirrors (<major>.x/<tinycore>/tcz)
    elf_machine: int  # e_machine of its ELF binaries
    grub_efi: str | None  # grub-mkimage format for UEFI
    efi_loader: str | None  # removable-media file name under EFI/BOOT
    grub_efi_package: str | None
    bios: bool  # BIOS boot (isolinux, GRUB i386-pc) exists for it
    qemu: str  # qemu-system binary
    qemu_machine_bios: str | None
    qemu_machine_uefi: str
    qemu_cpu: str | None
    console: str  # first serial console device
    uefi_firmware: Firmware | None
    squashfs_bcj: str | None  # mksquashfs -Xbcj filter for xz
    kernel_flavour: str  # suffix of Debian's linux-image-<flavour> meta package
    cloud_flavour: str | None
    # UEFI firmware with Microsoft's keys enrolled and Secure Boot on: what a signed image must pass
    secure_boot_firmware: Firmware | None = None

    @property
    def efi_boot_path(self) -> str:
        """Where UEFI firmware looks for a loader on removable media."""
        if not self.efi_loader:
            raise ConfigError(f"{self.name} has no UEFI boot path")
        return f"EFI/BOOT/{self.efi_loader}"

    @property
    def uefi_only(self) -> bool:
        return not self.bios

    def __str__(self) -> str:
        return self.name


X86_64 = Arch(
    name="x86_64", debian="amd64", tinycore="x86_64", elf_machine=0x3E,
    grub_efi="x86_64-efi", efi_loader="BOOTX64.EFI", grub_efi_package="grub-efi-amd64-bin", bios=True,
    qemu="qemu-system-x86_64", qemu_machine_bios="pc", qemu_machine_uefi="q35", qemu_cpu=None,
    console="ttyS0",
    uefi_firmware=Firmware("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf"),
    squashfs_bcj="x86", kernel_flavour="amd64", cloud_flavour="cloud-amd64",
    secure_boot_firmware=Firmware("/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
                                  "ovmf", secure=True),
)
I386 = Arch(
    name="i386", debian="i386", tinycore="x86", elf_machine=0x03,
    grub_efi="i386-efi", efi_loader="BOOTIA32.EFI", grub_efi_package="grub-efi-ia32-bin", bios=True,
    qemu="qemu-system-i386", qemu_machine_bios="pc", qemu_machine_uefi="q35", qemu_cpu=None,
    console="ttyS0",
    # Debian's ovmf-ia32 ships only a Secure Boot build (OVMF32_CODE_4M.secboot.fd); with the empty variable
    # store nothing is enrolled, so unsigned GRUB still starts.
    uefi_firmware=Firmware("/usr/share/OVMF/OVMF32_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF32_VARS_4M.fd",
                           "ovmf-ia32", secure=True),
    squashfs_bcj="x86", kernel_flavour="686", cloud_flavour=None,
)
AARCH64 = Arch(
    name="aarch64", debian="arm64", tinycore="aarch64", elf_machine=0xB7,
    grub_efi="arm64-efi", efi_loader="BOOTAA64.EFI", grub_efi_package="grub-efi-arm64-bin", bios=False,
    qemu="qemu-system-aarch64", qemu_machine_bios=None, qemu_machine_uefi="virt", qemu_cpu="cortex-a57",
    console="ttyAMA0",
    uefi_firmware=Firmware("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd", "qemu-efi-aarch64"),
    squashfs_bcj=None, kernel_flavour="arm64", cloud_flavour="cloud-arm64",
)

ALL: tuple[Arch, ...] = (X86_64, I386, AARCH64)
_ALIASES = {
    **{a.name: a for a in ALL}, **{a.debian: a for a in ALL},
    "x86": I386, "i686": I386, "x64": X86_64, "arm64": AARCH64, "amd64": X86_64,
}
ACCEPTED = ("x86_64", "amd64", "aarch64", "arm64", "i386", "x86")


def parse(name: str) -> Arch:
    """Any of Debian's, the kernel's or Tiny Core's names for an architecture."""
    found = _ALIASES.get(name.strip().lower())
    if found is None:
        raise ConfigError(f"unknown architecture {name!r}; accepted: {', '.join(ACCEPTED)}")
    return found


def from_elf_machine(machine: int) -> Arch | None:
    return next((a for a in ALL if a.elf_machine == machine), None)


def host() -> Arch:
    """The build machine's architecture: the default target."""
    return parse(platform.machine())
