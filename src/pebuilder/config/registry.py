"""Everything generated from the key declarations in model.py: reading, writing, flags, docs.

`parse(data)` turns a TOML-shaped dict into a Config, checking every key; `to_data(cfg)` is its
exact inverse (what `config show` prints), so `parse(to_data(cfg)) == cfg` for any config; CLI
overrides are applied to the dict before parsing, so they get the same checks and messages.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from pebuilder import arch as archs
from pebuilder.config import model as m
from pebuilder.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """One key as the docs and the CLI see it."""

    path: str  # e.g. "boot.timeout", "output.disk[].size"
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    range: tuple[float, float] | None = None
    cli: str | None = None
    required: bool = False
    inert: str | None = None  # why the key changes nothing inside an image (None: it does)
    only: str | None = None  # the one system that reads it


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def all_keys(cls: type = m.Config, prefix: str = "") -> Iterator[KeyInfo]:
    """Every key, depth first, in declaration order."""
    for f in fields(cls):
        kind = f.metadata.get("kind")
        if kind in (None, "internal"):
            continue
        path = f"{prefix}{f.name}"
        if kind in ("table", "optional_table"):
            yield from all_keys(f.metadata["cls"], path + ".")
        elif kind == "tables":
            yield from all_keys(f.metadata["cls"], path + "[].")
        else:
            yield KeyInfo(path, kind, _default(f), f.metadata["help"], tuple(f.metadata.get("choices", ())),
                          f.metadata.get("range"), f.metadata.get("cli"), f.metadata.get("required", False),
                          f.metadata.get("inert"), f.metadata.get("only"))


def inert_keys() -> set[str]:
    """Keys that change nothing inside an image: any stage may read them, none reruns for them."""
    return {k.path for k in all_keys() if k.inert}


# -- reading --------------------------------------------------------------------------------------

# Keys earlier versions of pebuilder read, and where their meaning lives now.
RENAMED = {
    ("kernel", "debian"): "[kernel] package",
    ("template", "builtin"): 'system = "debian" (at the top level)',
}


def _hint(label: str, key_name: str, known: dict[str, Any]) -> str:
    """What the user probably meant: a key's new name or a near spelling."""
    import difflib

    if (label, key_name) in RENAMED:
        return f" (renamed: use {RENAMED[label, key_name]})"
    close = difflib.get_close_matches(key_name, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


class Reader:
    """Converts one TOML-shaped dict into the model; every message names the file and the key."""

    def __init__(self, source: Path | None, base: Path):
        self.source = source
        self.base = base

    def fail(self, label: str, msg: str) -> ConfigError:
        where = f"{self.source}: " if self.source else ""
        return ConfigError(f"{where}{label}: {msg}")

    def section(self, cls: type, node: Any, label: str) -> Any:
        if not isinstance(node, dict):
            raise self.fail(label, f"must be a table, got {type(node).__name__}")
        known = {f.name: f for f in fields(cls) if f.metadata.get("kind") not in (None, "internal")}
        for k in node:
            if k not in known:
                where = f"[{label}]" if label else "the top level"
                raise self.fail(f"{label}.{k}" if label else k,
                                f"unknown key{_hint(label, k, known)}; "
                                f"accepted in {where}: {', '.join(known)}")
        values: dict[str, Any] = {}
        for name, f in known.items():
            sub = f"{label}.{name}" if label else name
            if name not in node:
                if f.metadata.get("required"):
                    raise self.fail(sub, f"missing; {f.metadata['help']}")
                default = _default(f)
                if f.metadata.get("kind") == "path" and isinstance(default, Path) and str(default) != ".":
                    values[name] = (self.base / default).resolve()  # defaults are relative to the config too
                elif f.metadata.get("kind") == "table":  # an absent table: its path defaults resolve too
                    values[name] = self.section(f.metadata["cls"], {}, sub)
                continue
            values[name] = self.value(f, node[name], sub)
        return cls(**values)

    def value(self, f: dataclasses.Field, raw: Any, label: str) -> Any:
        meta = f.metadata
        kind = meta["kind"]
        if kind == "table":
            return self.section(meta["cls"], raw, label)
        if kind == "optional_table":
            return self.section(meta["cls"], raw, label)
        if kind == "tables":
            if isinstance(raw, dict):
                raw = [raw]
            if not isinstance(raw, list):
                raise self.fail(label, f"use [[{label}]] tables")
            return [self.section(meta["cls"], t, f"{label}[{i}]") for i, t in enumerate(raw)]
        value = CONVERTERS[kind](self, raw, label, dict(meta))
        self.check(value, label, dict(meta))
        return value

    def check(self, value: Any, label: str, meta: dict[str, Any]) -> None:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is None or isinstance(item, (bool, Path)):
                continue
            choices = meta.get("choices")
            if choices and item not in choices:
                raise self.fail(label, f"got {item!r}; accepted values: {', '.join(choices)}")
            rng = meta.get("range")
            if rng and isinstance(item, (int, float)) and not rng[0] <= item <= rng[1]:
                raise self.fail(label, f"{item} is out of range; give a number from {rng[0]} to {rng[1]}")
            check = meta.get("check")
            if check and isinstance(item, str):
                msg = check(item)
                if msg:
                    shown = f"item {item!r}: " if isinstance(value, list) and len(repr(item)) < 80 else ""
                    raise self.fail(label, shown + msg)
        whole = meta.get("whole")
        if whole and isinstance(value, list):
            msg = whole(value)
            if msg:
                raise self.fail(label, msg)

    # converters: raw TOML value -> model value

    def _type(self, raw: Any, label: str, want: type | tuple[type, ...], what: str) -> Any:
        if isinstance(raw, bool) and want is not bool:
            raise self.fail(label, f"expected {what}, got {raw!r}")
        if not isinstance(raw, want):
            raise self.fail(label, f"expected {what}, got {type(raw).__name__} {_short(raw)}")
        return raw

    def conv_str(self, raw: Any, label: str, meta: dict) -> str:
        value = self._type(raw, label, str, "a string")
        if "\0" in value:
            raise self.fail(label, "holds a NUL byte")
        return value

    def conv_int(self, raw: Any, label: str, meta: dict) -> int:
        return self._type(raw, label, int, "a whole number")

    def conv_float(self, raw: Any, label: str, meta: dict) -> float:
        value = float(self._type(raw, label, (int, float), "a number"))
        if not math.isfinite(value):
            raise self.fail(label, f"{raw!r} is not a finite number")
        return value

    def conv_bool(self, raw: Any, label: str, meta: dict) -> bool:
        return self._type(raw, label, bool, "true or false")

    def conv_strings(self, raw: Any, label: str, meta: dict) -> list[str]:
        if label == "kernel.modules" and isinstance(raw, str) and "/" in raw:
            raise self.fail(label, f"is a list of module names; the folder {_short(raw)} (lib/modules/<version> "
                                   "for vmlinuz) goes in [kernel] modules_dir")
        self._type(raw, label, list, "a list of strings")
        for item in raw:
            if not isinstance(item, str) or not item.strip():
                raise self.fail(label, f"expected a list of non-empty strings, got item {_short(item)}")
            if "\0" in item:
                raise self.fail(label, "an item holds a NUL byte")
        return list(raw)

    def conv_path(self, raw: Any, label: str, meta: dict) -> Path:
        text = self.conv_str(raw, label, meta)
        if not text.strip():
            raise self.fail(label, "is empty; give a path")
        return (self.base / text).resolve()

    def conv_paths(self, raw: Any, label: str, meta: dict) -> list[Path]:
        return [(self.base / p).resolve() for p in self.conv_strings(raw, label, meta)]

    def conv_size(self, raw: Any, label: str, meta: dict) -> int:
        if not isinstance(raw, (str, int)) or isinstance(raw, bool):
            raise self.fail(label, f"expected a size such as \"20G\", got {_short(raw)}")
        try:
            return m.parse_size(raw)
        except ValueError as exc:
            raise self.fail(label, str(exc)) from None

    def conv_mode(self, raw: Any, label: str, meta: dict) -> int:
        text = self.conv_str(raw, label, meta)
        from pebuilder.config.validate import mode

        msg = mode(text)
        if msg:
            raise self.fail(label, msg)
        return int(text, 8)

    def conv_level(self, raw: Any, label: str, meta: dict) -> int | str:
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise self.fail(label, f"expected a level name or number, got {_short(raw)}")
        return raw

    def conv_copy2fs(self, raw: Any, label: str, meta: dict) -> bool | list[str]:
        if isinstance(raw, bool):
            return raw
        return self.conv_strings(raw, label, meta)

    def conv_arch(self, raw: Any, label: str, meta: dict) -> str:
        from pebuilder import arch

        text = self.conv_str(raw, label, meta)
        try:
            return arch.parse(text).name
        except ConfigError as exc:
            raise self.fail(label, str(exc)) from None

    def conv_bundle(self, raw: Any, label: str, meta: dict) -> str:
        text = self.conv_str(raw, label, meta)
        return text if text == "host" else str(self.conv_path(text, label, meta))


CONVERTERS = {
    "str": Reader.conv_str, "int": Reader.conv_int, "float": Reader.conv_float, "bool": Reader.conv_bool,
    "strings": Reader.conv_strings, "path": Reader.conv_path, "paths": Reader.conv_paths,
    "size": Reader.conv_size, "mode": Reader.conv_mode, "level": Reader.conv_level,
    "copy2fs": Reader.conv_copy2fs, "arch": Reader.conv_arch, "bundle": Reader.conv_bundle,
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse(data: dict[str, Any], source: Path | None, base: Path | None = None) -> m.Config:
    """A checked Config from TOML-shaped data; relative paths are taken from `base` (the config's folder)."""
    reader = Reader(source, base or (source.parent if source else Path.cwd()))
    if not data:
        raise reader.fail("config", "is empty. A minimal pebuilder.toml is either\n"
                          "    [base]\n    variant = \"tiny\"            # a Debian-based live system\n"
                          "or\n    [template]\n    iso = \"CorePure64.iso\"      # a Tiny Core remaster")
    ssh_given = isinstance(data.get("ssh"), dict)
    iso_given = isinstance(data.get("output"), dict) and "iso" in data["output"]
    cfg: m.Config = reader.section(m.Config, data, "")
    cfg.source = source
    if ssh_given and "enable" not in data["ssh"]:
        cfg.ssh.enable = True
    if cfg.output.iso is None and not iso_given and not cfg.output.disk and cfg.output.netboot is None:
        cfg.output.iso = m.IsoOutput(path=(reader.base / "pebuilder.iso").resolve())
    cross_checks(cfg, reader)
    cfg.warnings += ignored_keys(data, cfg.kind, source)
    return cfg


SYSTEM_NAMES = {"tinycore": "Tiny Core remaster", "debian": "Debian live system"}


def ignored_keys(data: dict[str, Any], kind: str, source: Path | None) -> list[str]:
    """Keys set in the config that only the other system reads: said once, not silently dropped."""
    only = {k.path: k.only for k in all_keys() if k.only}
    out = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for k, x in node.items():
            path = prefix + k
            system = only.get(path)
            if system and system != kind:
                where = f"{source}: " if source else ""
                out.append(f"{where}{path}: only the {SYSTEM_NAMES[system]} reads this key; this "
                           f"{SYSTEM_NAMES[kind]} ignores it")
            elif isinstance(x, dict):
                walk(x, path + ".")
            elif isinstance(x, list):
                for item in x:
                    if isinstance(item, dict):
                        walk(item, path + "[].")

    walk(data, "")
    return out


def cross_checks(cfg: m.Config, r: Reader) -> None:
    """Rules that tie several keys together."""
    if cfg.system == "tinycore" and cfg.template.iso is None:
        raise r.fail("template.iso", "missing; system = \"tinycore\" remasters a Tiny Core ISO")
    if cfg.boot.secure_boot:
        if cfg.kind != "debian":
            raise r.fail("boot.secure_boot", "is for the Debian live system: a Tiny Core remaster has no signed "
                         "boot chain; remove it or use system = \"debian\"")
        if cfg.base.arch and archs.parse(cfg.base.arch) is not archs.X86_64:
            raise r.fail("boot.secure_boot", f"is supported for amd64 only (Debian's signed shim and GRUB for "
                         f"{cfg.base.arch} are not wired up yet); remove it or build for amd64")
    pv = cfg.provision
    if pv is not None:
        if bool(pv.image) == bool(pv.install):
            raise r.fail("provision", "give either image = URL (with sha256) or install = \"self\" | \"debian\"")
        if pv.image and not pv.sha256:
            raise r.fail("provision.sha256", "missing; an image is only written once its sha256 is known")
        if pv.install and cfg.kind != "debian":
            raise r.fail("provision.install", f"install = \"{pv.install}\" is for the Debian live system; a Tiny "
                         "Core PE provisions from image = URL")
        if pv.kernel and not pv.kernel.startswith("linux-image-"):
            raise r.fail("provision.kernel", f"{pv.kernel!r} is not a Debian kernel package (linux-image-...)")
    if cfg.output.netboot and cfg.output.netboot.mode == "fetch" and not cfg.output.netboot.url:
        raise r.fail("output.netboot.url", "missing; fetch mode downloads /os and /ext from this URL at boot")
    if cfg.kernel.vmlinuz and cfg.kernel.package:
        raise r.fail("kernel", "give either package or vmlinuz (+ modules_dir), not both")
    if cfg.kernel.package and not cfg.kernel.package.startswith("linux-image-"):
        raise r.fail("kernel.package", f"{cfg.kernel.package!r} is not a Debian kernel package (linux-image-...)")
    if cfg.kernel.vmlinuz and not cfg.kernel.modules_dir:
        raise r.fail("kernel.modules_dir", "missing; give the folder holding lib/modules/<version> for vmlinuz")
    names: set[str] = set()
    uids: set[int] = set()
    for i, u in enumerate(cfg.users):
        label = f"users[{i}]"
        secrets = [k for k in ("password_hash", "password_file", "password_env") if getattr(u, k) is not None]
        if len(secrets) > 1:
            raise r.fail(label, f"give one of password_hash, password_file, password_env (got {', '.join(secrets)})")
        if u.name in names:
            raise r.fail(f"{label}.name", f"{u.name!r} is given twice")
        if u.uid in uids:
            raise r.fail(f"{label}.uid", f"uid {u.uid} is given to two users")
        names.add(u.name)
        uids.add(u.uid)
    for i, d in enumerate(cfg.output.disk):
        if d.table == "msdos" and d.size > (2 << 40):
            raise r.fail(f"output.disk[{i}].size", "an msdos table cannot address more than 2 TiB; use table = \"gpt\"")
    outs = cfg.outputs()
    for p in outs:
        if outs.count(p) > 1:
            raise r.fail("output", f"two outputs write to the same path {p}")
    from pebuilder.formats import compress

    try:
        getattr(compress, "check_level", lambda kind, level: None)(cfg.initrd.compression or "gzip", cfg.initrd.level)
    except ConfigError as exc:
        raise r.fail("initrd.level", str(exc)) from None


# -- writing --------------------------------------------------------------------------------------

def to_data(cfg: Any, cls: type | None = None) -> dict[str, Any]:
    """The inverse of parse: every key whose value is not the default, as TOML-shaped data."""
    from pebuilder.config.reads import unwrap

    cfg = unwrap(cfg)  # a build's view of its config: reading it whole is a read of the whole table
    cls = cls or type(cfg)
    out: dict[str, Any] = {}
    for f in fields(cls):
        kind = f.metadata.get("kind")
        if kind in (None, "internal"):
            continue
        value = getattr(cfg, f.name)
        if kind == "table":
            sub = to_data(value)
            if sub:
                out[f.name] = sub
        elif kind == "optional_table":
            if value is not None:
                out[f.name] = to_data(value)
        elif kind == "tables":
            if value:
                out[f.name] = [to_data(t) for t in value]
        elif value != _default(f) or f.metadata.get("required"):
            out[f.name] = _plain(value, kind)
    return out


def _plain(value: Any, kind: str) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_plain(x, kind) for x in value]
    if kind == "mode" and value is not None:
        return f"{value:04o}"
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(x) for x in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def to_toml(data: dict[str, Any]) -> str:
    """TOML text for data made by to_data (scalars first, then tables, then arrays of tables)."""
    lines: list[str] = []

    def emit(node: dict[str, Any], name: str) -> None:
        scalars = {k: x for k, x in node.items() if not isinstance(x, dict) and not _is_tables(x)}
        if name and (scalars or not any(isinstance(x, dict) or _is_tables(x) for x in node.values())):
            lines.extend(["", f"[{name}]"])
        lines.extend(f"{k} = {_toml_value(x)}" for k, x in scalars.items())
        for k, x in node.items():
            full = f"{name}.{k}" if name else k
            if isinstance(x, dict):
                emit(x, full)
            elif _is_tables(x):
                for t in x:
                    lines.extend(["", f"[[{full}]]"])
                    lines.extend(f"{kk} = {_toml_value(xx)}" for kk, xx in t.items())

    emit(data, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_tables(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(isinstance(t, dict) for t in x)


# -- overrides and docs ---------------------------------------------------------------------------

def set_path(data: dict[str, Any], dotted: str, value: Any, append: bool = False) -> None:
    """Put a value into TOML-shaped data at `table.key` (used by CLI flags and --set)."""
    *tables, last = dotted.split(".")
    node = data
    for t in tables:
        nxt = node.setdefault(t, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{dotted}: {t} is not a table")
        node = nxt
    if append:
        old = node.get(last, [])
        node[last] = [*value, *(old if isinstance(old, list) else [old])]
    else:
        node[last] = value


def cli_keys() -> list[KeyInfo]:
    return [k for k in all_keys() if k.cli]


def markdown_table() -> str:
    """The README's key table."""
    rows = ["| key | type | default | what it does |", "|---|---|---|---|"]
    for k in all_keys():
        default = "(required)" if k.required else _doc_default(k)
        kind = k.kind + (f": {' / '.join(k.choices)}" if k.choices else "")
        if k.range:
            kind += f" {k.range[0]:g}–{k.range[1]:g}"
        flag = f" (`{k.cli}`)" if k.cli else ""
        only = f" *{SYSTEM_NAMES[k.only]} only.*" if k.only else ""
        inert = f" *Changes nothing in the image: {k.inert}.*" if k.inert else ""
        rows.append(f"| `{k.path}` | {kind} | {default} | {k.help}{flag}{only}{inert} |")
    return "\n".join(rows) + "\n"


def _doc_default(k: KeyInfo) -> str:
    d = k.default
    if d is None or d == []:
        return "–"
    if k.kind == "size" and isinstance(d, int):
        for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
            if d % (1 << shift) == 0:
                return f"`{d >> shift}{unit}`"
    return f"`{_toml_value(_plain(d, k.kind))}`"
