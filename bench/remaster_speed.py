"""How fast and how small pebuilder's initrd compression is, next to the programs it replaces.

    python bench/remaster_speed.py [--size-mb 80] [--no-seed] [--jobs N]

The input is built here: a newc cpio (about 80 MB by default) of the running Python's standard
library, which is what an initrd mostly holds (scripts, byte code, shared objects). Every row runs
in a child process, so wall time and peak memory (max RSS, from wait4) are measured the same way
for the gzip program, advdef and pebuilder. Each part of the benchmark is a function returning
table rows, so other measurements (whole remasters) can be added as more rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pebuilder.formats import cpio, pgzip  # noqa: E402


@dataclass
class Row:
    name: str
    seconds: float
    size: int  # bytes of output
    max_rss_kib: int  # peak resident memory of the child (the larger one for two-step rows)


# --- input -----------------------------------------------------------------------------------------

def _stdlib_files(root: Path) -> Iterator[Path]:
    """Regular files of the standard library in a fixed order, without third-party packages."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "dist-packages"))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if stat.S_ISREG(path.lstat().st_mode):
                yield path


def build_input(out: Path, size_mb: int) -> int:
    """A newc cpio of the running Python's standard library, cut after `size_mb` MB of archive."""
    root = Path(sysconfig.get_paths()["stdlib"])
    target = size_mb * 1_000_000
    with open(out, "wb") as raw:
        sink = cpio._CountingSink(raw)
        writer = cpio.CpioWriter(sink)
        for path in _stdlib_files(root):
            st = path.lstat()
            entry = cpio.Entry(name=str(path.relative_to(root)), mode=st.st_mode, size=st.st_size, mtime=0)
            with open(path, "rb") as f:
                writer.add(entry, f)
            if sink.pos >= target:
                break
        writer.finish()
    return out.stat().st_size


# --- measuring -------------------------------------------------------------------------------------

GNU_TIME = shutil.which("time") and Path(shutil.which("time") or "").resolve()


def timed(argv: list[str], stdin: Path | None = None, stdout: Path | None = None) -> tuple[float, int]:
    """Wall seconds and max RSS (KiB) of one child process.

    A child's own ru_maxrss also counts the memory of the process that forked it (Linux keeps the
    pre-exec high-water mark), so the peak is taken from GNU time (Debian package `time`), a small
    parent, where it is installed."""
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL  # noqa: SIM115
    fout = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    fd, name = tempfile.mkstemp(prefix="pebuilder-bench-time-")
    os.close(fd)
    report = Path(name)
    wrapped = [str(GNU_TIME), "-f", "%M", "-o", str(report), *argv] if GNU_TIME else argv
    try:
        t0 = time.monotonic()
        proc = subprocess.Popen(wrapped, stdin=fin, stdout=fout)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - t0
        rss = int(report.read_text().split()[-1]) if GNU_TIME else usage.ru_maxrss
    finally:
        report.unlink(missing_ok=True)
        for f in (fin, fout):
            if hasattr(f, "close"):
                f.close()
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(argv)}")
    return seconds, rss


PEBUILDER_CHILD = """
import sys
sys.path.insert(0, {src!r})
from pebuilder.formats import compress
level = sys.argv[3] if not sys.argv[3].isdigit() else int(sys.argv[3])
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as out:
    z = compress.open_compressor(out, "gzip", level, jobs=int(sys.argv[4]))
    while chunk := src.read(1 << 20):
        z.write(chunk)
    z.close()
"""


def gzip_program_rows(data: Path, work: Path) -> list[Row]:
    rows = []
    for level in (6, 9):
        out = work / f"gzip{level}.gz"
        seconds, rss = timed(["gzip", f"-{level}", "-n", "-c"], stdin=data, stdout=out)
        rows.append(Row(f"gzip -{level}", seconds, out.stat().st_size, rss))
    return rows


def seed_rows(data: Path, work: Path) -> list[Row]:
    """remaster.sh's method: gzip -2, then advdef -z4 (zopfli) on the file."""
    if shutil.which("advdef") is None:
        print("(advancecomp is not installed: the seed's gzip -2 + advdef -z4 row is left out)")
        return []
    out = work / "seed.gz"
    s1, rss1 = timed(["gzip", "-2", "-n", "-c"], stdin=data, stdout=out)
    s2, rss2 = timed(["advdef", "-z4", "-q", str(out)])
    return [Row("seed: gzip -2 + advdef -z4", s1 + s2, out.stat().st_size, max(rss1, rss2))]


def pebuilder_rows(data: Path, work: Path, jobs: int) -> list[Row]:
    """pebuilder's parallel gzip at each named level, on `jobs` threads and on one."""
    code = PEBUILDER_CHILD.format(src=str(ROOT / "src"))
    rows = []
    for level in ("fast", "default", "best"):
        for j in dict.fromkeys((jobs, 1)):
            out = work / f"pb-{level}-{j}.gz"
            seconds, rss = timed([sys.executable, "-c", code, str(data), str(out), level, str(j)])
            rows.append(Row(f"pebuilder {level} (jobs={j})", seconds, out.stat().st_size, rss))
    return rows


# --- output ----------------------------------------------------------------------------------------

def print_table(rows: list[Row], base: Row, input_size: int) -> None:
    print(f"{'method':<32} {'seconds':>8} {'bytes':>11} {'ratio':>6} {'MiB RSS':>8} "
          f"{'size/gzip-6':>11} {'time/gzip-6':>11}")
    for r in rows:
        print(f"{r.name:<32} {r.seconds:8.2f} {r.size:11d} {input_size / r.size:6.3f} {r.max_rss_kib / 1024:8.1f} "
              f"{r.size / base.size:11.4f} {r.seconds / base.seconds:11.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=80, help="size of the cpio input (default 80 MB)")
    ap.add_argument("--jobs", type=int, default=pgzip.default_jobs(), help="threads for the parallel rows")
    ap.add_argument("--no-seed", action="store_true", help="leave out gzip -2 + advdef -z4 (3-4 min at 80 MB)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pebuilder-bench-"))
    try:
        data = work / "input.cpio"
        size = build_input(data, args.size_mb)
        print(f"input: {size} bytes of newc cpio from {sysconfig.get_paths()['stdlib']}; "
              f"{os.cpu_count()} CPUs, jobs={args.jobs}, engine {pgzip.default_engine()}\n")
        rows = gzip_program_rows(data, work)
        if not args.no_seed:
            rows += seed_rows(data, work)
        rows += pebuilder_rows(data, work, args.jobs)
        print_table(rows, rows[0], size)
        print("\nratio = input / output; a pebuilder row's RSS includes the Python interpreter (~10 MiB)")
        if not GNU_TIME:
            print("(GNU time is not installed: RSS is wait4's, which also counts this script's own memory)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
