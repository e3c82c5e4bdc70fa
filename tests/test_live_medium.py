"""How a live system finds its own medium among others with the same label, and keeps the PE off it:
the initramfs's medium.sh and pb-provision's choice of target, run by busybox sh outside QEMU.

The devices are real file system images (ext4, ISO 9660, FAT16, FAT32: their labels are read from
their bytes, as in the initramfs); only `mount` stands in, linking a folder for each device. The
QEMU tests that boot whole systems next to each other are in test_pe.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pebuilder.customise.provision import SCRIPT as PB_PROVISION
from pebuilder.debian.initramfs import LIVE

BUSYBOX = shutil.which("busybox")
pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (apt-get install busybox-static)")

STUBS = r"""
mount() { # mount [-t T] [-o O] DEV DIR: DIR becomes a link to the device's folder, when it has one
	eval "dev=\${$(($# - 1))}" "dir=\${$#}"
	echo "mount $*" >> "$T/mounts.log"
	[ -d "$T/roots/${dev##*/}" ] || return 1
	rmdir "$dir" 2>/dev/null || rm -f "$dir"
	ln -s "$T/roots/${dev##*/}" "$dir"
}
umount() { rm -f "$1" && mkdir -p "$1"; }
findfs() { [ "$1" = UUID=0123-4567 ] && echo /dev/by-uuid; }
"""


def applets(tmp: Path) -> Path:
    """A PATH of busybox applets only, as in the initramfs."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    names = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        (bin_dir / name).symlink_to(BUSYBOX)
    return bin_dir


def run_sh(tmp: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": str(applets(tmp)), "T": str(tmp), **env}
    return subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True, env=full, timeout=60)


def ext4(path: Path, label: str) -> None:
    with open(path, "wb") as f:
        f.truncate(4 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, str(path)], check=True, capture_output=True)


def fat(path: Path, label: str, bits: int) -> None:
    kib = 40 * 1024 if bits == 32 else 16 * 1024
    subprocess.run(["mkfs.vfat", "-F", str(bits), "-n", label, "-C", str(path), str(kib)], check=True,
                   capture_output=True)


def iso9660(path: Path, label: str, tmp: Path) -> None:
    src = tmp / "iso-src"
    src.mkdir()
    (src / "x").write_text("x")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-J", "-V", label, "-o", str(path), str(src)],
                   check=True, capture_output=True)


def system(tmp: Path, name: str, ident: str | None, core: bool = True) -> None:
    """What the device's file system holds, as the mount stand-in shows it."""
    os_dir = tmp / "roots" / name / "os"
    os_dir.mkdir(parents=True)
    if core:
        (os_dir / "core.sqfs").write_bytes(b"hsqs")
    if ident is not None:
        (os_dir / "pebuilder.id").write_text(ident + "\n")


@pytest.fixture
def devices(tmp_path) -> Path:
    """Six media labelled PBLIVE (two builds' systems, an ISO, an older build without an id, a disk
    holding no system, a device that cannot be mounted yet), one labelled OTHER, one without any."""
    dev = tmp_path / "dev"
    sys_dir = tmp_path / "sys"
    dev.mkdir()
    sys_dir.mkdir()
    fat(dev / "sdb1", "PBLIVE", 16)
    system(tmp_path, "sdb1", "cccc")
    ext4(dev / "sdc1", "OTHER")
    system(tmp_path, "sdc1", "aaaa")
    fat(dev / "sdd1", "PBLIVE", 32)
    system(tmp_path, "sdd1", "dddd")
    iso9660(dev / "sr0", "PBLIVE", tmp_path)
    system(tmp_path, "sr0", "bbbb")
    with open(dev / "vda", "wb") as f:
        f.truncate(1 << 20)
    ext4(dev / "vda3", "PBLIVE")
    system(tmp_path, "vda3", "aaaa")
    ext4(dev / "vdb1", "PBLIVE")
    system(tmp_path, "vdb1", None, core=False)
    ext4(dev / "vdc1", "PBLIVE")
    system(tmp_path, "vdc1", None)
    ext4(dev / "vdd1", "PBLIVE")  # no folder under roots: its mount fails (a slow device)
    for p in dev.iterdir():
        (sys_dir / p.name).touch()
    return tmp_path


def pick(devices: Path, *calls: str) -> tuple[list[str], str]:
    body = "".join(f'pick_medium {c}; echo "DEV=$DEV|SEEN=$SEEN|SYSTEMS=$SYSTEMS"\n' for c in calls)
    script = STUBS + f'. "{LIVE / "medium.sh"}"\n' + body
    proc = run_sh(devices, script, {"PB_SYS": str(devices / "sys"), "PB_DEV": str(devices / "dev"),
                                    "PB_PROBE": str(devices / "probe"), "PB_HEAD": str(devices / "head")})
    assert proc.returncode == 0, proc.stderr
    log = (devices / "mounts.log").read_text() if (devices / "mounts.log").exists() else ""
    return proc.stdout.replace(str(devices / "dev") + "/", "").splitlines(), log


