"""Hard-disk images (packagehd) from the real Tiny Core template: layouts, sparseness, owners, boots."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import EXT_MARKER, TCZ, make_marker_extension, needs_fixtures, pebuilder

HOST = "pbdisk"
RESTORED = "PEBUILDER-MYDATA-RESTORED"
GPT = {"linux": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
       "bios": "21686148-6449-6E6F-744E-656564454649"}


def toml_config(base: Path, iso: Path, disks: str) -> Path:
    exts = base / "exts"
    exts.mkdir(exist_ok=True)
    make_marker_extension(exts)
    mydata = base / "mydata/opt"
    mydata.mkdir(parents=True, exist_ok=True)
    script = mydata / "bootlocal.sh"
    # Only inside /tce/mydata.tgz: it runs only if Tiny Core restored the backup from the partition.
    script.write_text(f"#!/bin/sh\necho \"{RESTORED} TCEDIR=$(readlink /etc/sysconfig/tcedir)\" > /dev/console\n")
    script.chmod(0o755)
    cfg = base / "pebuilder.toml"
    cfg.write_text(f"""
[template]
iso = "{iso}"
[work]
dir = "work"
[extensions]
dirs = ["exts", "{TCZ}"]
initrd = ["pbtest", "kmaps"]
onboot = ["dialog", "db"]
[boot]
codes = ["console=ttyS0", "host={HOST}"]
timeout = 1
[output.iso]
path = "out/tc.iso"
{disks}
""")
    return cfg


DISKS = """
[[output.disk]]
path = "out/mbr-bios.raw"
filesystem = "ext3"
label = "TCROOT"
mydata = "mydata"

[[output.disk]]
path = "out/mbr-bios.qcow2"
format = "qcow2"
size = "1G"
mydata = "mydata"

[[output.disk]]
path = "out/gpt-uefi.raw"
table = "gpt"
firmware = "uefi"
size = "1G"
label = "TCUEFI"
mydata = "mydata"

[[output.disk]]
path = "out/gpt-both.raw"
table = "gpt"
firmware = "both"
size = "2G"
data_size = "256M"
persist = ["home"]
mydata = "mydata"

[[output.disk]]
path = "out/small.vmdk"
format = "vmdk"
size = "256M"
"""


@pytest.fixture(scope="module")
def disks(tmp_path_factory, template_iso):
    base = tmp_path_factory.mktemp("disks")
    cfg = toml_config(base, template_iso, DISKS)
    proc = pebuilder("build", cfg, "--json")
    return base / "out", json.loads(proc.stdout)


def partitions(image: Path) -> dict:
    return json.loads(subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True,
                                     check=True).stdout)["partitiontable"]


@needs_fixtures
def test_tables_types_and_boot_flags(disks):
    out, _ = disks
    mbr = partitions(out / "mbr-bios.raw")
    assert mbr["label"] == "dos" and len(mbr["partitions"]) == 1
    p = mbr["partitions"][0]
    assert (p["start"], p["type"], p.get("bootable")) == (2048, "83", True)
    uefi = partitions(out / "gpt-uefi.raw")
    assert uefi["label"] == "gpt"
    assert [q["type"] for q in uefi["partitions"]] == [GPT["esp"], GPT["linux"]]
    both = partitions(out / "gpt-both.raw")
    assert [q["type"] for q in both["partitions"]] == [GPT["bios"], GPT["esp"], GPT["linux"], GPT["linux"]]
    assert both["partitions"][3]["size"] == 256 * 2048
    assert all(q["start"] % 2048 == 0 for q in both["partitions"])


@needs_fixtures
def test_twenty_gib_image_is_sparse_and_clean(disks):
    out, _ = disks
    img = out / "mbr-bios.raw"
    st = img.stat()
    assert st.st_size == 20 << 30
    content = sum(f.stat().st_size for f in (out.parent / "work/image").rglob("*") if f.is_file())
    assert st.st_blocks * 512 < content + (64 << 20), (st.st_blocks * 512, content)
    fsck = subprocess.run(["e2fsck", "-fn", f"{img}?offset={2048 * 512}"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    info = subprocess.run(["dumpe2fs", "-h", f"{img}?offset={2048 * 512}"], capture_output=True, text=True).stdout
    assert "Filesystem volume name:   TCROOT" in info and "has_journal" in info
    listing = subprocess.run(["debugfs", "-R", "ls -p /tce/optional", f"{img}?offset={2048 * 512}"],
                             capture_output=True, text=True).stdout
    for name in ("dialog.tcz", "dialog.tcz.md5.txt", "dialog.tcz.dep", "db.tcz"):
        assert f"/{name}/" in listing


@needs_fixtures
def test_formats(disks):
    out, report = disks
    for name, fmt in (("mbr-bios.qcow2", "qcow2"), ("small.vmdk", "vmdk")):
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(out / name)],
                                         capture_output=True, text=True, check=True).stdout)
        assert info["format"] == fmt
    ran = {s["stage"] for s in report["stages"] if s["ran"]}
    assert {"disk-mbr-bios.raw", "disk-gpt-uefi.raw", "disk-gpt-both.raw", "disk-small.vmdk"} <= ran
    assert sorted(p.name for p in out.iterdir()) == [  # nothing half-written left beside them
        "gpt-both.raw", "gpt-uefi.raw", "mbr-bios.qcow2", "mbr-bios.raw", "small.vmdk", "tc.iso"]


@needs_fixtures
@pytest.mark.boot
@pytest.mark.parametrize("image,firmware,tcedir", [
    ("mbr-bios.raw", "bios", "/mnt/sda1/tce"),
    ("gpt-uefi.raw", "uefi", "/mnt/sda2/tce"),
    ("gpt-both.raw", "bios", "/mnt/sda3/tce"),
    ("gpt-both.raw", "uefi", "/mnt/sda3/tce"),
    ("mbr-bios.qcow2", "bios", "/mnt/sda1/tce"),
])
def test_disk_boots_finds_tce_and_restores(disks, image, firmware, tcedir):
    out, _ = disks
    proc = pebuilder("boot", out / image, "--firmware", firmware, "--as", "disk",
                     "--expect", f"Setting hostname to {HOST}", "--expect", EXT_MARKER,
                     "--expect", f"{RESTORED} TCEDIR={tcedir}", "--timeout", "170", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_fixtures
def test_packagehd_as_unprivileged_user_gives_root_owned_boot(open_workspace):
    """The seed's packagehd (ezremaster.cfg, 20 GiB msdos ext3), run as nobody."""
    base, iso = open_workspace
    cfg = base / "ez.cfg"
    cfg.write_text(f"cd_location = {iso}\ntemp_dir = {base}/work/\ncc = console=ttyS0\n"
                   "app_outside_initrd_onboot = dialog.tcz\n")
    subprocess.run(["chown", "-R", "65534", str(base)], check=True)
    pebuilder("remaster", cfg, "packagehd", "--ext-dir", TCZ, user="65534",
              env={"PEBUILDER_CACHE": str(base / "cache")})
    img = base / "work/buildpackage.raw"
    assert img.stat().st_size == 20 << 30 and img.stat().st_uid == 65534
    assert not (base / "work/ezremaster.iso").exists()
    stat_out = subprocess.run(["debugfs", "-R", "stat /boot/vmlinuz64", f"{img}?offset={2048 * 512}"],
                              capture_output=True, text=True).stdout
    assert "User:     0   Group:     0" in stat_out
    for path in ("/boot/corepure64.gz", "/tce/onboot.lst", "/boot/grub/grub.cfg"):
        s = subprocess.run(["debugfs", "-R", f"stat {path}", f"{img}?offset={2048 * 512}"],
                           capture_output=True, text=True).stdout
        assert "User:     0   Group:     0" in s, path
    grub = subprocess.run(["debugfs", "-R", "cat /boot/grub/grub.cfg", f"{img}?offset={2048 * 512}"],
                          capture_output=True, text=True).stdout
    assert "tce=LABEL=TCROOT" in grub and " cde" not in grub
    fs = subprocess.run(["dumpe2fs", "-h", f"{img}?offset={2048 * 512}"], capture_output=True, text=True).stdout
    assert "has_journal" in fs and "extent" not in fs.split("Filesystem features:")[1].splitlines()[0]


