"""Command-line flags generated from the key registry, and `--set table.key=value`.

Flags become entries in the config's TOML-shaped data before it is checked, so a value given on the
command line gets exactly the checks and messages of the same value in a file.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from pebuilder.config import registry
from pebuilder.errors import ConfigError

LIST_KINDS = ("strings", "paths")


def add_flags(p: argparse.ArgumentParser) -> None:
    for k in registry.cli_keys():
        dest = "set_" + k.path.replace(".", "_")
        assert k.cli is not None
        if k.kind == "bool":
            p.add_argument(k.cli, dest=dest, action="store_const", const=True, default=None, help=k.help)
        elif k.kind in LIST_KINDS:
            p.add_argument(k.cli, dest=dest, action="append", default=None, metavar="VALUE",
                           help=k.help + " (repeatable; comes before the config's)")
        else:
            p.add_argument(k.cli, dest=dest, default=None, metavar="VALUE", help=k.help)
    p.add_argument("--set", dest="set_generic", action="append", default=[], metavar="TABLE.KEY=VALUE",
                   help="set any config key (VALUE in TOML syntax, or a plain string)")


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def collect(args: argparse.Namespace) -> list[tuple[str, Any, bool]]:
    """(table.key, value, prepend-to-list) for every flag given."""
    out: list[tuple[str, Any, bool]] = []
    for k in registry.cli_keys():
        value = getattr(args, "set_" + k.path.replace(".", "_"), None)
        if value is None:
            continue
        if k.kind == "paths":
            out.append((k.path, [str(Path(v).resolve()) for v in value], True))
        elif k.kind == "strings":
            out.append((k.path, list(value), True))
        elif k.kind in ("float", "int"):
            out.append((k.path, _toml_value(value), False))
        else:
            out.append((k.path, value, False))
    known = {k.path for k in registry.all_keys()}
    for item in getattr(args, "set_generic", []):
        dotted, sep, text = item.partition("=")
        if not sep or dotted not in known:
            raise ConfigError(f"--set {item}: give TABLE.KEY=VALUE with a known key (see pebuilder config keys)")
        out.append((dotted, _toml_value(text), False))
    return out
