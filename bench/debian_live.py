"""The Debian live system: sizes, build times (cold, warm cache, boot codes only) and boot-to-marker,
for tiny and minbase, amd64 and arm64, per Debian suite, beside the seed's target and a Tiny Core ISO's size.

    python bench/debian_live.py [--variants tiny,minbase] [--arch amd64,arm64] [--suites bookworm,trixie]
                                [--no-cold]

"cold" builds into an empty work folder with an empty download cache (everything fetched from the
host's Debian mirror); "warm cache" into an empty work folder with the cache of the cold run;
"codes only" changes the boot codes of a built folder. Boots are software-emulated (no KVM).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pebuilder.boot.qemu import boot  # noqa: E402

MARKER = "pebuilder: system is up"
SEED_TARGET = "40-50 MB"


def tinycore_iso_mb(folder: Path) -> str:
    """A CorePure64-style ISO from the real 6.4.1 fixtures (as tests build it), for scale."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from conftest import FIXTURES, make_template_iso
    except Exception as exc:  # noqa: BLE001 - the bench still runs without the fixtures
        return f"unavailable ({exc})"
    if not FIXTURES.is_dir():
        return "unavailable (no Tiny Core fixtures)"
    iso = make_template_iso(folder / "CorePure64.iso")
    return f"{iso.stat().st_size / 1e6:.1f} MB (kernel + rootfs64.gz + isolinux, no modules64.gz)"


def pebuilder(*args: str | Path, env: dict[str, str]) -> tuple[float, dict]:
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pebuilder", *map(str, args), "--json"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **env})
    dt = time.monotonic() - t0
    if out.returncode != 0:
        raise SystemExit(f"pebuilder {' '.join(map(str, args))} failed:\n{out.stderr[-3000:]}")
    return dt, json.loads(out.stdout)


def config(folder: Path, variant: str, arch: str, suite: str) -> Path:
    path = folder / f"{variant}-{arch}-{suite}.toml"
    path.write_text(f'system = "debian"\n[base]\nvariant = "{variant}"\narch = "{arch}"\nsuite = "{suite}"\n'
                    '[boot]\nserial = true\ntimeout = 1\n[output.iso]\npath = "out/live.iso"\n')
    return path


def row(variant: str, arch: str, suite: str, base: Path, cold: bool) -> dict:
    work = base / f"{variant}-{arch}-{suite}"
    work.mkdir(parents=True)
    cache_cold = base / f"cache-{variant}-{arch}-{suite}"
    r: dict = {"system": f"{variant} {arch} {suite}"}
    cfg = config(work, variant, arch, suite)
    if cold:
        r["cold s"], _ = pebuilder("build", cfg, env={"PEBUILDER_CACHE": str(cache_cold)})
        shutil.rmtree(work / "build")
        cache = cache_cold
    else:
        cache = Path(os.environ.get("PEBUILDER_CACHE", Path.home() / ".cache/pebuilder"))
        pebuilder("build", cfg, env={"PEBUILDER_CACHE": str(cache)})
        shutil.rmtree(work / "build")
    env = {"PEBUILDER_CACHE": str(cache)}
    r["warm cache s"], report = pebuilder("build", cfg, env=env)
    r["base s"] = next(s["seconds"] for s in report["stages"] if s["stage"] == "base")
    r["codes only s"], report = pebuilder("build", cfg, "--set", 'boot.codes=["pb.debug"]', env=env)
    r["codes reran"] = ",".join(s["stage"] for s in report["stages"] if s["ran"])
    iso = work / "out" / "live.iso"
    r["ISO MB"] = round(iso.stat().st_size / 1e6, 1)
    r["core.sqfs MB"] = round((work / "build/image/os/core.sqfs").stat().st_size / 1e6, 1)
    r["kernel MB"] = round((work / "build/image/boot/vmlinuz").stat().st_size / 1e6, 1)
    r["initrd MB"] = round((work / "build/image/boot/initrd.img").stat().st_size / 1e6, 1)
    r["kernel"] = json.loads((work / "build/.pebuilder/kernel.json").read_text())["kver"]
    firmware = "bios" if arch in ("amd64", "x86_64") else "uefi"
    res = boot(iso, expect=[MARKER], firmware=firmware, media="cdrom", arch=arch, timeout=300)
    r["boot to marker s"] = round(res.seen.get(MARKER, float("nan")), 1) if res.ok else f"failed: {res.exit_reason}"
    shutil.rmtree(cache_cold, ignore_errors=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="tiny,minbase")
    ap.add_argument("--arch", default="amd64,arm64")
    ap.add_argument("--suites", default="bookworm,trixie", help="Debian suites, compared side by side")
    ap.add_argument("--no-cold", action="store_true", help="skip the empty-cache builds (no mirror traffic)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="pb-bench-live-") as tmp:
        for arch in args.arch.split(","):
            for variant in args.variants.split(","):
                for suite in args.suites.split(","):
                    print(f"... {variant} {arch} {suite}", file=sys.stderr, flush=True)
                    rows.append(row(variant, arch, suite, Path(tmp), not args.no_cold))
        tc = tinycore_iso_mb(Path(tmp))
    cols = ["system", "kernel", "ISO MB", "core.sqfs MB", "kernel MB", "initrd MB", "cold s", "warm cache s",
            "base s", "codes only s", "boot to marker s", "codes reran"]
    print(f"\nthe seed's target: {SEED_TARGET}; a Tiny Core CorePure64 6.4.1-style ISO: {tc}; "
          "goals: tiny ISO <= 20 MB, minbase ISO <= 45 MB, warm-cache base <= 30 s, codes only <= 2 s\n")
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        print(" | ".join(str(round(r[c], 1) if isinstance(r.get(c), float) else r.get(c, "-")) for c in cols))


if __name__ == "__main__":
    main()
