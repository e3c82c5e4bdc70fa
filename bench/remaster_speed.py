"""How fast a Tiny Core remaster is, and how fast and small its initrd compression is, next to the
programs it replaces, measured in one run.

    python bench/remaster_speed.py [--quick] [--jobs N]
    python bench/remaster_speed.py --compression-only [--size-mb 80] [--no-seed] [--jobs N]

The inputs are built here: the real fixture template (tests/conftest.py's make_template_iso: the real
CorePure64 6.4.1 kernel, rootfs and isolinux), kmaps, getlocale and a 77 MB extension of the running
Python's standard library (mksquashfs, as Tiny Core packs its extensions) extracted into the initrd,
and the 7 other fixture extensions onboot. pebuilder then builds it cold, again with nothing changed,
after an onboot and a boot code change, and as the seed's packagehd disk; the initrd's cpio (the
exact stream pebuilder compresses) is compressed by pebuilder at each level and by the programs the
seed used, and the seed's own method runs where it can (root and a loop mount), else its compression
steps alone. Every row runs in a child process, so wall time and peak memory (max RSS, from GNU time
or wait4) are measured the same way for the gzip program, advdef and pebuilder.

pebuilder runs from a snapshot of src/ taken at the start (other work on the tree cannot change the
code under test mid-run), with its byte code cached as an installed package has it; one no-op row
shows the cost without that cache (PYTHONDONTWRITEBYTECODE). A full run takes about 4-5 minutes on 2
cores, two thirds of it advdef; --quick leaves out advdef, the seed's steps and the one-thread rows
(about a minute). Where `mount -o loop` fails (no root, no iso9660 in the kernel) the seed's method is
reduced to its compression steps; --seed-copy xorriso runs all of its steps with xorriso reading the
CD instead of a loop mount.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import statistics
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
    size: int  # bytes of output (0: not a file-producing row)
    max_rss_kib: int  # peak resident memory of the child (the larger one for two-step rows)
    note: str = ""


# --- input -----------------------------------------------------------------------------------------

def _stdlib_files(root: Path, skip_static: bool = False) -> Iterator[Path]:
    """Regular files of the standard library in a fixed order, without third-party packages.

    `skip_static` leaves out static libraries (libpython3.X.a): build-time material that a Python
    extension does not ship (distributions put it in -dev packages), and which, being 40 MB of
    highly repetitive object code in some builds, would make the initrd unusually fast to gzip."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "dist-packages"))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if skip_static and name.endswith(".a"):
                continue
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


def build_stdlib_extension(folder: Path, size_mb: int) -> tuple[Path, int, int]:
    """pystdlib.tcz: the first `size_mb` MB of the standard library under usr/local/lib/pythonX.Y,
    packed as Tiny Core packs extensions (squashfs, gzip, 4 KiB blocks, root-owned)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    src = folder / "pystdlib-src"
    dest = src / "usr/local/lib" / root.name
    total = count = 0
    for path in _stdlib_files(root, skip_static=True):
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        total += path.stat().st_size
        count += 1
        if total >= size_mb * 1_000_000:
            break
    tcz = folder / "pystdlib.tcz"
    subprocess.run(["mksquashfs", str(src), str(tcz), "-b", "4k", "-no-xattrs", "-all-root", "-noappend", "-quiet",
                    "-no-progress"], check=True, capture_output=True)
    shutil.rmtree(src)
    return tcz, count, total


# --- measuring -------------------------------------------------------------------------------------

GNU_TIME = shutil.which("time") and Path(shutil.which("time") or "").resolve()


def timed(argv: list[str], stdin: Path | None = None, stdout: Path | None = None, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> tuple[float, int]:
    """Wall seconds and max RSS (KiB) of one child process.

    A child's own ru_maxrss also counts the memory of the process that forked it (Linux keeps the
    pre-exec high-water mark), so the peak is taken from GNU time (Debian package `time`), a small
    parent, where it is installed. It is the largest single process of the child's tree (its own
    children included once waited for), not a sum."""
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL  # noqa: SIM115
    fout = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    fd, name = tempfile.mkstemp(prefix="pebuilder-bench-time-")
    os.close(fd)
    report = Path(name)
    ferr = tempfile.TemporaryFile()  # noqa: SIM115 - shown only when the child fails (it warns, as expected here)
    wrapped = [str(GNU_TIME), "-f", "%M", "-o", str(report), *argv] if GNU_TIME else argv
    try:
        t0 = time.monotonic()
        proc = subprocess.Popen(wrapped, stdin=fin, stdout=fout, stderr=ferr, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - t0
        rss = int(report.read_text().split()[-1]) if GNU_TIME and status == 0 else usage.ru_maxrss
        ferr.seek(0)
        errors = ferr.read().decode(errors="replace")
    finally:
        report.unlink(missing_ok=True)
        for f in (fin, fout, ferr):
            if hasattr(f, "close"):
                f.close()
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(argv)}\n{errors[-3000:]}")
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
        rows.append(Row(f"gzip -{level} (1 thread)", seconds, out.stat().st_size, rss))
    return rows


def seed_rows(data: Path, work: Path) -> list[Row]:
    """remaster.sh's compression: gzip -2, then advdef -z4 (zopfli) on the file (= pebuilder level seed).

    Two rows: the advdef one carries advdef's own time and the final bytes."""
    if shutil.which("advdef") is None:
        print("(advancecomp is not installed: the seed's gzip -2 + advdef -z4 rows are left out)")
        return []
    out = work / "seed.gz"
    s1, rss1 = timed(["gzip", "-2", "-n", "-c"], stdin=data, stdout=out)
    first = Row("gzip -2 (1 thread)", s1, out.stat().st_size, rss1)
    s2, rss2 = timed(["advdef", "-z4", "-q", str(out)])
    return [first, Row("advdef -z4 of it (= level seed)", s2, out.stat().st_size, rss2,
                       f"with its gzip -2: {s1 + s2:.1f} s")]