@needs_fixtures
@pytest.mark.parametrize("disk,message,code,out_left", [
    ('path = "out/d.raw"\nsize = "8M"', "is too small for d.raw: it needs at least", 37, None),
    ('path = "out/d.raw"\nsize = "20X"', r"output.disk\[0\].size: '20X' is not a size", 30, None),
    ('path = "out/d.raw"\nfilesystem = "btrfs"', "filesystem: got 'btrfs'; accepted values: ext4, ext3, ext2", 30,
     None),
    ('path = "out/d.raw"\ntable = "bsd"', "table: got 'bsd'; accepted values: msdos, gpt", 30, None),
    ('path = "out/d.raw"\nformat = "vdi"', "format: got 'vdi'; accepted values: raw, qcow2, vmdk", 30, None),
    ('path = "afile/d.raw"', "cannot create the output folder", 37, None),
])
def test_bad_disk_specs(tmp_path, template_iso, disk, message, code, out_left):
    """A bad disk spec is one clear message; nothing is left where the disk would have gone (out_left:
    what the out/ folder holds afterwards, None: it was never made)."""
    (tmp_path / "afile").write_text("a file, not a folder\n")
    cfg = toml_config(tmp_path, template_iso, f"[[output.disk]]\n{disk}\n")
    proc = pebuilder("remaster", cfg, "packagehd", check=False)
    assert proc.returncode == code, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert re.search(message, last) and last.startswith("pebuilder: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    out = tmp_path / "out"
    assert (sorted(os.listdir(out)) if out.exists() else None) == out_left
    assert (tmp_path / "afile").read_text() == "a file, not a folder\n"


@needs_fixtures
def test_disks_are_reproducible(tmp_path, template_iso):
    """Same inputs and SOURCE_DATE_EPOCH, two work folders, two runs: byte-identical disks."""
    disk = '[[output.disk]]\npath = "out/r.raw"\ntable = "gpt"\nfirmware = "both"\nsize = "1G"\nmydata = "mydata"\n'
    sums = []
    for run in ("a", "b"):
        base = tmp_path / run
        base.mkdir()
        cfg = toml_config(base, template_iso, disk)
        pebuilder("build", cfg, env={"SOURCE_DATE_EPOCH": "1700000000"})
        sums.append(hashlib.sha256((base / "out/r.raw").read_bytes()).hexdigest())
    assert sums[0] == sums[1]
