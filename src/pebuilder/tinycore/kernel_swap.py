"""Giving a Tiny Core userland another kernel, and loading modules early at boot.

What older Tiny Core userlands need from a newer kernel is handled here and reported: the modules
tce-load mounts with (squashfs, loop), zram for tc-config's swap (else `nozswap`), and the
`bs=4096` mount option that tce-load before 2020 passes and kernels since about 5.4 refuse.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pebuilder.customise import modules
from pebuilder.customise.modules import KernelFiles
from pebuilder.fsroot import FsRoot

# What a Tiny Core system needs from a modular kernel: extension mounts, swap, CD and disk access
# on common virtual and real controllers. Missing ones are skipped; configured ones must exist.
NEEDED = ["squashfs", "loop", "zram", "isofs", "sr_mod", "cdrom", "sd_mod", "ata_piix", "ata_generic", "ahci",
          "virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "overlay", "ext4", "vfat", "nls_cp437",
          "nls_iso8859_1", "e1000", "usb_storage", "uas", "xhci_pci", "ehci_pci"]
EARLY_SCRIPT = "etc/init.d/pebuilder-modules"
# Loaded before tc-config runs when the kernel was replaced: Tiny Core 6's busybox modprobe and
# udev do not autoload everything a modular distribution kernel needs for CDs and disks.
EARLY_DEFAULT = ["loop", "squashfs", "zram", "isofs", "cdrom", "sr_mod", "ata_piix", "sd_mod", "ahci",
                 "virtio_pci", "virtio_blk", "virtio_scsi"]


def install_modules(fs: FsRoot, kf: KernelFiles, configured: list[str]) -> dict:
    files, builtin = modules.closure(kf, configured, NEEDED)
    modules.install(fs, kf, files)
    names = {modules.module_name(f) for f in files}
    return {"modules": len(files), "zram": "zram" in names or "zram" in builtin,
            "squashfs": "squashfs" in names or "squashfs" in builtin,
            "early": [m for m in EARLY_DEFAULT if m in names]}


def replace_kernel_image(target: Path, kf: KernelFiles) -> None:
    tmp = target.with_name(target.name + ".new")
    shutil.copyfile(kf.vmlinuz, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def patch_tce_load(fs: FsRoot) -> bool:
    """Drop `bs=4096` from tce-load's squashfs mounts; True when the file needed it."""
    text = fs.read_bytes("usr/bin/tce-load")
    if text is None or b",bs=4096" not in text:
        return False
    fs.write_keeping_owner("usr/bin/tce-load", text.replace(b",bs=4096", b""), (0o755, 0, 0))
    return True


def load_early(fs: FsRoot, names: list[str]) -> None:
    """A sysinit step before rcS, so the modules are there before Tiny Core looks for disks."""
    body = " ".join(names)
    fs.write(EARLY_SCRIPT,
             "#!/bin/sh\n# pebuilder: load configured kernel modules before Tiny Core scans for disks.\n"
             "[ -f /proc/cmdline ] || /bin/mount -t proc proc /proc\n"
             f"for m in {body}; do\n"
             "  /sbin/modprobe \"$m\" 2>/dev/null && echo \"pebuilder: loaded module $m\" > /dev/console"
             " || echo \"pebuilder: could not load module $m\" > /dev/console\n"
             "done\n", 0o755)
    lines = fs.read_lines("etc/inittab") or ["::sysinit:/etc/init.d/rcS"]
    hook = f"::sysinit:/{EARLY_SCRIPT}"
    lines = [ln for ln in lines if ln.strip() != hook]
    at = next((i for i, ln in enumerate(lines) if ln.startswith("::sysinit:")), 0)
    lines.insert(at, hook)
    fs.write_keeping_owner("etc/inittab", "\n".join(lines) + "\n", (0o644, 0, 0))
