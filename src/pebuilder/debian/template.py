"""The built-in template: Debian's kernel and busybox-static with a minimal /init.

It exists so pebuilder builds and boots something real on a machine that cannot reach Tiny Core's
mirrors; it is laid out like a Tiny Core ISO (boot/isolinux, boot/vmlinuz, boot/core.gz) so the
same stages and outputs serve both.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from pebuilder.debian import apt
from pebuilder.errors import Exit, PebuilderError
from pebuilder.formats import cpio
from pebuilder.fsutil import build_time, rmtree, write_text_atomic
from pebuilder.runner import require

MARKER = "pebuilder: default system is up"
KERNEL_META = {"x86_64": "linux-image-cloud-amd64"}

INIT = """#!/bin/busybox sh
# pebuilder's minimal init: mount the kernel's file systems, say hello, give a shell.
/bin/busybox mkdir -p /proc /sys /dev /tmp /bin /sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
hostname pebuilder
echo "{marker} (kernel $(uname -r), $(busybox | head -n 1 | cut -d' ' -f1-2))"
exec setsid cttyhack sh
"""

ISOLINUX_CFG = """default pebuilder
label pebuilder
  kernel /boot/vmlinuz
  initrd /boot/core.gz
  append quiet
prompt 0
timeout 10
"""


def fetch_parts(arch: str = "x86_64") -> tuple[Path, Path]:
    """The Debian kernel image and the static busybox, from the cache or apt."""
    if arch not in KERNEL_META:
        raise PebuilderError(f"the built-in template is made for x86_64, not {arch}", Exit.USAGE)
    kroot = apt.unpack(apt.download(apt.kernel_package(KERNEL_META[arch])))
    kernels = sorted((kroot / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise PebuilderError(f"no /boot/vmlinuz-* in {kroot}", Exit.KERNEL)
    broot = apt.unpack(apt.download("busybox-static"))
    busybox = broot / "bin/busybox"
    if not busybox.is_file():
        raise PebuilderError(f"no bin/busybox in {broot}", Exit.DOWNLOAD)
    return kernels[-1], busybox


def build_initrd(busybox: Path, out: Path, workdir: Path) -> None:
    tree = workdir / "initrd-root"
    rmtree(tree)
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "root"):
        (tree / d).mkdir(parents=True)
    shutil.copyfile(busybox, tree / "bin/busybox")
    os.chmod(tree / "bin/busybox", 0o755)
    os.symlink("busybox", tree / "bin/sh")
    (tree / "init").write_text(INIT.format(marker=MARKER))
    os.chmod(tree / "init", 0o755)
    os.chmod(tree / "tmp", 0o777 | stat.S_ISVTX)
    t = build_time()
    for p in [*tree.rglob("*"), tree]:
        os.utime(p, (t, t), follow_symlinks=False)
    cpio.pack(tree, cpio.TreeMeta(), out)
    rmtree(tree)


def assemble(image: Path, workdir: Path, arch: str = "x86_64") -> None:
    """Lay out the template ISO tree: kernel, initrd and isolinux from the host's syslinux packages."""
    kernel, busybox = fetch_parts(arch)
    rmtree(image)
    iso_dir = image / "boot/isolinux"
    iso_dir.mkdir(parents=True)
    shutil.copyfile(kernel, image / "boot/vmlinuz")
    shutil.copyfile(require("isolinux"), iso_dir / "isolinux.bin")
    shutil.copyfile(require("ldlinux"), iso_dir / "ldlinux.c32")
    write_text_atomic(iso_dir / "isolinux.cfg", ISOLINUX_CFG)
    build_initrd(busybox, image / "boot/core.gz", workdir)
    t = build_time()
    for p in image.rglob("*"):
        os.utime(p, (t, t), follow_symlinks=False)
