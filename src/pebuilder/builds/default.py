"""`pebuilder build` with no config: the built-in Debian template, built and boot-checked.

This is the README's first command: it proves on a fresh machine that the whole chain (fetch,
initrd, hybrid ISO, QEMU) works, without Tiny Core's mirrors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pebuilder.boot.qemu import boot
from pebuilder.config.model import BuildConfig, IsoOutput
from pebuilder.debian.template import MARKER
from pebuilder.errors import Exit


def default_config(out: Path) -> BuildConfig:
    return BuildConfig(source=None, template_iso=None, work_dir=(out / "work").resolve(),
                       boot_codes=["console=ttyS0,115200"], menu_timeout=1, serial=True,
                       iso=IsoOutput(path=(out / "pebuilder-default.iso").resolve(), volume_id="PEBUILDER"))


def check(iso: Path, firmware: str = "bios") -> int:
    def seen(text: str, t: float) -> None:
        print(f"{t:7.1f} s  {text}", flush=True)

    print(f"boot check: {iso} ({firmware}, as CD) ...", flush=True)
    res = boot(iso, expect=[MARKER], firmware=firmware, media="cdrom", timeout=180, on_seen=seen)
    if not res.ok:
        print(f"pebuilder: error: {iso} did not boot ({res.exit_reason})\n{res.tail()}", file=sys.stderr)
        return int(Exit.BOOT_FAILED)
    print(f"boot check passed in {res.seconds:.1f} s")
    return 0


def build_from_config(cfg: BuildConfig, args) -> int:
    from pebuilder.builds.remaster import Remaster
    from pebuilder.cli import _engine

    engine = _engine(cfg, args)
    Remaster(cfg, engine).run("rebuild")
    if args.json:
        print(json.dumps(engine.report(), indent=2))
    if getattr(args, "check", False) and cfg.iso:
        return check(cfg.iso.path)
    return 0


def build_and_check(args) -> int:
    cfg = default_config(args.out or Path("out"))
    rc = build_from_config(cfg, args)
    if rc == 0 and cfg.iso and not args.check and not args.json:
        print(f"built {cfg.iso.path}; boot it with: pebuilder boot {cfg.iso.path} --expect '{MARKER}'")
    return rc
