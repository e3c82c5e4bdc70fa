"""Command line: `pebuilder <command>`. Expected failures print one message and exit non-zero."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pebuilder import __version__
from pebuilder.errors import Exit, PebuilderError

log = logging.getLogger("pebuilder")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ext-dir", action="append", type=Path, default=[], metavar="DIR",
                   help="folder with .tcz extensions (repeatable)")
    p.add_argument("--json", action="store_true", help="print the stage report as JSON")
    p.add_argument("--force", action="store_true", help="rerun every stage, ignoring the cache")
    p.add_argument("--menu-timeout", type=float, metavar="SECONDS",
                   help="boot menu timeout, overriding the template's (and the config's)")
    p.add_argument("--serial", action="store_true", help="boot menus and kernel on the serial console")
    p.add_argument("--mirror", action="append", default=[], metavar="URL",
                   help="Tiny Core mirror base URL (repeatable; tried in order)")
    p.add_argument("--offline", action="store_true", help="use only the download cache")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pebuilder", description=__doc__)
    ap.add_argument("--version", action="version", version=f"pebuilder {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every external command")
    sub = ap.add_subparsers(dest="command", required=True)

    sub.add_parser("doctor", help="list the external tools and what installs the missing ones")

    cs = sub.add_parser("config", help="work with config files")
    cs_sub = cs.add_subparsers(dest="config_command", required=True)
    show = cs_sub.add_parser("show", help="print the resolved build model")
    show.add_argument("config", type=Path)
    show.add_argument("--format", choices=("toml", "json"), default="toml")
    show.add_argument("--ext-dir", action="append", type=Path, default=[])

    ins = sub.add_parser("inspect", help="describe a template ISO")
    ins.add_argument("iso", type=Path)
    ins.add_argument("--json", action="store_true")

    rm = sub.add_parser("remaster", help="remaster.sh-compatible: CFG [checkimage|extractimage|bootcode|"
                                         "package|rebuild]")
    rm.add_argument("config", type=Path, nargs="?")
    rm.add_argument("function", nargs="?", default="rebuild")
    _add_common(rm)

    b = sub.add_parser("build", help="build the outputs of a pebuilder.toml (or the built-in default)")
    b.add_argument("config", type=Path, nargs="?")
    b.add_argument("--out", type=Path, help="output folder for the built-in default")
    b.add_argument("--check", action="store_true", help="boot the result under QEMU and check its marker")
    _add_common(b)

    dp = sub.add_parser("deps", help="resolve extensions as tce-load does: tree and load order")
    dp.add_argument("names", nargs="+")
    dp.add_argument("--ext-dir", action="append", type=Path, default=[])
    dp.add_argument("--mirror", action="append", default=[], metavar="URL")
    dp.add_argument("--repo", help="repository path on the mirror, e.g. 14.x/x86_64/tcz")
    dp.add_argument("--kernel", help="kernel version for -KERNEL.tcz names")
    dp.add_argument("--offline", action="store_true")

    mi = sub.add_parser("mirror", help="tools for hosting extensions")
    mi_sub = mi.add_subparsers(dest="mirror_command", required=True)
    mx = mi_sub.add_parser("index", help="write Tiny Core's repository files for a folder of .tcz")
    mx.add_argument("folder", type=Path)

    sv = sub.add_parser("serve", help="serve a folder or an image over HTTP (read-only)")
    sv.add_argument("path", type=Path)
    sv.add_argument("--bind", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8080)

    bt = sub.add_parser("boot", help="boot an image under QEMU and wait for text on its serial console")
    bt.add_argument("image", type=Path)
    bt.add_argument("--firmware", choices=("bios", "uefi"), default="bios")
    bt.add_argument("--as", dest="media", choices=("cdrom", "disk"), default=None)
    bt.add_argument("--arch", choices=("x86_64", "aarch64"), default="x86_64")
    bt.add_argument("--expect", action="append", default=[], metavar="TEXT")
    bt.add_argument("--timeout", type=float, default=180)
    bt.add_argument("--memory", type=int, default=512, help="MiB")
    bt.add_argument("--net", action="store_true", help="user-mode network, restricted to the host")
    bt.add_argument("--drive-if", choices=("ide", "virtio", "scsi"), default="ide")
    bt.add_argument("--log", type=Path, help="keep the serial console here")
    bt.add_argument("--script", type=Path, metavar="FILE",
                    help="a console conversation, one step a line: 'expect TEXT' or 'send TEXT' (\\n for Enter)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except PebuilderError as exc:
        print(f"pebuilder: error: {exc}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        print("pebuilder: interrupted", file=sys.stderr)
        return 130


def cmd_doctor(args) -> int:
    from pebuilder.runner import TOOLS, which

    missing = []
    for t in TOOLS.values():
        path = which(t.name)
        print(f"{'ok     ' if path else 'MISSING'} {t.name:<20} {path or '':<44} {t.purpose}")
        if not path:
            missing.append(t.package)
    if missing:
        print(f"\nInstall what is missing with:\n  apt-get install {' '.join(sorted(set(missing)))}")
        return int(Exit.TOOL_MISSING)
    print("\nAll tools are present.")
    return 0


def _load(path: Path, ext_dirs: list[Path], args=None):
    from pebuilder.config.native import load_any

    cfg = load_any(path, ext_dirs)
    if args is not None and getattr(args, "menu_timeout", None) is not None:
        if not 0 <= args.menu_timeout <= 3600:
            raise PebuilderError("--menu-timeout takes seconds from 0 to 3600", Exit.USAGE)
        cfg.menu_timeout = args.menu_timeout
    if args is not None and getattr(args, "serial", False):
        cfg.serial = True
    if args is not None and getattr(args, "mirror", None):
        cfg.mirrors = list(args.mirror) + cfg.mirrors
    if args is not None and getattr(args, "offline", False):
        cfg.offline = True
    for w in cfg.warnings:
        log.warning(w)
    return cfg


def cmd_config(args) -> int:
    cfg = _load(args.config, args.ext_dir)
    if args.format == "json":
        print(cfg.to_json())
    else:
        from pebuilder.config.emit import to_toml

        print(to_toml(cfg), end="")
    return 0


def cmd_inspect(args) -> int:
    import tempfile

    from pebuilder.formats import iso
    from pebuilder.tinycore import isolinux_cfg, template

    iso.check_readable(args.iso)
    with tempfile.TemporaryDirectory(prefix="pebuilder-inspect-") as tmp:
        tree = Path(tmp)
        iso.extract_files(args.iso, list(isolinux_cfg.CANDIDATES), tree)
        cfg_rel = template.find_isolinux_cfg(tree)
        parsed = isolinux_cfg.parse((tree / cfg_rel).read_text(errors="replace"))
        label = parsed.default_label()
        names = []
        if label:
            names = [n.lstrip("/") for n in [label.kernel or "", *label.initrds] if n]
        iso.extract_files(args.iso, names, tree)
        info = template.describe(tree)
    template.require_tinycore(info, args.iso)
    if args.json:
        print(info.to_json())
    else:
        print(f"template     {args.iso}")
        print(f"tiny core    {info.tc_version or 'unknown'} ({info.arch})")
        print(f"kernel       /{info.kernel} ({info.kernel_version or 'version unknown'})")
        print(f"initrds      {', '.join('/' + i for i in info.initrds)}")
        print(f"boot label   {info.label}: {' '.join(info.append)}")
        print(f"modules      {', '.join(info.module_dirs) or 'none in the initrd'}")
    return 0


def _report(engine, as_json: bool) -> None:
    if as_json:
        print(json.dumps(engine.report(), indent=2))


def _engine(cfg, args):
    from pebuilder.engine.progress import Progress
    from pebuilder.engine.stages import Engine

    try:
        cfg.work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PebuilderError(f"cannot create the work folder {cfg.work_dir}: {exc.strerror}; set temp_dir "
                             "(or [work] dir) to a writable place", Exit.TEMP_DIR) from None
    return Engine(cfg.work_dir / ".pebuilder", Progress(enabled=not args.json), force=args.force)


def cmd_remaster(args) -> int:
    from pebuilder.builds.remaster import FUNCTIONS, Remaster

    if args.config is None:
        print("usage: pebuilder remaster CFG [checkimage|extractimage|bootcode|package|rebuild]",
              file=sys.stderr)
        return int(Exit.USAGE)
    if args.function not in FUNCTIONS:
        print(f"pebuilder: error: unknown function {args.function!r}; use one of: {', '.join(FUNCTIONS)}",
              file=sys.stderr)
        return int(Exit.BAD_FUNCTION)
    cfg = _load(args.config, args.ext_dir, args)
    engine = _engine(cfg, args)
    Remaster(cfg, engine).run(args.function)
    _report(engine, args.json)
    return 0


def cmd_build(args) -> int:
    if args.config is None:
        from pebuilder.builds import default

        return default.build_and_check(args)
    from pebuilder.builds.remaster import Remaster

    cfg = _load(args.config, args.ext_dir, args)
    if cfg.template_iso is None:
        from pebuilder.builds import default

        return default.build_from_config(cfg, args)
    engine = _engine(cfg, args)
    Remaster(cfg, engine).run("rebuild")
    _report(engine, args.json)
    return 0


def _read_script(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PebuilderError(f"cannot read the script {path}: {exc.strerror}", Exit.USAGE) from None
    steps = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        kind, _, text = line.partition(" ")
        if kind not in ("expect", "send") or not text:
            raise PebuilderError(f"{path}:{n}: expected 'expect TEXT' or 'send TEXT', got {line!r}", Exit.USAGE)
        steps.append((kind, text.replace("\\n", "\n")))
    return steps


def cmd_boot(args) -> int:
    from pebuilder.boot.qemu import boot

    media = args.media or ("cdrom" if args.image.suffix == ".iso" else "disk")
    script = _read_script(args.script) if args.script else []
    if not args.expect and not script:
        print("pebuilder: error: give at least one --expect TEXT (or a --script) to wait for", file=sys.stderr)
        return int(Exit.USAGE)

    def seen(text: str, t: float) -> None:
        print(f"{t:7.1f} s  {text}", flush=True)

    res = boot(args.image, expect=args.expect, firmware=args.firmware, media=media, arch=args.arch,
               timeout=args.timeout, memory=args.memory, net=args.net, log_path=args.log,
               drive_if=args.drive_if, on_seen=seen, script=script)
    if res.ok:
        print(f"booted: all {len(res.seen)} expected texts seen in {res.seconds:.1f} s "
              f"(serial log: {res.log_path})")
        return 0
    print(f"pebuilder: error: boot check failed ({res.exit_reason}); not seen: "
          f"{', '.join(repr(m) for m in res.missing)}\n--- last lines of {res.log_path} ---\n{res.tail()}",
          file=sys.stderr)
    return int(Exit.BOOT_FAILED)


def cmd_deps(args) -> int:
    from pebuilder.config.model import tcz_name
    from pebuilder.tinycore.extensions import kernel_name, resolve
    from pebuilder.tinycore.mirror import Mirror, Sources
    from pebuilder.tinycore.repo_index import tree_text

    mirror = None
    if args.mirror:
        if not args.repo:
            raise PebuilderError("--repo is needed with --mirror (e.g. --repo 14.x/x86_64/tcz)", Exit.USAGE)
        mirror = Mirror(args.mirror, args.repo, offline=args.offline)
    src = Sources(args.ext_dir, mirror, args.kernel)
    roots = [kernel_name(tcz_name(n), args.kernel) for n in args.names]
    res = resolve(roots, src.deps_of)
    for r in roots:
        print(tree_text(r, res.tree), end="")
    print("load order: " + " ".join(res.order))
    for cycle in res.cycles:
        print("loop: " + " -> ".join(cycle), file=sys.stderr)
    if res.missing:
        for name, chain in res.missing.items():
            print(f"pebuilder: error: {name} not found (needed by {' -> '.join(chain[:-1]) or 'the command line'})",
                  file=sys.stderr)
        return int(Exit.EXTENSION_MISSING)
    return 0


def cmd_mirror(args) -> int:
    from pebuilder.tinycore.repo_index import index

    if not args.folder.is_dir():
        raise PebuilderError(f"{args.folder} is not a folder", Exit.USAGE)
    stats = index(args.folder)
    print(f"indexed {stats['extensions']} extensions in {args.folder} ({stats['with_deps']} with dependencies)")
    return 0


def cmd_serve(args) -> int:
    from pebuilder.net.serve import serve

    if not args.path.exists():
        raise PebuilderError(f"{args.path} does not exist", Exit.USAGE)
    try:
        serve(args.path, args.bind, args.port)
    except OSError as exc:
        raise PebuilderError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror}", Exit.USAGE) from None
    return 0


COMMANDS = {"doctor": cmd_doctor, "config": cmd_config, "inspect": cmd_inspect, "remaster": cmd_remaster,
            "build": cmd_build, "boot": cmd_boot, "deps": cmd_deps, "mirror": cmd_mirror, "serve": cmd_serve}
