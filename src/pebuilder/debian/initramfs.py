"""The live system's initramfs: busybox, pebuilder's /init, and the kernel modules the boot needs.

Architecture-neutral by construction: the only binary is the target's busybox-static; the modules
come from the target's kernel package; /init is a shell script (live/init.sh).
"""

from __future__ import annotations

import os
from pathlib import Path

from pebuilder.customise import modules
from pebuilder.customise.modules import KernelFiles
from pebuilder.formats import cpio
from pebuilder.fsroot import FsRoot
from pebuilder.fsutil import build_time, rmtree

LIVE = Path(__file__).resolve().parent / "live"

# Storage (CD, SATA, virtio, NVMe, USB), the file systems of the medium, and what the layers need.
BOOT_MODULES = ["ahci", "ata_piix", "ata_generic", "sr_mod", "sd_mod", "cdrom", "virtio_pci", "virtio_mmio",
                "virtio_blk", "virtio_scsi", "virtio_net", "nvme", "usb_storage", "uas", "xhci_pci", "xhci_plat_hcd",
                "ehci_pci", "ehci_platform", "ohci_pci", "squashfs", "overlay", "loop", "isofs", "ext4",
                "crc32c_generic"]


def build(out: Path, busybox: Path, kf: KernelFiles, work: Path, media: str, data_label: str,
          compression: str = "gzip", level: int | str = "default") -> dict[str, int]:
    """Write the initramfs to `out`; `media` is the default pb.media (e.g. LABEL=PEBUILDER)."""
    rmtree(work)
    fs = FsRoot(work)
    fs.mkdir(".", 0o755)
    for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "tmp", "newroot", "etc",
              "etc/pebuilder", "lib", "lib/modules"):
        fs.mkdir(d, 0o1777 if d == "tmp" else 0o755)
    fs.copy_from(busybox, "bin/busybox", 0o755)
    fs.symlink("bin/sh", "busybox")
    fs.copy_from(LIVE / "init.sh", "init", 0o755)
    files, builtin = modules.closure(kf, [], BOOT_MODULES)
    for rel in files:
        fs.copy_from(kf.moddir / rel, f"lib/modules/{kf.kver}/{rel}", 0o644)
    fs.write("etc/pebuilder/modules", "".join(f"{f}\n" for f in files), 0o644)
    fs.write("etc/pebuilder/boot.conf", f"MEDIA={media}\nDATA_LABEL={data_label}\nINIT=/sbin/init\n", 0o644)
    t = build_time()
    for rel in fs.walk():
        p = fs.root / rel
        if not p.is_symlink():
            os.utime(p, (t, t))
    size = cpio.pack(work, fs.meta, out, compression, level)
    rmtree(work)
    return {"modules": len(files), "builtin": len(builtin), "bytes": size}
