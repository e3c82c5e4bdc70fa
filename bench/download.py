"""Download throughput from a local server: pebuilder's fetcher vs wget and curl, same files.

    python bench/download.py [--size-mib 200] [--fixtures DIR]

One large file (sequential throughput) and the fixture extensions as a set of small files (per-
file overhead; pebuilder fetches them with its bounded parallelism, the plain tools one by one as
tce-load does). The server is `pebuilder serve` in its own process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pebuilder.net.http import fetch_to  # noqa: E402
from pebuilder.tinycore.mirror import Mirror  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=200)
    ap.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared/fixtures/tinycore")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pebuilder-bench-dl-"))
    port = free_port()
    server = None
    try:
        www = work / "www"
        repo = www / "14.x/x86_64/tcz"
        repo.mkdir(parents=True)
        with open(www / "big.bin", "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        for p in (args.fixtures / "tcz-14.x-x86_64").iterdir():
            shutil.copyfile(p, repo / p.name)
        names = sorted(p.name for p in repo.glob("*.tcz"))
        server = subprocess.Popen([sys.executable, "-m", "pebuilder", "serve", str(www), "--port", str(port)],
                                  env=os.environ | {"PYTHONPATH": str(ROOT / "src")}, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        base = f"http://127.0.0.1:{port}"
        big = args.size_mib << 20
        small = sum((repo / n).stat().st_size for n in names)
        rows = []

        def timed(label: str, what: str, size: int, fn) -> None:
            t0 = time.monotonic()
            fn()
            dt = time.monotonic() - t0
            rows.append((label, what, dt, size / dt / (1 << 20)))

        out = work / "out"
        out.mkdir()
        timed("pebuilder fetch_to", "1 large file", big, lambda: fetch_to(f"{base}/big.bin", out / "pb.bin"))
        for tool, argv in (("wget", ["wget", "-q", "-O"]), ("curl", ["curl", "-sf", "-o"])):
            if shutil.which(tool):
                timed(tool, "1 large file", big,
                      lambda argv=argv, tool=tool: subprocess.run([*argv, str(out / f"{tool}.bin"), f"{base}/big.bin"],
                                                                  check=True))
        cache = work / "cache"
        mirror = Mirror([base + "/"], "14.x/x86_64/tcz", cache=cache)
        timed("pebuilder Mirror.fetch_all (md5-verified)", f"{len(names)} extensions", small,
              lambda: mirror.fetch_all(names))
        for tool, argv in (("wget", ["wget", "-q", "-O"]), ("curl", ["curl", "-sf", "-o"])):
            if shutil.which(tool):
                def each(argv=argv, tool=tool) -> None:
                    for n in names:
                        for suffix in (".md5.txt", ""):
                            subprocess.run([*argv, str(out / f"{tool}-{n}{suffix}"),
                                            f"{base}/14.x/x86_64/tcz/{n}{suffix}"], check=True)
                timed(f"{tool} (md5.txt + tcz, one by one)", f"{len(names)} extensions", small, each)
        print(f"{'method':<44} {'what':<16} {'seconds':>8} {'MiB/s':>8}")
        for label, what, dt, rate in rows:
            print(f"{label:<44} {what:<16} {dt:8.2f} {rate:8.1f}")
    finally:
        if server:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
