"""Debian's signed boot chain for UEFI Secure Boot, taken from the verified archive.

shim-signed carries shim signed by Microsoft's UEFI CA (what firmware trusts out of the box);
grub-efi-<arch>-signed carries GRUB signed by Debian's CA (which shim trusts); Debian's
linux-image packages carry a kernel signed the same way, and its modules are signed by the kernel's
own build key, which the kernel enforces under Secure Boot (lockdown). pebuilder re-signs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pebuilder.arch import X86_64, Arch
from pebuilder.errors import Exit, PebuilderError


@dataclass(frozen=True)
class Chain:
    packages: tuple[str, ...]  # fetched from the archive, unpacked, never installed
    shim: str  # paths inside the unpacked packages
    grub: str
    mok_manager: str
    grub_name: str  # the name shim starts from its own folder
    prefix: str  # where the signed GRUB reads grub.cfg (its build's -p)


CHAINS = {
    X86_64.name: Chain(("shim-signed", "shim-helpers-amd64-signed", "grub-efi-amd64-signed"),
                       "usr/lib/shim/shimx64.efi.signed", "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
                       "usr/lib/shim/mmx64.efi.signed", "grubx64.efi", "EFI/debian"),
}


def chain(arch: Arch) -> Chain:
    if arch.name not in CHAINS:
        raise PebuilderError(f"boot.secure_boot: supported for amd64 only ({arch} is not wired up yet); remove it "
                             "or build for amd64", Exit.CONFIG_INVALID)
    return CHAINS[arch.name]


def files(c: Chain, roots: list[Path]) -> dict[str, Path]:
    """shim, grub, mok_manager -> the file in one of the unpacked packages."""
    found: dict[str, Path] = {}
    for role in ("shim", "grub", "mok_manager"):
        rel = getattr(c, role)
        hits = [r / rel for r in roots if (r / rel).is_file()]
        if not hits:
            raise PebuilderError(f"boot.secure_boot: {rel} is in none of {', '.join(c.packages)}; the archive's "
                                 "packages changed layout", Exit.UNRESOLVABLE)
        found[role] = hits[0]
    return found
