"""Which kernel modules the live system ships (the initramfs has its own, smaller set).

`[kernel] modules` names modules or folders under the kernel's `kernel/` tree (e.g. "drivers/net");
empty means a set for virtual machines and common hardware (network file systems, btrfs and xfs are
left out: together they are 15 MB of modules; name them, e.g. ["fs/btrfs", "fs/xfs", "nfsv4"], to
have them); ["all"] ships every module.
"""

from __future__ import annotations

from pebuilder.customise import modules
from pebuilder.customise.modules import KernelFiles
from pebuilder.debian.initramfs import BOOT_MODULES
from pebuilder.errors import Exit, PebuilderError

DEFAULT = [*BOOT_MODULES, "virtio_console", "virtio_rng", "virtio_balloon", "virtio_input", "e1000", "e1000e",
           "igb", "igbvf", "ixgbevf", "r8169", "vmxnet3", "hv_netvsc", "ena", "gve", "af_packet", "tun", "veth",
           "bridge", "8021q", "fuse", "exfat", "nls_utf8", "ipv6",
           "nf_tables", "nft_chain_nat", "nf_nat", "br_netfilter", "ip_tables", "iptable_nat", "iptable_filter",
           "evdev", "usbhid", "hid_generic", "sg", "dm_mod", "raid1", "md_mod", "zram", "cdc_ether", "usbnet",
           "rtc_cmos", "efivarfs", "vsock", "vmw_vsock_virtio_transport"]


def select(kf: KernelFiles, wanted: list[str]) -> list[str]:
    """Module files (relative to lib/modules/<kver>) with their dependencies."""
    if wanted == ["all"]:
        return sorted(str(p.relative_to(kf.moddir)) for p in (kf.moddir / "kernel").rglob("*.ko*"))
    if not wanted:
        return modules.closure(kf, [], DEFAULT)[0]
    names: list[str] = []
    for item in wanted:
        if "/" in item:
            folder = kf.moddir / "kernel" / item.strip("/")
            found = sorted(folder.rglob("*.ko*")) if folder.is_dir() else []
            if not found:
                raise PebuilderError(f"kernel.modules: {item!r} is no folder of modules in {kf.kver} "
                                     f"(look under {kf.moddir / 'kernel'})", Exit.KERNEL)
            names += [modules.module_name(p.name) for p in found]
        else:
            names.append(item)
    return modules.closure(kf, names, BOOT_MODULES)[0]
