"""Extensions and provisioning, measured inside a booted live system (software emulation, no KVM).

    python bench/live_ext_pe.py [--arch amd64] [--image-mb 256]

1. `pebuilder ext build jq`: each extension's size beside the .deb it came from.
2. In the guest: time from `tce-load -wi jq` to a working `jq` (downloads from a loopback mirror).
3. In the same guest: provisioning throughput of `pb-provision` (chunked Range requests, sha256,
   write) beside `wget -O - URL | dd` of the same raw image to the same disk.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pebuilder.boot.qemu import boot, console_text  # noqa: E402
from pebuilder.net.serve import make_server  # noqa: E402


def pebuilder(*args: str | Path, cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "pebuilder", *map(str, args)], capture_output=True, text=True,
                         cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    if out.returncode != 0:
        raise SystemExit(f"pebuilder {' '.join(map(str, args))} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--image-mb", type=int, default=256)
    args = ap.parse_args()
    arch = args.arch
    qarch = "aarch64" if arch in ("arm64", "aarch64") else "x86_64"
    with tempfile.TemporaryDirectory(prefix="pb-bench-ext-") as tmp:
        base = Path(tmp)
        (base / "live.toml").write_text(f'system = "debian"\n[base]\narch = "{arch}"\n[boot]\nserial = true\n'
                                        'timeout = 1\n[extensions]\nmirrors = ["http://10.0.2.100/"]\n'
                                        '[output.iso]\npath = "out/live.iso"\n')
        pebuilder("build", base / "live.toml", cwd=base)
        table = pebuilder("ext", "build", "jq", "--base", base / "live.toml", "--out", base / "www", cwd=base)
        www = base / "www"
        raw = www / "img.raw"
        with open(raw, "wb") as f:  # half random (incompressible), half zeros, as disks are
            f.write(os.urandom(args.image_mb << 19))
            f.truncate(args.image_mb << 20)
        disk = base / "disk.raw"
        with open(disk, "wb") as f:
            f.truncate((args.image_mb + 64) << 20)
        server = make_server(www, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        nic = f"guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 {server.server_address[1]}"
        sha = subprocess.run(["sha256sum", str(raw)], capture_output=True, text=True).stdout.split()[0]
        conf = f"image=http://10.0.2.100/img.raw\\nsha256={sha}\\ntarget=/dev/vda\\nthen=shell\\n"
        cmds = [
            "sleep 5",
            "time tce-load -wi jq && echo '{}' | jq -M . > /dev/null && echo jq-works",
            f"printf '{conf}' > /etc/pebuilder/provision.conf",
            "time sh -c '/usr/sbin/pb-provision > /dev/null 2>&1'",
            "time sh -c 'wget -q -O - http://10.0.2.100/img.raw | dd of=/dev/vda bs=1M 2>/dev/null'",
            "echo BENCH-''DONE",
        ]
        script = [("expect", "Please press Enter"), ("send", "\n"), ("expect", "# ")]
        script += [("send", c + "\n") for c in cmds] + [("expect", "BENCH-DONE")]
        log = base / "serial.log"
        firmware = "bios" if qarch == "x86_64" else "uefi"
        res = boot(base / "out" / "live.iso", expect=[], script=script, firmware=firmware, media="cdrom",
                   arch=qarch, timeout=900, log_path=log, nic=nic, disks=[disk], writable=True, memory=1024)
        server.shutdown()
        text = console_text(log.read_bytes())
        if not res.ok:
            raise SystemExit(f"guest run failed ({res.exit_reason}):\n{text[-3000:]}")
        reals = [int(m or 0) * 60 + float(s) for m, s in re.findall(r"real\s+(?:(\d+)m\s*)?([\d.]+)s", text)]
        print("\n## extensions built from Debian packages (pebuilder ext build jq)\n")
        print(table)
        print("## inside the guest (software emulation)\n")
        print("what | seconds | MB/s")
        print("--- | --- | ---")
        if len(reals) >= 3:
            mb = args.image_mb
            print(f"tce-load -wi jq (6 extensions, from a loopback mirror) to a working jq | {reals[0]:.1f} | -")
            print(f"pb-provision {mb} MiB raw image (32 MiB Range chunks, sha256, dd) | {reals[1]:.1f} | "
                  f"{mb / reals[1]:.1f}")
            print(f"wget -O - URL \\| dd of=/dev/vda bs=1M (no check, no resume) | {reals[2]:.1f} | "
                  f"{mb / reals[2]:.1f}")
        else:
            print(f"could not read the timings from the console:\n{text[-2000:]}")


if __name__ == "__main__":
    main()
