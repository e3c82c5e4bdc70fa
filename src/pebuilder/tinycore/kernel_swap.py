"""Giving a Tiny Core userland another kernel, and loading modules early at boot.

What older Tiny Core userlands need from a newer kernel is handled here and reported: the modules
tce-load mounts with (squashfs, loop), zram for tc-config's swap (else `nozswap`), and the
`bs=4096` mount option that tce-load before 2020 passes and kernels since about 5.4 refuse.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from pebuilder.debian.kernel import KernelFiles, closure
from pebuilder.formats.cpio import TreeMeta
from pebuilder.fsutil import resolve_in_root
from pebuilder.runner import run

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


def install_modules(root: Path, meta: TreeMeta, kf: KernelFiles, configured: list[str]) -> dict:
    files, builtin = closure(kf, configured, NEEDED)
    dest = root / "lib/modules" / kf.kver
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kf.moddir / rel, target)
        os.chmod(target, 0o644)
    for extra in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        if (kf.moddir / extra).exists():
            shutil.copyfile(kf.moddir / extra, dest / extra)
    run(["depmod", "-a", "-b", root, kf.kver], what=f"running depmod for {kf.kver}")
    for dirpath, dirnames, filenames in os.walk(root / "lib/modules"):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if rel not in meta.entries:
                meta.set(rel, os.lstat(p).st_mode, 0, 0)
    names = {f.rsplit("/", 1)[-1].split(".ko")[0].replace("-", "_") for f in files}
    return {"modules": len(files), "zram": "zram" in names or "zram" in builtin,
            "squashfs": "squashfs" in names or "squashfs" in builtin,
            "early": [m for m in EARLY_DEFAULT if m in names]}


def replace_kernel_image(image: Path, kernel_rel: str, kf: KernelFiles) -> None:
    target = image / kernel_rel
    tmp = target.with_name(target.name + ".new")
    shutil.copyfile(kf.vmlinuz, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def patch_tce_load(root: Path) -> bool:
    """Drop `bs=4096` from tce-load's squashfs mounts; True when the file needed it."""
    path = resolve_in_root(root, "usr/bin/tce-load", follow_last=True)
    if not path.is_file():
        return False
    text = path.read_bytes()
    if b",bs=4096" not in text:
        return False
    mode = stat.S_IMODE(path.stat().st_mode)
    path.write_bytes(text.replace(b",bs=4096", b""))
    os.chmod(path, mode)
    return True


def load_early(root: Path, meta: TreeMeta, modules: list[str]) -> None:
    """A sysinit step before rcS, so the modules are there before Tiny Core looks for disks."""
    script = root / EARLY_SCRIPT
    script.parent.mkdir(parents=True, exist_ok=True)
    body = " ".join(modules)
    script.write_text(
        "#!/bin/sh\n# pebuilder: load configured kernel modules before Tiny Core scans for disks.\n"
        "[ -f /proc/cmdline ] || /bin/mount -t proc proc /proc\n"
        f"for m in {body}; do\n"
        "  /sbin/modprobe \"$m\" 2>/dev/null && echo \"pebuilder: loaded module $m\" > /dev/console"
        " || echo \"pebuilder: could not load module $m\" > /dev/console\n"
        "done\n")
    os.chmod(script, 0o755)
    meta.set(EARLY_SCRIPT, stat.S_IFREG | 0o755, 0, 0)
    inittab = resolve_in_root(root, "etc/inittab", follow_last=True)
    lines = inittab.read_text().splitlines() if inittab.exists() else ["::sysinit:/etc/init.d/rcS"]
    hook = f"::sysinit:/{EARLY_SCRIPT}"
    lines = [ln for ln in lines if ln.strip() != hook]
    at = next((i for i, ln in enumerate(lines) if ln.startswith("::sysinit:")), 0)
    lines.insert(at, hook)
    mode = stat.S_IMODE(inittab.stat().st_mode) if inittab.exists() else 0o644
    inittab.write_text("\n".join(lines) + "\n")
    os.chmod(inittab, mode)
