"""The boot entry every output shares, and the boot menus written from it.

Outputs (ISO, disk, netboot) only know this: a kernel, initrds, a command line, a menu timeout,
and whether to talk on the serial port. Where these came from (Tiny Core, Debian) is not their
business. Boot codes were checked against a safe grammar when the config was read; titles (which
may come from a template's isolinux.cfg) are quoted here.
"""

from __future__ import annotations

import hashlib
import re
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


def grub_quote(text: str) -> str:
    """A GRUB script word: single-quoted, nothing inside is syntax."""
    return "'" + text.replace("'", "'\\''") + "'"


SAFE_WORD = re.compile(r"^[A-Za-z0-9_.,:/=+@%~?!-]+$")


def grub_word(word: str) -> str:
    """A word for GRUB's `linux`/`initrd` lines: as is when it is plain, quoted when it is not
    (template-supplied words were never checked against the config's grammar)."""
    return word if SAFE_WORD.fullmatch(word) else grub_quote(word)


def plain_title(text: str) -> str:
    """Menu titles keep printable characters only (a template's label is someone else's text)."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:80] or "pebuilder"


def grub_cfg(entry: BootEntry, root_hint: str = "") -> str:
    lines = []
    if entry.serial:
        lines += ["serial --unit=0 --speed=115200",
                  "terminal_input console serial",
                  "terminal_output console serial"]
    lines += [f"set timeout={max(0, round(entry.timeout))}", "set default=0", ""]
    initrd = " ".join(grub_word(i) for i in entry.initrds)
    cmd = " ".join(grub_word(w) for w in entry.cmdline)
    lines += [f"menuentry {grub_quote(plain_title(entry.title))} {{",
              *([f"  {root_hint}"] if root_hint else []),
              f"  linux {grub_word(entry.kernel)} {cmd}".rstrip(),
              *([f"  initrd {initrd}"] if initrd else []),
              "}", ""]
    return "\n".join(lines)


def isolinux_cfg(entry: BootEntry, label: str = "pebuilder") -> str:
    """ISOLINUX's menu for outputs that have no template of their own (the Debian live system)."""
    lines = []
    if entry.serial:
        lines.append("SERIAL 0 115200")
    lines += [f"DEFAULT {label}", f"LABEL {label}", f"  KERNEL {entry.kernel}",
              f"  INITRD {','.join(entry.initrds)}", f"  APPEND {' '.join(entry.cmdline)}".rstrip(),
              "PROMPT 0", f"TIMEOUT {max(1, round(entry.timeout * 10))}", ""]
    return "\n".join(lines)
