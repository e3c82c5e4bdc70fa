"""Commands that read a config: build, remaster, config show/keys."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pebuilder.cli import overrides
from pebuilder.errors import Exit, PebuilderError

log = logging.getLogger("pebuilder")


def load(path: Path, args: argparse.Namespace):
    from pebuilder.config import load_any

    cfg = load_any(path, overrides.collect(args))
    for w in cfg.warnings:
        log.warning(w)
    return cfg


def cmd_config(args: argparse.Namespace) -> int:
    from pebuilder.config import registry

    if args.config_command == "keys":
        if args.format == "json":
            print(json.dumps([k.__dict__ for k in registry.all_keys()], indent=2, default=str))
        else:
            print(registry.markdown_table(), end="")
        return 0
    cfg = load(args.config, args)
    data = registry.to_data(cfg)
    print(json.dumps(data, indent=2) if args.format == "json" else registry.to_toml(data), end="\n"
          if args.format == "json" else "")
    return 0


def _run(cfg, args: argparse.Namespace, function: str) -> int:
    from pebuilder.builds import for_config
    from pebuilder.engine.progress import Progress

    build = for_config(cfg)
    build.refresh = getattr(args, "refresh", False)
    if function not in build.functions:
        print(f"pebuilder: error: {function!r} is not a function of a {build.system} build; use one of: "
              f"{', '.join(build.functions)}", file=sys.stderr)
        return int(Exit.BAD_FUNCTION)
    engine = build.run(function, force=args.force, progress=Progress(enabled=not args.json))
    if args.json:
        print(json.dumps(engine.report(), indent=2))
    if getattr(args, "check", False):
        return check(build)
    return 0


def check(build) -> int:
    """Boot the first output under QEMU and wait for the build's marker on the serial console."""
    from pebuilder.boot.qemu import boot

    target, firmware, media, marker = build.check_target()

    def seen(text: str, t: float) -> None:
        print(f"{t:7.1f} s  {text}", flush=True)

    print(f"boot check: {target} ({build.arch()}, {firmware}, as {media}) ...", flush=True)
    res = boot(target, expect=[marker], firmware=firmware, media=media, arch=build.arch().name, timeout=240,
               on_seen=seen)
    if not res.ok:
        print(f"pebuilder: error: {target} did not boot ({res.exit_reason})\n{res.tail()}", file=sys.stderr)
        return int(Exit.BOOT_FAILED)
    print(f"boot check passed in {res.seconds:.1f} s")
    return 0


def cmd_remaster(args: argparse.Namespace) -> int:
    from pebuilder.builds.tinycore import FUNCTIONS

    if args.config is None:
        print(f"usage: pebuilder remaster CFG [{'|'.join(FUNCTIONS)}]", file=sys.stderr)
        return int(Exit.USAGE)
    if args.function not in FUNCTIONS:
        print(f"pebuilder: error: unknown function {args.function!r}; use one of: {', '.join(FUNCTIONS)}",
              file=sys.stderr)
        return int(Exit.BAD_FUNCTION)
    cfg = load(args.config, args)
    if cfg.kind != "tinycore":
        raise PebuilderError(f"{args.config} builds a {cfg.kind} system; remaster is for Tiny Core configs "
                             "(use pebuilder build)", Exit.USAGE)
    return _run(cfg, args, args.function)


def cmd_build(args: argparse.Namespace) -> int:
    if args.config is None:
        from pebuilder.builds.debian import default_config

        cfg = default_config((args.out or Path("out")).resolve(), overrides.collect(args))
        rc = _run(cfg, args, "rebuild")
        if rc == 0 and not args.check and not args.json and cfg.output.iso:
            print(f"built {cfg.output.iso.path}; check it boots with: pebuilder build --check")
        return rc
    return _run(load(args.config, args), args, "rebuild")


def cmd_ext(args: argparse.Namespace) -> int:
    from pebuilder.builds.debian import build_extensions, default_config
    from pebuilder.fsutil import human_size

    if args.base:
        cfg = load(args.base, args)
        if cfg.kind != "debian":
            raise PebuilderError(f"{args.base} builds a {cfg.kind} system; ext build needs a Debian live config",
                                 Exit.USAGE)
    else:
        cfg = default_config(Path("out").resolve(), overrides.collect(args))
    folder, built = build_extensions(cfg, args.packages, args.out.resolve(), args.comp, args.force)
    print(f"{len(built)} extensions in {folder}:")
    for b in built:
        deps = ", ".join(f"{d}.tcz" for d in b.deps) or "-"
        print(f"  {b.name + '.tcz':<32} {b.version:<24} .deb {human_size(b.deb_size):>9}  "
              f".tcz {human_size(b.tcz.stat().st_size):>9}  deps: {deps}")
    return 0
