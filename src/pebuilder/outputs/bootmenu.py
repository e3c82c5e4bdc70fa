"""The boot entry every output shares, and the GRUB config written from it.

Outputs (ISO, disk) only know this: a kernel, initrds, a command line, a menu timeout, and
whether to talk on the serial port. Where these came from (Tiny Core, Debian) is not their business.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass
class BootEntry:
    title: str
    kernel: str  # path from the boot medium's root, e.g. /boot/vmlinuz64
    initrds: list[str]
    cmdline: list[str] = field(default_factory=list)
    timeout: float = 5.0  # seconds
    serial: bool = False

    def marker_name(self, salt: str = "") -> str:
        """A file name GRUB searches for to find its own medium; stable for the same entry."""
        digest = hashlib.sha256(f"{self.kernel}|{self.initrds}|{salt}".encode()).hexdigest()[:12]
        return f"/boot/grub/pebuilder-{digest}.id"


def grub_cfg(entry: BootEntry, root_hint: str = "") -> str:
    lines = []
    if entry.serial:
        lines += ["serial --unit=0 --speed=115200",
                  "terminal_input console serial",
                  "terminal_output console serial"]
    lines += [f"set timeout={max(0, round(entry.timeout))}", "set default=0", ""]
    initrd = " ".join(entry.initrds)
    cmd = " ".join(entry.cmdline)
    lines += [f'menuentry "{entry.title}" {{',
              *([f"  {root_hint}"] if root_hint else []),
              f"  linux {entry.kernel} {cmd}".rstrip(),
              f"  initrd {initrd}",
              "}", ""]
    return "\n".join(lines)