def pebuilder_rows(data: Path, work: Path, jobs: int, src: Path = ROOT / "src", one_thread: bool = True) -> list[Row]:
    """pebuilder's parallel gzip at each named level, on `jobs` threads and (one_thread) on one."""
    code = PEBUILDER_CHILD.format(src=str(src))
    rows = []
    for level in ("fast", "default", "best"):
        for j in dict.fromkeys((jobs, 1) if one_thread else (jobs,)):
            out = work / f"pb-{level}-{j}.gz"
            seconds, rss = timed([sys.executable, "-c", code, str(data), str(out), level, str(j)])
            rows.append(Row(f"pebuilder {level} (jobs={j})", seconds, out.stat().st_size, rss))
    return rows


# --- the remaster ------------------------------------------------------------------------------------

ONBOOT = ["dialog", "db", "iproute2", "ethtool", "libzstd", "squashfs-tools", "scsi-6.1.2-tinycore64"]
INITRD = ["kmaps", "getlocale", "pystdlib"]


@dataclass
class Scenario:
    base: Path
    iso: Path
    exts: Path
    env: dict[str, str]
    ext_note: str

    def config(self, name: str, work: str, onboot: list[str] = ONBOOT,
               codes: tuple[str, ...] = ("loglevel=3",)) -> Path:
        cfg = self.base / f"{name}.toml"
        cfg.write_text(f'system = "tinycore"\n[template]\niso = "{self.iso}"\n[work]\ndir = "{work}"\n'
                       f'[extensions]\ndirs = ["{self.exts}"]\ninitrd = {json.dumps(INITRD)}\n'
                       f'onboot = {json.dumps(onboot)}\n[boot]\ncodes = {json.dumps(list(codes))}\n'
                       f'hostname = "pbbench"\ntimeout = 1\n[output.iso]\npath = "{work}.iso"\n')
        return cfg


