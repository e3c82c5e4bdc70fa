"""Tiny Core's own customisation points: bootlocal/bootsync, filetool, inittab, X autostart.

Each step rewrites its own block, so a rebuild never appends twice (the seed's `>> opt/tcemirror`
did). The generic parts (accounts, SSH, certificates, files) live in pebuilder.customise.
"""

from __future__ import annotations

import shlex

from pebuilder.fsroot import FsRoot

STAFF_GID = 50
SSH_START = "/usr/local/etc/init.d/openssh start"
BEGIN, END = "# pebuilder: begin", "# pebuilder: end"


def replace_block(fs: FsRoot, rel: str, lines: list[str], default_mode: int) -> None:
    """Keep the template's lines, then pebuilder's between markers, written anew each build."""
    old = fs.read_lines(rel)
    if BEGIN in old and END in old:
        old = old[: old.index(BEGIN)] + old[old.index(END) + 1:]
    body = [*old, BEGIN, *lines, END] if lines else old
    fs.write_keeping_owner(rel, "\n".join(body) + "\n", (default_mode, 0, STAFF_GID))


def boot_scripts(fs: FsRoot, bootlocal: list[str], bootsync: list[str], filetool: list[str], ssh: bool) -> None:
    lines = list(bootlocal)
    if ssh and SSH_START not in lines:
        lines.append(SSH_START)
    if lines:
        replace_block(fs, "opt/bootlocal.sh", lines, 0o775)
    if bootsync:
        replace_block(fs, "opt/bootsync.sh", bootsync, 0o775)
    if filetool:
        old = fs.read_lines("opt/.filetool.lst")
        merged = old + [f for f in filetool if f not in old]
        fs.write_keeping_owner("opt/.filetool.lst", "\n".join(merged) + "\n", (0o664, 0, STAFF_GID))


def serial_getty(fs: FsRoot, tty: str = "ttyS0") -> None:
    """A login prompt on the first serial port, beside Tiny Core's tty1 autologin."""
    lines = [ln for ln in fs.read_lines("etc/inittab") if not ln.startswith(f"{tty}::")]
    at = next((i for i, ln in enumerate(lines) if ln.startswith("tty1::")), len(lines))
    lines.insert(at + 1, f"{tty}::respawn:/sbin/getty -L 115200 {tty} vt100")
    fs.write_keeping_owner("etc/inittab", "\n".join(lines) + "\n", (0o644, 0, 0))
    secure = fs.read_lines("etc/securetty")
    if secure and tty not in secure:
        fs.write_keeping_owner("etc/securetty", "\n".join([*secure, tty]) + "\n", (0o644, 0, 0))


def kiosk(fs: FsRoot, url: str) -> None:
    """The seed's Xorg + browser autostart, for Tiny Core's X session of user tc."""
    fs.write("etc/sysconfig/Xserver", "Xorg\n", 0o644)
    fs.mkdir("etc/skel/.X.d", 0o755, keep=True)
    fs.write("etc/skel/.X.d/kiosk",
             f"/usr/local/bin/chromium-browser --kiosk --start-maximized --no-first-run {shlex.quote(url)} &\n",
             0o755)
