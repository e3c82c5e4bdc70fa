"""Commands that need no config: doctor, inspect, boot, deps, mirror, serve."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from pebuilder.errors import Exit, PebuilderError


def cmd_doctor(args: argparse.Namespace) -> int:
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


def cmd_inspect(args: argparse.Namespace) -> int:
    from pebuilder.formats import iso
    from pebuilder.tinycore import isolinux_cfg, template

    iso.check_readable(args.iso)
    with tempfile.TemporaryDirectory(prefix="pebuilder-inspect-") as tmp:
        tree = Path(tmp)
        iso.extract_files(args.iso, list(isolinux_cfg.CANDIDATES), tree)
        cfg_rel = template.find_isolinux_cfg(tree)
        parsed = isolinux_cfg.parse((tree / cfg_rel).read_text(errors="replace"))
        label = parsed.default_label()
        names = [n.lstrip("/") for n in [label.kernel or "", *label.initrds] if n] if label else []
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


def _read_script(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PebuilderError(f"cannot read the script {path}: {exc}", Exit.USAGE) from None
    steps = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        kind, _, text = line.partition(" ")
        if kind not in ("expect", "send") or not text:
            raise PebuilderError(f"{path}:{n}: expected 'expect TEXT' or 'send TEXT', got {line!r}", Exit.USAGE)
        steps.append((kind, text.replace("\\n", "\n")))
    return steps


def cmd_boot(args: argparse.Namespace) -> int:
    from pebuilder import arch
    from pebuilder.boot.qemu import boot

    target = arch.parse(args.arch)
    firmware = args.firmware or ("bios" if target.bios else "uefi")
    media = args.media or ("cdrom" if args.image.suffix == ".iso" else "network" if args.image.is_dir() else "disk")
    script = _read_script(args.script) if args.script else []
    if not args.expect and not script:
        print("pebuilder: error: give at least one --expect TEXT (or a --script) to wait for", file=sys.stderr)
        return int(Exit.USAGE)

    def seen(text: str, t: float) -> None:
        print(f"{t:7.1f} s  {text}", flush=True)

    res = boot(args.image, expect=args.expect, firmware=firmware, media=media, arch=target.name,
               timeout=args.timeout, memory=args.memory, net=args.net, log_path=args.log,
               drive_if=args.drive_if, on_seen=seen, script=script, nic=args.nic)
    if res.ok:
        print(f"booted: all {len(res.seen)} expected texts seen in {res.seconds:.1f} s "
              f"(serial log: {res.log_path})")
        return 0
    print(f"pebuilder: error: boot check failed ({res.exit_reason}); not seen: "
          f"{', '.join(repr(m) for m in res.missing)}\n--- last lines of {res.log_path} ---\n{res.tail()}",
          file=sys.stderr)
    return int(Exit.BOOT_FAILED)


def cmd_deps(args: argparse.Namespace) -> int:
    from pebuilder.formats.tcz import check_name, kernel_name, resolve, tcz_name
    from pebuilder.tinycore.mirror import Mirror, Sources
    from pebuilder.tinycore.repo_index import tree_text

    mirror = None
    if args.mirror:
        if not args.repo:
            raise PebuilderError("--repo is needed with --mirror (e.g. --repo 14.x/x86_64/tcz)", Exit.USAGE)
        mirror = Mirror(args.mirror, args.repo, offline=args.offline)
    src = Sources(args.ext_dir, mirror, args.kernel)
    roots = [check_name(kernel_name(tcz_name(n), args.kernel), "command line") for n in args.names]
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


def cmd_mirror(args: argparse.Namespace) -> int:
    from pebuilder.tinycore.repo_index import index

    if not args.folder.is_dir():
        raise PebuilderError(f"{args.folder} is not a folder", Exit.USAGE)
    stats = index(args.folder)
    print(f"indexed {stats['extensions']} extensions in {args.folder} ({stats['with_deps']} with dependencies)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pebuilder.net.serve import serve

    if not args.path.exists():
        raise PebuilderError(f"{args.path} does not exist", Exit.USAGE)
    if args.max_connections < 1:
        raise PebuilderError(f"--max-connections {args.max_connections}: give 1 or more", Exit.USAGE)
    try:
        serve(args.path, args.bind, args.port, max_connections=args.max_connections)
    except OSError as exc:
        raise PebuilderError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror}", Exit.USAGE) from None
    return 0
