"""`pebuilder pe ...`: tools around the PE (the RAM system of a netboot output).

inject-script writes the script that makes an existing Debian/Ubuntu host boot the PE once (see
pebuilder.outputs.inject); here only the arguments and where the text goes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pebuilder.errors import Exit, PebuilderError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `pe` command's arguments; kept here so the main parser only gains one line."""
    from pebuilder.outputs.inject import DEFAULT_TITLE

    pe = sub.add_parser("pe", help="PE tools: boot a netboot output's RAM system on an existing host")
    pe_sub = pe.add_subparsers(dest="pe_command", required=True)
    inj = pe_sub.add_parser("inject-script", help="write a sh script that makes a Debian/Ubuntu host boot the PE "
                                                  "once (download to /boot, GRUB entry, grub-reboot)")
    inj.add_argument("netboot_dir", type=Path, metavar="NETBOOT_DIR", help="the netboot output folder")
    inj.add_argument("--url", required=True, metavar="BASE_URL",
                     help="where the host downloads NETBOOT_DIR from, e.g. http://10.0.0.5:8080/ (pebuilder serve)")
    inj.add_argument("--out", type=Path, metavar="FILE", help="write the script here (default: standard output)")
    inj.add_argument("--title", default=DEFAULT_TITLE, help=f"GRUB menu title (default: {DEFAULT_TITLE})")
    inj.add_argument("--append", action="append", default=[], metavar="CODES",
                     help="more boot codes after the netboot folder's cmdline.txt, space-separated (repeatable)")


def cmd_pe(args: argparse.Namespace) -> int:
    if args.pe_command == "inject-script":
        return _inject_script(args)
    raise PebuilderError(f"unknown pe command {args.pe_command!r}", Exit.USAGE)


def _inject_script(args: argparse.Namespace) -> int:
    from pebuilder.outputs.inject import inject_script

    codes = [code for text in args.append for code in text.split()]
    script = inject_script(args.netboot_dir, args.url, args.title, codes)
    if args.out is None:
        sys.stdout.write(script)
        return 0
    out: Path = args.out
    if not out.parent.is_dir():
        raise PebuilderError(f"--out: folder {out.parent} does not exist", Exit.USAGE)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        tmp.write_text(script, encoding="utf-8")
        tmp.chmod(0o755)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PebuilderError(f"--out: cannot write {out}: {exc.strerror}", Exit.USAGE) from None
    print(f"wrote {out}; copy it to the host and run it there as root: sh {out.name}", file=sys.stderr)
    return 0
