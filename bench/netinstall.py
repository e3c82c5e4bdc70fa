"""Provisioning a blank disk from a PE, two ways, timed from PE boot to the installed system's first boot.

    python bench/netinstall.py [--disk-gb 4] [--initramfs targeted|generic]

- install = "debian": the PE builds Debian on the disk from the mirror (debootstrap from a plan
  resolved at build time, GRUB, users), the way debian-installer's netinstall does;
- install = "self": the PE writes the install image pebuilder prebuilt (a copy of the live system).

Both under QEMU software emulation (no KVM), the mirror reached through a caching proxy on loopback
(in .test-cache/apt-proxy, filled by a first, untimed netinstall when empty, so the timed one
measures the install, not the Internet).
Prints, for each: PE boot to "provisioning done", the installed disk's first boot to its marker,
what crossed the network, and the size of what landed on the disk.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from apt_proxy import AptProxy  # noqa: E402

from pebuilder.boot.qemu import boot, console_text  # noqa: E402

CONFIG = """system = "debian"
[base]
variant = "tiny"
[boot]
serial = true
timeout = 1
[[users]]
name = "bench"
uid = 1100
[provision]
{provision}
then = "poweroff"
[output.iso]
path = "pe.iso"
"""


def pebuilder(*args: str | Path, cwd: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pebuilder", *map(str, args)], capture_output=True, text=True,
                         cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    if out.returncode != 0:
        raise SystemExit(f"pebuilder {' '.join(map(str, args))} failed:\n{out.stderr[-3000:]}")


def provision(iso: Path, disk_gb: int, folder: Path, nic: str, done: str, up: str) -> dict[str, float]:
    disk = folder / "disk.qcow2"
    disk.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), f"{disk_gb}G"], check=True)
    t0 = time.monotonic()
    res = boot(iso, expect=[done], media="cdrom", timeout=3000, memory=1024, log_path=folder / "pe.log",
               disks=[disk], writable=True, nic=nic, extra=["-boot", "d"])
    if not res.ok:
        text = console_text((folder / "pe.log").read_bytes())
        raise SystemExit(f"{iso.parent.name}: {res.exit_reason}\n{text[-3000:]}")
    pe = time.monotonic() - t0
    t1 = time.monotonic()
    res = boot(disk, expect=[up], media="disk", drive_if="virtio", firmware="bios", timeout=600, memory=1024,
               log_path=folder / "first.log")
    if not res.ok:
        raise SystemExit(f"{iso.parent.name} disk: {res.exit_reason}")
    used = int(subprocess.run(["qemu-img", "info", "--output=json", str(disk)], capture_output=True, text=True,
                              check=True).stdout.split('"actual-size":')[1].split(",")[0])
    return {"pe": pe, "first": time.monotonic() - t1, "disk_mb": used / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--disk-gb", type=int, default=4)
    ap.add_argument("--initramfs", default="targeted", choices=("targeted", "generic"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pb-bench-ni-") as tmp:
        base = Path(tmp)
        cache = ROOT / ".test-cache" / "apt-proxy"  # kept between runs: the timed install reads the LAN
        proxy = AptProxy(cache)
        nic = f"guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 {proxy.port}"
        rows = []
        for name, prov, done, up in (
                ("install = \"debian\"", f'install = "debian"\nmirror = "http://10.0.2.100/debian"\n'
                 f'initramfs = "{args.initramfs}"', "netinstall: done", "pebuilder: installed system is up"),
                ("install = \"self\"", 'install = "self"', "provisioning done", "pebuilder: system is up")):
            folder = base / name.split('"')[1]
            folder.mkdir()
            (folder / "pe.toml").write_text(CONFIG.format(provision=prov))
            pebuilder("build", folder / "pe.toml", cwd=folder)
            iso_mb = (folder / "pe.iso").stat().st_size / 1e6
            if "debian" in name and not any(cache.rglob("*.deb")):
                provision(folder / "pe.iso", args.disk_gb, folder, nic, done, up)  # fills the proxy's cache
            before = sum(f.stat().st_size for f in cache.rglob("*.deb"))
            served = proxy.count()
            got = provision(folder / "pe.iso", args.disk_gb, folder, nic, done, up)
            rows.append((name, iso_mb, got["pe"], got["first"], got["pe"] + got["first"],
                         proxy.count() - served, before / 1e6 if "debian" in name else 0.0, got["disk_mb"]))
        print(f"{'method':<20} {'PE ISO MB':>9} {'PE boot→done s':>15} {'first boot s':>13} {'total s':>8} "
              f"{'requests':>9} {'fetched MB':>10} {'on disk MB':>10}")
        for r in rows:
            print(f"{r[0]:<20} {r[1]:>9.1f} {r[2]:>15.0f} {r[3]:>13.0f} {r[4]:>8.0f} {r[5]:>9} {r[6]:>10.1f} "
                  f"{r[7]:>10.0f}")


if __name__ == "__main__":
    main()
