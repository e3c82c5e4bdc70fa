"""The live system's initramfs: busybox, pebuilder's /init, and the kernel modules the boot needs.

Architecture-neutral by construction: the only binary is the target's busybox-static; the modules
come from the target's kernel package; /init is a shell script (live/init.sh).
"""

from __future__ import annotations

import hashlib
import os
import shlex
from pathlib import Path

from pebuilder.customise import modules
from pebuilder.customise.modules import KernelFiles
from pebuilder.formats import cpio
from pebuilder.fsroot import FsRoot
from pebuilder.fsutil import build_time, file_sha256, rmtree

LIVE = Path(__file__).resolve().parent / "live"

# Storage (CD, SATA, virtio, NVMe, USB), the file systems of the medium, and what the layers need.
BOOT_MODULES = ["ahci", "ata_piix", "ata_generic", "sr_mod", "sd_mod", "cdrom", "virtio_pci", "virtio_mmio",
                "virtio_blk", "virtio_scsi", "virtio_net", "nvme", "usb_storage", "uas", "xhci_pci", "xhci_plat_hcd",
                "ehci_pci", "ehci_platform", "ohci_pci", "squashfs", "overlay", "loop", "isofs", "ext4",
                "vfat", "nls_cp437", "nls_iso8859_1", "nls_ascii", "crc32c_generic"]


# Where a medium carries its identity; /init compares it with the boot code pb.id= (live/medium.sh).
ID_FILE = "os/pebuilder.id"

NET_MODULES = ["virtio_net", "e1000", "e1000e", "igb", "r8169", "vmxnet3", "ena", "gve", "hv_netvsc", "af_packet"]


def build(out: Path, busybox: Path, kf: KernelFiles, work: Path, conf: dict[str, str], *,
          compression: str = "gzip", level: int | str = "default", network: bool = False,
          files: dict[str, Path] | None = None, texts: dict[str, str] | None = None) -> dict[str, int]:
    """Write the initramfs to `out`. `conf` becomes /etc/pebuilder/boot.conf (e.g. MEDIA=LABEL=...);
    `network` adds NIC drivers and the DHCP hook (netboot); `files` and `texts` are added as they are
    (a netboot initramfs may carry the whole system)."""
    rmtree(work)
    fs = FsRoot(work)
    fs.mkdir(".", 0o755)
    for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "tmp", "newroot", "etc",
              "etc/pebuilder", "lib", "lib/modules", "lib/pebuilder"):
        fs.mkdir(d, 0o1777 if d == "tmp" else 0o755)
    fs.copy_from(busybox, "bin/busybox", 0o755)
    fs.symlink("bin/sh", "busybox")
    fs.copy_from(LIVE / "init.sh", "init", 0o755)
    fs.copy_from(LIVE / "medium.sh", "lib/pebuilder/medium.sh", 0o644)
    files_ko, builtin = modules.closure(kf, [], [*BOOT_MODULES, *(NET_MODULES if network else [])])
    for rel in files_ko:  # compressed modules (trixie's .ko.xz) go in plain: see modules.copy_module
        modules.copy_module(fs, kf.moddir / rel, f"lib/modules/{kf.kver}/{rel}")
    fs.write("etc/pebuilder/modules", "".join(f"{modules.plain_name(f)}\n" for f in files_ko), 0o644)
    fs.write("etc/pebuilder/boot.conf", "".join(f"{k}={shlex.quote(v)}\n" for k, v in conf.items()), 0o644)
    if network:
        fs.copy_from(LIVE / "udhcpc.script", "usr/share/udhcpc/default.script", 0o755)
    for rel, src in (files or {}).items():
        fs.copy_from(src, rel, 0o644)
    for rel, text in (texts or {}).items():
        fs.write(rel, text, 0o644)
    t = build_time()
    for rel in fs.walk():
        p = fs.root / rel
        if not p.is_symlink():
            os.utime(p, (t, t))
    size = cpio.pack(work, fs.meta, out, compression, level)
    rmtree(work)
    return {"modules": len(files_ko), "builtin": len(builtin), "bytes": size}


def content_id(files: dict[str, Path]) -> str:
    """One digest of what a medium holds (path and sha256 of each file, in path order): the same
    for the same build, whatever folder or time it was built in."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{file_sha256(files[rel])}\n".encode())
    return h.hexdigest()


def medium_id(content: str, role: str) -> str:
    """A medium's identity (16 hex digits): the system it holds (`content_id`) and which medium it
    is (`role`: the ISO, a disk image, the install image), so that the same system on two media -
    a PE's ISO and the disk it installed - has two identities."""
    return hashlib.sha256(f"{content}|{role}".encode()).hexdigest()[:16]
