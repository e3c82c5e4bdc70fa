"""pebuilder.toml: the native config, a superset of ezremaster.cfg.

Every key is checked: an unknown one or a wrong type is an error that names the key and what it
accepts, since a silently ignored typo in a boot config costs a whole build-and-boot cycle.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pebuilder.config.model import PLACEMENTS, BuildConfig, ExtensionSpec, IsoOutput, tcz_name
from pebuilder.errors import ConfigError, Exit
from pebuilder.formats.compress import COMPRESSIONS

SCHEMA: dict[str, set[str]] = {
    "template": {"iso", "builtin"},
    "work": {"dir"},
    "extensions": {"dirs", *PLACEMENTS, "scripts", "copy2fs"},
    "boot": {"codes", "timeout", "serial"},
    "initrd": {"compression", "level"},
    "output": {"iso"},
    "output.iso": {"path", "volume_id", "uefi"},
}
BUILTIN_TEMPLATES = ("debian",)


class _Reader:
    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {msg}")

    def table(self, name: str) -> dict[str, Any]:
        node: Any = self.data
        for part in name.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if not isinstance(node, dict):
            raise self.fail(name, "must be a table")
        allowed = SCHEMA[name]
        for key in node:
            if key not in allowed:
                raise self.fail(f"{name}.{key}", f"unknown key; accepted keys in [{name}]: "
                                f"{', '.join(sorted(allowed))}")
        return node

    def get(self, table: str, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        node = self.table(table)
        if key not in node:
            return default
        value = node[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.fail(f"{table}.{key}", f"expected a number, got {value!r}")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(f"{table}.{key}", f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def strings(self, table: str, key: str) -> list[str]:
        value = self.get(table, key, list, [])
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"{table}.{key}", f"expected a list of non-empty strings, got item {item!r}")
        return value


def load(path: Path, ext_dirs: list[Path] | None = None) -> BuildConfig:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc})", Exit.CONFIG_UNREADABLE) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, path, ext_dirs or [])


def parse(data: dict[str, Any], path: Path, ext_dirs: list[Path]) -> BuildConfig:
    r = _Reader(path, data)
    for top in data:
        if top not in ("template", "work", "extensions", "boot", "initrd", "output"):
            raise r.fail(top, "unknown table; accepted: template, work, extensions, boot, initrd, output")
    base = path.parent
    iso = r.get("template", "iso", str)
    builtin = r.get("template", "builtin", str)
    if iso and builtin:
        raise r.fail("template", "give either iso or builtin, not both")
    if builtin and builtin not in BUILTIN_TEMPLATES:
        raise r.fail("template.builtin", f"unknown template {builtin!r}; accepted: {', '.join(BUILTIN_TEMPLATES)}")
    work = base / r.get("work", "dir", str, "build")
    exts = [ExtensionSpec(tcz_name(n), p)  # type: ignore[arg-type]
            for p in PLACEMENTS for n in r.strings("extensions", p)]
    scripts = r.get("extensions", "scripts", str, "run")
    if scripts not in ("run", "ignore"):
        raise r.fail("extensions.scripts", f"got {scripts!r}; accepted values: run, ignore")
    copy2fs = r.get("extensions", "copy2fs", (bool, list), False)
    if isinstance(copy2fs, list):
        copy2fs = [tcz_name(x) for x in r.strings("extensions", "copy2fs")]
    timeout = r.get("boot", "timeout", (int, float))
    if timeout is not None and not 0 <= timeout <= 3600:
        raise r.fail("boot.timeout", f"{timeout} is out of range; give seconds from 0 to 3600")
    codes = r.strings("boot", "codes")
    for c in codes:
        if any(ch.isspace() for ch in c):
            raise r.fail("boot.codes", f"{c!r} holds white space; give one boot code per list item")
    comp = r.get("initrd", "compression", str, "gzip")
    if comp not in COMPRESSIONS:
        raise r.fail("initrd.compression", f"got {comp!r}; accepted values: {', '.join(COMPRESSIONS)}")
    level = r.get("initrd", "level", int, 9)
    if not 0 <= level <= 22:
        raise r.fail("initrd.level", f"{level} is out of range (gzip 1-9, xz 0-9, zstd 1-22)")
    iso_out = None
    r.table("output")
    out = r.table("output.iso")
    if out or not data.get("output"):
        vol = r.get("output.iso", "volume_id", str, "PEBUILDER")
        if not 1 <= len(vol) <= 32:
            raise r.fail("output.iso.volume_id", "must be 1 to 32 characters")
        iso_out = IsoOutput(path=base / r.get("output.iso", "path", str, "pebuilder.iso"), volume_id=vol,
                            uefi=r.get("output.iso", "uefi", bool, True))
    return BuildConfig(
        source=path,
        template_iso=(base / iso).resolve() if iso else None,
        work_dir=work.resolve(),
        ext_dirs=[*(base / d for d in r.strings("extensions", "dirs")), *ext_dirs],
        extensions=exts,
        boot_codes=codes,
        extract_scripts=scripts,
        copy2fs_all=copy2fs is True,
        copy2fs=copy2fs if isinstance(copy2fs, list) else [],
        menu_timeout=float(timeout) if timeout is not None else None,
        serial=r.get("boot", "serial", bool, False),
        initrd_compression=comp,
        initrd_level=level,
        iso=iso_out,
    )


def load_any(path: Path, ext_dirs: list[Path] | None = None) -> BuildConfig:
    """Pick the reader by name: *.toml is native, anything else is read as ezremaster.cfg."""
    if path.suffix == ".toml":
        return load(path, ext_dirs)
    from pebuilder.config import ezcfg

    return ezcfg.load(path, ext_dirs)
