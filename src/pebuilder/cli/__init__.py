"""Command line: `pebuilder <command>`. Expected failures print one message and exit non-zero.

argparse here, one function per command in the modules beside; no build logic and no branching
on systems (builds.for_config picks the build).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pebuilder import __version__
from pebuilder.cli import builds, overrides, pe, tools
from pebuilder.errors import PebuilderError

log = logging.getLogger("pebuilder")


def _build_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the stage report as JSON")
    p.add_argument("--force", action="store_true", help="rerun every stage, ignoring the cache")
    p.add_argument("--refresh", action="store_true",
                   help="Debian system: resolve the packages again against the mirror (newer versions)")
    overrides.add_flags(p)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pebuilder", description=__doc__.split("\n")[0])
    ap.add_argument("--version", action="version", version=f"pebuilder {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every external command")
    sub = ap.add_subparsers(dest="command", required=True)

    sub.add_parser("doctor", help="list the external tools and what installs the missing ones")

    cs = sub.add_parser("config", help="work with config files")
    cs_sub = cs.add_subparsers(dest="config_command", required=True)
    show = cs_sub.add_parser("show", help="print a config (pebuilder.toml or ezremaster.cfg) as pebuilder.toml")
    show.add_argument("config", type=Path)
    show.add_argument("--format", choices=("toml", "json"), default="toml")
    overrides.add_flags(show)
    keys = cs_sub.add_parser("keys", help="every config key with its type, default and meaning")
    keys.add_argument("--format", choices=("markdown", "json"), default="markdown")

    ins = sub.add_parser("inspect", help="describe a template ISO")
    ins.add_argument("iso", type=Path)
    ins.add_argument("--json", action="store_true")

    rm = sub.add_parser("remaster", help="remaster.sh-compatible: CFG [checkimage|extractimage|bootcode|"
                                         "package|rebuild|packagehd]")
    rm.add_argument("config", type=Path, nargs="?")
    rm.add_argument("function", nargs="?", default="rebuild")
    _build_flags(rm)

    b = sub.add_parser("build", help="build the outputs of a pebuilder.toml (or the built-in default)")
    b.add_argument("config", type=Path, nargs="?")
    b.add_argument("--out", type=Path, help="output folder for the built-in default (default: out)")
    b.add_argument("--check", action="store_true", help="boot the result under QEMU and check its marker")
    _build_flags(b)

    ex = sub.add_parser("ext", help="extensions")
    ex_sub = ex.add_subparsers(dest="ext_command", required=True)
    eb = ex_sub.add_parser("build", help="Debian packages as extensions (NAME.tcz + .dep, .md5.txt, .info, .list)")
    eb.add_argument("packages", nargs="+", metavar="PKG")
    eb.add_argument("--base", type=Path, metavar="CONFIG", help="the live system's config (default: the built-in "
                    "tiny system); dependencies its base holds are not built")
    eb.add_argument("--out", type=Path, default=Path("ext-repo"),
                    help="repository folder; files go to OUT/<suite>/<arch>/tcz (default: ext-repo)")
    eb.add_argument("--comp", choices=("gzip", "xz", "zstd"), default="gzip",
                    help="squashfs compression (gzip: what every kernel, Tiny Core's too, can mount)")
    eb.add_argument("--force", action="store_true")
    overrides.add_flags(eb)

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
    sv.add_argument("--max-connections", type=int, default=128, metavar="N",
                    help="connections served at once; more get 503 with Retry-After (default 128)")

    bt = sub.add_parser("boot", help="boot an image under QEMU and wait for text on its serial console")
    bt.add_argument("image", type=Path)
    bt.add_argument("--firmware", choices=("bios", "uefi", "uefi-secure"), default=None,
                    help="default: bios where the architecture has it, else uefi; uefi-secure: OVMF with "
                         "Microsoft's keys enrolled, Secure Boot on")
    bt.add_argument("--as", dest="media", choices=("cdrom", "disk", "network"), default=None,
                    help="network: IMAGE is a netboot folder, loaded by iPXE over QEMU's TFTP")
    bt.add_argument("--arch", default="x86_64", help="x86_64/amd64 or aarch64/arm64")
    bt.add_argument("--expect", action="append", default=[], metavar="TEXT")
    bt.add_argument("--timeout", type=float, default=180)
    bt.add_argument("--memory", type=int, default=512, help="MiB")
    bt.add_argument("--net", action="store_true", help="user-mode network, restricted to the host")
    bt.add_argument("--nic", default="", metavar="OPTS",
                    help="more user-mode network options, e.g. guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:8080 "
                         "or hostfwd=tcp:127.0.0.1:2222-:22 (implies --net)")
    bt.add_argument("--drive-if", choices=("ide", "virtio", "scsi"), default="ide")
    bt.add_argument("--log", type=Path, help="keep the serial console here")
    bt.add_argument("--script", type=Path, metavar="FILE",
                    help="a console conversation, one step a line: 'expect TEXT' or 'send TEXT' (\\n for Enter)")
    pe.add_parser(sub)
    return ap


COMMANDS = {"doctor": tools.cmd_doctor, "config": builds.cmd_config, "inspect": tools.cmd_inspect,
            "remaster": builds.cmd_remaster, "build": builds.cmd_build, "boot": tools.cmd_boot,
            "deps": tools.cmd_deps, "ext": builds.cmd_ext, "mirror": tools.cmd_mirror, "serve": tools.cmd_serve,
            "pe": pe.cmd_pe}


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