def build_scenario(base: Path, ext_mb: int, src: Path = ROOT / "src") -> Scenario:
    """The template ISO, the extension folder (fixtures + the stdlib extension) and pebuilder's snapshot."""
    sys.path.insert(0, str(ROOT / "tests"))
    import conftest  # the test suite's fixture locator and template builder

    if conftest.LOCATED.folder is None:
        raise SystemExit(f"the Tiny Core fixtures are missing: {conftest.LOCATED.reason}\n"
                         "set PEBUILDER_FIXTURES=/path/to/fixtures/tinycore (see tests/fixtures.py)")
    iso = conftest.make_template_iso(base / "CorePure64-6.4.1.iso")
    exts = base / "exts"
    exts.mkdir()
    for f in conftest.TCZ.iterdir():
        os.symlink(f, exts / f.name)
    tcz, count, total = build_stdlib_extension(exts, ext_mb)
    note = (f"pystdlib.tcz: {count} files, {total / 1e6:.1f} MB of {sysconfig.get_paths()['stdlib']} "
            f"({tcz.stat().st_size / 1e6:.1f} MB squashfs)")
    snapshot = base / "src"
    shutil.copytree(src / "pebuilder", snapshot / "pebuilder", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(snapshot), PYTHONPYCACHEPREFIX=str(base / "pycache"), PEBUILDER_CACHE=str(base / "cache"))
    return Scenario(base, iso, exts, env, note)


def run_pebuilder(sc: Scenario, name: str, cfg: Path, function: str,
                  env: dict[str, str] | None = None) -> tuple[Row, dict]:
    out = sc.base / "report.json"
    seconds, rss = timed([sys.executable, "-m", "pebuilder", "remaster", str(cfg), function, "--json"], stdout=out,
                         env=env or sc.env, cwd=sc.base)
    report = json.loads(out.read_text())
    ran = [s["stage"] for s in report["stages"] if s["ran"]]
    stage_s = {s["stage"]: s["seconds"] for s in report["stages"] if s["ran"]}
    slow = sorted(stage_s.items(), key=lambda kv: -kv[1])[:3]
    note = (f"ran {len(ran)} stages" + (": " + ", ".join(f"{k} {v:.1f}" for k, v in slow) if slow else "")
            + f"; read {report['hashed_files']} files")
    return Row(name, seconds, 0, rss, note), report


def repeat(sc: Scenario, name: str, cfg: Path, function: str, times: int = 5,
           env: dict[str, str] | None = None) -> Row:
    """The median of `times` runs (a no-op is short enough for the machine's load to show)."""
    rows = []
    for _ in range(times):
        row, report = run_pebuilder(sc, name, cfg, function, env)
        if any(s["ran"] for s in report["stages"]):
            raise SystemExit(f"{name}: expected a no-op, but stages ran: {row.note}")
        rows.append(row)
    mid = statistics.median(r.seconds for r in rows)
    return Row(name, mid, 0, max(r.max_rss_kib for r in rows),
               f"median of {times}: {', '.join(f'{r.seconds:.2f}' for r in rows)}; read 0 files")


def cold_run(sc: Scenario, name: str, cfg_name: str, work: str, function: str, times: int = 2) -> Row:
    """The faster of `times` builds in a new work folder (the machine is shared: load shows in one run)."""
    rows = []
    for _ in range(times):
        shutil.rmtree(sc.base / work, ignore_errors=True)
        row, _ = run_pebuilder(sc, name, sc.config(cfg_name, work), function)
        rows.append(row)
    best = min(rows, key=lambda r: r.seconds)
    best.note = f"best of {times} ({', '.join(f'{r.seconds:.2f}' for r in rows)}); " + best.note
    return best


def remaster_rows(sc: Scenario) -> tuple[list[Row], Path, dict[str, Row]]:
    """pebuilder's remaster paths; returns the rows, the work folder of the cold build, and named rows."""
    named: dict[str, Row] = {}
    cfg = sc.config("main", "w-main")
    cold = cold_run(sc, "pebuilder cold rebuild", "main", "w-main", "rebuild")
    initrd = sc.base / "w-main/.pebuilder/initrd/corepure64.gz"
    cold.size = initrd.stat().st_size
    cold.note = f"initrd {cold.size} B; " + cold.note
    named["cold"] = cold
    hd, _ = run_pebuilder(sc, "pebuilder packagehd after it", cfg, "packagehd")
    named["hd_after"] = hd
    rows = [cold, hd]
    named["noop"] = repeat(sc, "pebuilder no-op rebuild", cfg, "rebuild")
    named["noop_hd"] = repeat(sc, "pebuilder no-op packagehd", cfg, "packagehd")
    no_cache = {**sc.env, "PYTHONDONTWRITEBYTECODE": "1"}
    no_cache.pop("PYTHONPYCACHEPREFIX")
    rows += [named["noop"], named["noop_hd"],
             repeat(sc, "  same, no byte code cache", cfg, "rebuild", env=no_cache)]
    changed = sc.config("main", "w-main", onboot=ONBOOT[:-2])
    row, report = run_pebuilder(sc, "pebuilder onboot change", changed, "rebuild")
    assert "pack-initrd" not in [s["stage"] for s in report["stages"] if s["ran"]], report
    assert initrd.stat().st_size == cold.size
    rows.append(row)
    codes = sc.config("main", "w-main", onboot=ONBOOT[:-2], codes=("loglevel=3", "waitusb=5"))
    row, report = run_pebuilder(sc, "pebuilder boot code change", codes, "rebuild")
    assert "pack-initrd" not in [s["stage"] for s in report["stages"] if s["ran"]], report
    rows.append(row)
    row = cold_run(sc, "pebuilder cold packagehd", "hd", "w-hd", "packagehd")
    named["cold_hd"] = row
    rows.append(row)
    return rows, sc.base / "w-main", named


