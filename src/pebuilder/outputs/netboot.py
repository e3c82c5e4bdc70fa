"""Network boot output: a folder any TFTP or HTTP server (or `pebuilder serve`) offers as it is.

    vmlinuz, initrd.img      the kernel and one initramfs (the whole system, or what fetches it)
    boot.ipxe                iPXE script (paths relative to where it was loaded from: TFTP or HTTP)
    grub.cfg                 a menuentry for a host's GRUB, the files copied to /boot/pebuilder
    cmdline.txt              the kernel command line, for tools that write their own entries
    os/, ext/                (fetch mode) what the initramfs downloads and checks
    SHA256SUMS               every file above, for whoever copies the folder

The folder is written beside its place and swapped in whole, so a server never offers a mix.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pebuilder.fsutil import file_sha256, rmtree, write_text_atomic
from pebuilder.outputs.bootmenu import grub_quote, grub_word, plain_title


def ipxe_script(cmdline: list[str], title: str) -> str:
    return ("#!ipxe\n"
            f"echo {plain_title(title)}: loading kernel and initramfs\n"
            f"kernel vmlinuz initrd=initrd.img {' '.join(cmdline)}\n"
            "initrd initrd.img\n"
            "boot\n")


def grub_snippet(cmdline: list[str], title: str) -> str:
    """For a host whose /boot holds pebuilder/{vmlinuz,initrd.img}, /boot on / or on its own partition."""
    cmd = " ".join(grub_word(w) for w in cmdline)
    return (f"menuentry {grub_quote(plain_title(title))} --id pebuilder-pe {{\n"
            "  if search --no-floppy --file --set=root /boot/pebuilder/vmlinuz; then\n"
            "    set pe=/boot/pebuilder\n"
            "  else\n"
            "    search --no-floppy --file --set=root /pebuilder/vmlinuz\n"
            "    set pe=/pebuilder\n"
            "  fi\n"
            f"  linux $pe/vmlinuz {cmd}\n"
            "  initrd $pe/initrd.img\n"
            "}\n")


def write(folder: Path, kernel: Path, initrd: Path, cmdline: list[str], title: str,
          extra: dict[str, Path] | None = None) -> int:
    """Write the folder; returns the number of files (SHA256SUMS included)."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.part")
    rmtree(tmp)
    tmp.mkdir(parents=True)
    files = {"vmlinuz": kernel, "initrd.img": initrd, **(extra or {})}
    for rel, src in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tmp / rel)
    write_text_atomic(tmp / "boot.ipxe", ipxe_script(cmdline, title))
    write_text_atomic(tmp / "grub.cfg", grub_snippet(cmdline, title))
    write_text_atomic(tmp / "cmdline.txt", " ".join(cmdline) + "\n")
    names = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
    write_text_atomic(tmp / "SHA256SUMS", "".join(f"{file_sha256(tmp / n)}  {n}\n" for n in names))
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    rmtree(old)
    return len(names) + 1
