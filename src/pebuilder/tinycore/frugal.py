"""Tiny Core's hard-disk ("frugal") layout: /boot with kernel and initrd, /tce with extensions.

Tiny Core finds /tce through the `tce=` boot code; pointing it at the partition's LABEL (which
blkid in Tiny Core's initrd resolves) works whether the cloud disk shows up as sda, vda or nvme0n1.
mydata.tgz in /tce is what `filetool.sh -r` restores at boot, as a backup made on a running system
would be.
"""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

from pebuilder.config.model import DiskOutput
from pebuilder.fsutil import atomic_output, link_or_copy, link_tree, rmtree, source_date_epoch
from pebuilder.outputs.bootmenu import BootEntry

TC_UID, STAFF_GID = 1001, 50


def stage(image: Path, kernel: str, initrd: str, spec: DiskOutput, dest: Path) -> None:
    """Lay out the root filesystem's files in `dest` from a remastered ISO tree."""
    rmtree(dest)
    (dest / "boot").mkdir(parents=True)
    for rel in (kernel, initrd):
        link_or_copy(image / rel, dest / "boot" / Path(rel).name)
    tce = dest / "tce"
    cde = image / "cde"
    if cde.is_dir():
        link_tree(cde, tce)
    else:
        (tce / "optional").mkdir(parents=True)
        (tce / "onboot.lst").write_text("")
    if spec.mydata:
        write_mydata(spec.mydata, tce / "mydata.tgz")


def write_mydata(folder: Path, out: Path) -> None:
    """A tar.gz as filetool.sh -b writes it: paths relative to /, files only (restored with tar -C /).

    Everything is root's but what sits under home/, which belongs to Tiny Core's user tc:staff.
    """
    clamp = source_date_epoch()
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())
    with atomic_output(out) as tmp, open(tmp, "wb") as raw:
        gz = gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=9, mtime=0)
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name in names:
                info = tar.gettarinfo(str(folder / name), arcname=name)
                home = name.startswith("home/")
                info.uid, info.gid = (TC_UID, STAFF_GID) if home else (0, 0)
                info.uname, info.gname = ("tc", "staff") if home else ("root", "root")
                info.mtime = min(int(info.mtime), clamp) if clamp is not None else int(info.mtime)
                if info.isreg():
                    with open(folder / name, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        gz.close()


def disk_entry(iso_entry: BootEntry, spec: DiskOutput) -> BootEntry:
    """The ISO's boot entry turned into the disk's: /tce by label instead of the CD's `cde`."""
    codes = [c for c in iso_entry.cmdline if c != "cde"]
    given = {c.split("=", 1)[0] for c in codes if "=" in c}
    if "tce" not in given:
        codes.append(f"tce=LABEL={spec.label}")
    target = spec.data_label if spec.data_size else spec.label
    for key in spec.persist:
        if key not in given:
            codes.append(f"{key}=LABEL={target}")
    return BootEntry(title=iso_entry.title.replace("(pebuilder)", "(pebuilder disk)"), kernel=iso_entry.kernel,
                     initrds=iso_entry.initrds, cmdline=codes, timeout=iso_entry.timeout, serial=iso_entry.serial)