def test_the_medium_with_the_id_wins_over_others_with_its_label(devices):
    lines, log = pick(devices, "LABEL=PBLIVE aaaa", "LABEL=PBLIVE aaaa", "LABEL=PBLIVE bbbb")
    # sdb1, sdd1 and sr0 come first and carry the label: they are looked into and left alone.
    assert lines[0] == "DEV=vda3|SEEN=sdb1 (id cccc), sdd1 (id dddd), sr0 (id bbbb), vda3 (id aaaa)|SYSTEMS=4"
    assert lines[1].startswith("DEV=vda3|")
    assert lines[2].startswith("DEV=sr0|")
    # Each device is mounted once, read-only, with its own type; the one labelled OTHER never.
    mounts = log.splitlines()
    assert len(mounts) == 4, log
    assert [m.split()[2] for m in mounts] == ["vfat", "vfat", "iso9660", "ext4"]
    assert all(" -o ro " in m for m in mounts if "vfat" in m or "iso9660" in m)
    assert "-t ext4 -o ro,noload" in mounts[3] and "sdc1" not in log


def test_no_match_lists_what_carries_the_label(devices):
    lines, log = pick(devices, "LABEL=PBLIVE ffff", "LABEL=PBLIVE ffff")
    assert lines[0] == ("DEV=|SEEN=sdb1 (id cccc), sdd1 (id dddd), sr0 (id bbbb), vda3 (id aaaa), "
                        "vdb1 (no /os/core.sqfs), vdc1 (no /os/pebuilder.id)|SYSTEMS=5")
    # The device that could not be mounted is tried again on the next look (slow devices), no other is.
    assert log.count("vdd1") == 4 and log.count("vda3") == 1, log  # ro,noload then ro, twice


def test_without_an_id_the_first_system_with_the_label(devices):
    lines, _ = pick(devices, "LABEL=PBLIVE", "LABEL=PBLIVE any", "LABEL=NOSUCH aaaa")
    assert lines[0].startswith("DEV=sdb1|") and lines[0].endswith("|SYSTEMS=5")
    assert lines[1].startswith("DEV=sdb1|")
    assert lines[2] == "DEV=|SEEN=|SYSTEMS=0"


def test_a_device_or_uuid_is_taken_as_is(devices):
    lines, log = pick(devices, "/dev/null aaaa", "UUID=0123-4567 aaaa", "/dev/pb-no-such-device aaaa")
    assert lines == ["DEV=/dev/null|SEEN=|SYSTEMS=0", "DEV=/dev/by-uuid|SEEN=|SYSTEMS=0",
                     "DEV=|SEEN=|SYSTEMS=0"]
    assert log == ""


# -- pb-provision: never the disk the system came from ----------------------------------------------

def provision_root(tmp: Path, target: str, medium_dev: str | None, mounts: str = "") -> Path:
    """/proc, /sys, /run and /etc as pb-provision reads them; the disks have names no host has, so
    the run ends at the block-device check whatever it chose."""
    root = tmp / "root"
    for d in ("proc", "etc/pebuilder", "run/pb", "dev"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "proc/cmdline").write_text("console=ttyS0,115200 pb.media=LABEL=PBLIVE\n")
    (root / "proc/mounts").write_text(mounts)
    (root / "etc/pebuilder/provision.conf").write_text(
        f"image=http://10.0.2.100/vm.raw.gz\nsha256={'ab' * 32}\ntarget={target}\nthen=shell\n")
    if medium_dev:
        (root / "run/pb/medium-dev").write_text(medium_dev + "\n")
    for name, sectors, parts in (("pbx0", 2 << 20, ["pbx0p1"]), ("pbx1", 2 << 20, ["pbx1p2", "pbx1p3"]),
                                 ("sr0", 100 << 11, []), ("loop0", 2 << 20, [])):
        (root / "sys/block" / name).mkdir(parents=True)
        (root / "sys/block" / name / "size").write_text(f"{sectors}\n")
        for p in parts:
            (root / "sys/block" / name / p).mkdir()
    (root / "dev/console").write_text("")
    return root


def provision(tmp: Path, target: str, medium_dev: str | None, mounts: str = "") -> str:
    tmp.mkdir(exist_ok=True)
    root = provision_root(tmp, target, medium_dev, mounts)
    proc = run_sh(tmp, f'. "{PB_PROVISION}"', {"PB_ROOT": str(root)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return (root / "dev/console").read_text()


@pytest.mark.parametrize("medium", ["/dev/pbx1p3", "/dev/pbx1", None])
def test_target_auto_skips_the_whole_disk_of_the_medium(tmp_path, medium):
    # None: no record from the initramfs (Tiny Core, an older initramfs): what is mounted as the medium.
    mounts = "/dev/pbx1p3 /run/pb/medium ext4 rw 0 0\n" if medium is None else ""
    said = provision(tmp_path, "auto", medium, mounts)
    assert "provisioning stopped: target /dev/pbx0 is not a block device" in said, said


def test_target_auto_without_a_medium_sees_both_disks(tmp_path):
    said = provision(tmp_path, "auto", None)
    assert "target=auto found 2 candidate disks (pbx0(1024 MiB) pbx1(1024 MiB); the boot medium none excluded)" in said


@pytest.mark.parametrize("target", ["/dev/pbx1", "/dev/pbx1p2"])
def test_a_target_on_the_medium_disk_is_refused(tmp_path, target):
    said = provision(tmp_path, target, "/dev/pbx1p3")
    assert (f"provisioning stopped: target {target} is on pbx1, the disk this system booted from (its medium is "
            "/dev/pbx1p3); refusing to write over it. Set target= to another disk") in said, said
    said = provision(tmp_path / "other", "/dev/pbx0", "/dev/pbx1p3")
    assert "target /dev/pbx0 is not a block device" in said

