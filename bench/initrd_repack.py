"""Repack one remastered Tiny Core initrd tree with pebuilder and with the plain tools, side by side.

    python bench/initrd_repack.py [--fixtures DIR] [--runs N]

The tree is the real rootfs64.gz with the real kmaps.tcz extracted into it. Each row runs as a
child process so wall time and peak memory (max RSS) are measured the same way for every tool.
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

from pebuilder.formats import cpio  # noqa: E402
from pebuilder.tinycore import initrd_ext  # noqa: E402


def timed(argv: list[str] | str, cwd: Path, shell: bool = False) -> tuple[float, int]:
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, shell=shell)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"failed: {argv}")
    return time.monotonic() - t0, usage.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared/fixtures/tinycore")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pebuilder-bench-"))
    try:
        tree, meta_path = work / "extract", work / "meta.json"
        meta = cpio.extract(args.fixtures / "tc6.4.1-x86_64/rootfs64.gz", tree, meta_path)
        initrd_ext.install_extracted(tree, meta, args.fixtures / "tcz-14.x-x86_64/kmaps.tcz", work, True)
        meta.save(meta_path)
        py = sys.executable
        pack = (f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); from pathlib import Path; "
                "from pebuilder.formats import cpio; "
                f"cpio.pack(Path({str(tree)!r}), cpio.TreeMeta.load(Path({str(meta_path)!r})), "
                "Path(sys.argv[1]), 'gzip', int(sys.argv[2]))")
        rows: list[tuple[str, list[str] | str, bool, Path]] = [
            ("pebuilder cpio.pack gzip -9", [py, "-c", pack, str(work / "pb9.gz"), "9"], False, work / "pb9.gz"),
            ("pebuilder cpio.pack gzip -6", [py, "-c", pack, str(work / "pb6.gz"), "6"], False, work / "pb6.gz"),
            ("find | cpio -o -H newc | gzip -9",
             f"find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9 > {work}/cpio9.gz", True,
             work / "cpio9.gz"),
        ]
        if shutil.which("advdef"):
            rows.append(("seed: cpio | gzip -2 && advdef -z4",
                         f"find . | cpio -o -H newc --quiet | gzip -2 > {work}/seed.gz && advdef -q -z4 {work}/seed.gz",
                         True, work / "seed.gz"))
        else:
            print("(advancecomp not installed: the seed's gzip -2 + advdef -z4 row is left out)")
        print(f"tree: {sum(1 for _ in tree.rglob('*'))} entries; best of {args.runs} runs\n")
        print(f"{'method':<40} {'seconds':>8} {'size (bytes)':>13} {'max RSS (MiB)':>14}")
        for name, argv, shell, out in rows:
            best = min(timed(argv, tree, shell) for _ in range(args.runs))
            print(f"{name:<40} {best[0]:8.2f} {out.stat().st_size:13d} {best[1] / 1024:14.1f}")
        print("\nNote: GNU cpio run as an unprivileged user records that user's uid; pebuilder writes the "
              "template's owners (root, staff) from its metadata whoever runs it.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
