"""The seed's 20 GiB MBR/ext3 packagehd image, built by pebuilder and by the seed's own method.

    python bench/disk_image.py [--size 20G] [--fixtures DIR] [--skip-seed]

The seed's method (dd of zeros, losetup -P, parted, mkfs.ext3, mount, grub-install, cp) runs only
as root with loop devices, parted and grub-install present; otherwise its row says why it is
missing. Both start from the same remastered Tiny Core tree (the real 6.4.1 fixture).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_template_iso  # noqa: E402

from pebuilder.config.model import DiskOutput, parse_size  # noqa: E402
from pebuilder.outputs import disk  # noqa: E402
from pebuilder.outputs.bootmenu import BootEntry  # noqa: E402
from pebuilder.tinycore import frugal  # noqa: E402

CMDLINE = "loglevel=3 tce=sda1 opt=sda1 home=sda1 restore=sda1 cde"


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def pebuilder_build(image: Path, size: int, work: Path) -> tuple[float, Path]:
    out = work / "pebuilder.raw"
    spec = DiskOutput(path=out, size=size, filesystem="ext3", label="TCROOT")
    t0 = time.monotonic()
    staging = work / "pb-root"
    frugal.stage(image, "boot/vmlinuz64", "boot/corepure64.gz", spec, staging)
    entry = BootEntry("raw hd", "/boot/vmlinuz64", ["/boot/corepure64.gz"], CMDLINE.split(), 3)
    disk.write(spec, staging, entry, work / "pb-work", seed="bench")
    return time.monotonic() - t0, out


def seed_build(image: Path, size: int, work: Path) -> tuple[float, Path] | str:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("losetup", "parted", "mkfs.ext3", "grub-install", "mount"):
        if not shutil.which(tool):
            return f"{tool} missing"
    out = work / "seed.raw"
    mnt = work / "mnt"
    mnt.mkdir()
    t0 = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={out}", "bs=1M", f"count={size >> 20}", "status=none"], check=True)
    dd_secs = time.monotonic() - t0
    try:
        return _seed_rest(out, mnt, image, t0)
    except subprocess.CalledProcessError as exc:
        step = " ".join(map(str, exc.cmd[:2]))
        return (f"failed at '{step}' after {time.monotonic() - t0:.1f} s (the dd of zeros alone took {dd_secs:.1f} s "
                f"and allocated {allocated(out) >> 20} MiB)")


def _seed_rest(out: Path, mnt: Path, image: Path, t0: float) -> tuple[float, Path]:
    dev = subprocess.run(["losetup", "-fP", "--show", str(out)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        subprocess.run(["parted", "-s", dev, "mktable", "msdos"], check=True)
        subprocess.run(["parted", "-s", dev, "mkpart", "primary", "ext3", "2048s", "100%"], check=True)
        subprocess.run(["parted", "-s", dev, "set", "1", "boot", "on"], check=True)
        subprocess.run(["mkfs.ext3", "-q", f"{dev}p1"], check=True, capture_output=True)
        subprocess.run(["mount", f"{dev}p1", str(mnt)], check=True, capture_output=True)
        try:
            subprocess.run(["grub-install", "--target=i386-pc", f"--boot-directory={mnt}/boot", dev], check=True,
                           capture_output=True)
            (mnt / "boot/grub/grub.cfg").write_text(
                f'set timeout=3\nmenuentry "this is a raw hd" {{\nlinux /boot/vmlinuz64 {CMDLINE}\n'
                "initrd /boot/corepure64.gz\n}\n")
            subprocess.run(["cp", "-a", f"{image}/boot/.", f"{mnt}/boot/"], check=True)
            subprocess.run(["cp", "-a", f"{image}/cde", f"{mnt}/tce"], check=True)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)
    return time.monotonic() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="20G")
    ap.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared/fixtures/tinycore")
    ap.add_argument("--skip-seed", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("PEBUILDER_FIXTURES", str(args.fixtures))
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="pebuilder-bench-disk-"))
    try:
        iso = make_template_iso(work / "t.iso")
        image = work / "image"
        subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(image)],
                       check=True, capture_output=True)
        subprocess.run(["chmod", "-R", "u+w", str(image)], check=True)
        (image / "cde/optional").mkdir(parents=True)
        for f in ("dialog.tcz", "db.tcz"):
            shutil.copyfile(args.fixtures / "tcz-14.x-x86_64" / f, image / "cde/optional" / f)
        (image / "cde/onboot.lst").write_text("dialog.tcz\ndb.tcz\n")
        rows = [("pebuilder (sparse, rootless)", pebuilder_build(image, size, work))]
        rows.append(("seed: dd + losetup + parted + mkfs + grub-install",
                     "skipped (--skip-seed)" if args.skip_seed else seed_build(image, size, work)))
        print(f"image: {args.size} msdos/ext3, GRUB for BIOS, Tiny Core 6.4.1 tree\n")
        print(f"{'method':<52} {'seconds':>8} {'allocated':>12} {'apparent':>12}")
        for name, res in rows:
            if isinstance(res, str):
                print(f"{name:<52} {res}")
                continue
            secs, out = res
            print(f"{name:<52} {secs:8.2f} {allocated(out) >> 20:9d} MiB {out.stat().st_size >> 20:8d} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