CPIO_CHILD = """
import sys
sys.path.insert(0, {src!r})
from pathlib import Path
from pebuilder.formats import cpio
from pebuilder.fsroot import TreeMeta
cpio.pack(Path(sys.argv[1]), TreeMeta.load(Path(sys.argv[2])), Path(sys.argv[3]), "none")
"""


def initrd_cpio(sc: Scenario, work: Path, out: Path) -> Row:
    """The initrd's cpio as pebuilder writes it (level "none"): the stream every level compresses."""
    code = CPIO_CHILD.format(src=sc.env["PYTHONPATH"])
    seconds, rss = timed([sys.executable, "-c", code, str(work / "extract"), str(work / ".pebuilder/extract.meta.json"),
                          str(out)])
    return Row("pebuilder: the cpio alone, no compression", seconds, out.stat().st_size, rss)


def can_loop_mount(iso: Path, where: Path) -> str | None:
    """None when the seed's `mount -o loop` works here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    mnt = where / "mnt"
    mnt.mkdir(exist_ok=True)
    proc = subprocess.run(["mount", "-o", "loop,ro", str(iso), str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["mount failed"])[0]
    subprocess.run(["umount", str(mnt)], check=False)
    return None


def seed_method_rows(sc: Scenario, work: Path, advdef: Row | None, copy: str) -> list[Row]:
    """remaster.sh's steps: copy the CD, unpack its initrd, unsquashfs the extensions into it, copy the
    onboot ones to cde/, then `find | cpio -o -H newc | gzip -2`, advdef -z4, mkisofs.

    Without a loop mount (`copy` is the reason) only the compression steps run, on pebuilder's
    extracted tree. advdef is not run a second time: its time is the same-cpio advdef row's."""
    rows: list[Row] = []
    seed = sc.base / "seed"
    shutil.rmtree(seed, ignore_errors=True)
    seed.mkdir()
    extract = work / "extract"
    if copy in ("mount", "xorriso"):
        image, extract = seed / "image", seed / "extract"
        if copy == "mount":
            mnt = sc.base / "mnt"
            script = f"mount -o loop,ro '{sc.iso}' '{mnt}' && cp -a '{mnt}' '{image}'; rc=$?; umount '{mnt}'; exit $rc"
        else:
            script = f"xorriso -osirrox on -indev '{sc.iso}' -extract / '{image}' 2>/dev/null && chmod -R u+w '{image}'"
        s, rss = timed(["sh", "-c", script])
        rows.append(Row(f"seed: copy the CD ({copy})", s, 0, rss))
        s, rss = timed(["sh", "-c", f"mkdir '{extract}' && cd '{extract}' && zcat '{image}/boot/corepure64.gz' | "
                                    "cpio -i -H newc -d --quiet"])
        rows.append(Row("seed: zcat | cpio -i (initrd)", s, 0, rss))
        unsq = " && ".join(f"unsquashfs -f -n -d '{extract}' '{sc.exts}/{n}.tcz' >/dev/null" for n in INITRD)
        s, rss = timed(["sh", "-c", unsq])
        rows.append(Row("seed: unsquashfs initrd extensions", s, 0, rss))
        opt = image / "cde/optional"
        cde = " && ".join(f"cp '{sc.exts}/{n}.tcz' '{opt}/'" for n in ONBOOT)
        s, rss = timed(["sh", "-c", f"mkdir -p '{opt}' && {cde} && printf '%s.tcz\\n' {' '.join(ONBOOT)} > "
                                    f"'{image}/cde/onboot.lst'"])
        rows.append(Row("seed: copy onboot extensions", s, 0, rss))
    out = seed / "core.gz"
    s, rss = timed(["sh", "-c", f"cd '{extract}' && find | cpio -o -H newc --quiet | gzip -2 > '{out}'"])
    rows.append(Row("seed: find | cpio -o -H newc | gzip -2", s, out.stat().st_size, rss,
                    "its own cpio (find's order, inode numbers)"))
    if advdef is not None:
        rows.append(Row("seed: advdef -z4", advdef.seconds, 0, advdef.max_rss_kib,
                        "timed once: the advdef row above, on the same cpio"))
    if copy in ("mount", "xorriso"):
        shutil.copyfile(out, seed / "image/boot/corepure64.gz")
        s, rss = timed(["xorriso", "-as", "mkisofs", "-quiet", "-l", "-J", "-R", "-V", "Tinycore", "-no-emul-boot",
                        "-boot-load-size", "4", "-boot-info-table", "-b", "boot/isolinux/isolinux.bin", "-c",
                        "boot/isolinux/boot.cat", "-o", str(seed / "seed.iso"), str(seed / "image")])
        rows.append(Row("seed: mkisofs", s, (seed / "seed.iso").stat().st_size, rss))
    total = sum(r.seconds for r in rows)
    what = "the seed's method" if copy in ("mount", "xorriso") else "the seed's compression steps alone"
    rows.append(Row(f"= {what}", total, 0, max(r.max_rss_kib for r in rows)))
    return rows


# --- output ----------------------------------------------------------------------------------------

def print_table(rows: list[Row], base: Row, input_size: int) -> None:
    print(f"{'method':<44} {'seconds':>8} {'bytes':>11} {'MiB RSS':>8} {'size/gzip-6':>11} {'time/gzip-6':>11}  note")
    for r in rows:
        size = f"{r.size:11d}" if r.size else f"{'':11}"
        rel = f"{r.size / base.size:11.4f}" if r.size and r.size < input_size else f"{'':11}"
        print(f"{r.name:<44} {r.seconds:8.2f} {size} {r.max_rss_kib / 1024:8.1f} {rel} {r.seconds / base.seconds:11.3f}"
              f"  {r.note}")


def goal(text: str, value: float, limit: float) -> str:
    return f"  {'met ' if value <= limit else 'MISS'}  {text}: {value:.4f} (goal ≤ {limit})"


def print_goals(by: dict[str, Row], rows: list[Row]) -> None:
    g6 = by["gzip -6 (1 thread)"].seconds
    print("\ngoals (ratios in this run):")
    print(goal("cold rebuild / gzip -6", by["cold"].seconds / g6, 0.5))
    print(goal("cold packagehd / gzip -6", by["cold_hd"].seconds / g6, 0.5))
    both = by["cold"].seconds + by["hd_after"].seconds
    print(goal("(cold rebuild + packagehd after it) / gzip -6", both / g6, 0.5))
    print(goal("no-op rebuild, seconds", by["noop"].seconds, 0.3))
    print(goal("no-op packagehd, seconds", by["noop_hd"].seconds, 0.3))
    best = next(r for r in rows if r.name.startswith("pebuilder best (jobs="))
    default = next(r for r in rows if r.name.startswith("pebuilder default (jobs="))
    adv = by.get("advdef")
    if adv is not None:
        print(goal(f"best bytes / advdef bytes ({best.size - adv.size:+d} B)", best.size / adv.size, 1.0))
        print(goal("best seconds / advdef -z4 seconds", best.seconds / adv.seconds, 0.25))
    print(goal("default bytes / gzip -9 bytes", default.size / by["gzip -9 (1 thread)"].size, 1.0))
    print(goal("default seconds / gzip -6 seconds", default.seconds / g6, 1.0))
    peak = max(r.max_rss_kib for r in rows if r.name.startswith("pebuilder")) / 1024
    print(goal("peak RSS of any pebuilder process, MiB", peak, 200))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="leave out advdef, the seed's steps and the one-thread rows (about a minute)")
    ap.add_argument("--jobs", type=int, default=pgzip.default_jobs(), help="threads for the parallel rows")
    ap.add_argument("--ext-mb", type=int, default=77, help="size of the standard library extension (default 77 MB)")
    ap.add_argument("--src", type=Path, default=ROOT / "src",
                    help="the pebuilder to measure: a folder holding pebuilder/ (e.g. `git archive` of another commit)")
    ap.add_argument("--compression-only", action="store_true",
                    help="only the compression rows, on a cpio of the standard library (--size-mb)")
    ap.add_argument("--size-mb", type=int, default=80, help="with --compression-only: size of the cpio input")
    ap.add_argument("--no-seed", action="store_true", help="leave out gzip -2 + advdef -z4 (3-4 min at 80 MB)")
    ap.add_argument("--seed-copy", choices=("auto", "xorriso"), default="auto",
                    help="how the seed's method reads the CD: auto (mount -o loop where it can, else its compression "
                         "steps alone), xorriso (the whole method with xorriso in place of the mount)")
    args = ap.parse_args()
    no_seed = args.no_seed or args.quick
    base = Path(tempfile.mkdtemp(prefix="pebuilder-bench-"))
    try:
        if args.compression_only:
            data = base / "input.cpio"
            size = build_input(data, args.size_mb)
            print(f"input: {size} bytes of newc cpio from {sysconfig.get_paths()['stdlib']}; "
                  f"{os.cpu_count()} CPUs, jobs={args.jobs}, engine {pgzip.default_engine()}\n")
            rows = gzip_program_rows(data, base)
            if not no_seed:
                rows += seed_rows(data, base)
            rows += pebuilder_rows(data, base, args.jobs, one_thread=not args.quick)
            print_table(rows, rows[0], size)
        else:
            t0 = time.monotonic()
            sc = build_scenario(base, args.ext_mb, args.src.resolve())
            print(f"inputs ({time.monotonic() - t0:.0f} s): {sc.iso.name} from the fixtures; initrd += "
                  f"{', '.join(INITRD)}; onboot: {', '.join(ONBOOT)}\n  {sc.ext_note}\n"
                  f"  {os.cpu_count()} CPUs, jobs={args.jobs}, engine {pgzip.default_engine()}, "
                  f"{'GNU time' if GNU_TIME else 'wait4'} for RSS, load {os.getloadavg()[0]:.1f}\n")
            rows, work, by = remaster_rows(sc)
            data = base / "initrd.cpio"
            rows.append(initrd_cpio(sc, work, data))
            size = data.stat().st_size
            plain = gzip_program_rows(data, base)
            adv_rows = [] if no_seed else seed_rows(data, base)
            levels = pebuilder_rows(data, base, args.jobs, Path(sc.env["PYTHONPATH"]), one_thread=not args.quick)
            default = next(r for r in levels if r.name == f"pebuilder default (jobs={args.jobs})")
            if default.size != by["cold"].size:
                print(f"(!) the cold rebuild's initrd ({by['cold'].size} B) differs from the default row's "
                      f"({default.size} B)")
            rows += plain + adv_rows + levels
            by.update({r.name: r for r in plain})
            if adv_rows:
                by["advdef"] = adv_rows[-1]
            if not args.quick:
                reason = None if args.seed_copy == "xorriso" else can_loop_mount(sc.iso, base)
                copy = "xorriso" if args.seed_copy == "xorriso" else ("mount" if reason is None else "none")
                if reason:
                    print(f"the seed's method cannot run here (mount -o loop: {reason}): its compression steps "
                          "are timed alone, on pebuilder's extracted tree")
                rows += seed_method_rows(sc, work, by.get("advdef"), copy)
            print(f"the initrd's cpio: {size} bytes; same-run ratios against one single-threaded gzip -6 of it\n")
            print_table(rows, by["gzip -6 (1 thread)"], size)
            print_goals(by, rows)
            print(f"\n{time.monotonic() - t0:.0f} s in all; load average now {os.getloadavg()[0]:.1f}")
        print("\nseconds: wall time of the child process; MiB RSS: its peak (a pebuilder row includes the Python "
              "interpreter, ~10 MiB, and its largest helper process); a row without bytes writes no compared file")
        if not GNU_TIME:
            print("(GNU time is not installed: RSS is wait4's, which also counts this script's own memory)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
