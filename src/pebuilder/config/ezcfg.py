"""ezremaster.cfg, read as remaster.sh reads it.

remaster.sh greps `^key = ` and takes the third whitespace field, so a value never holds spaces;
`cc` is the exception (every word after `cc =`), and a bare `copy2fs.flg` line is a flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pebuilder.config import registry
from pebuilder.config import validate as v
from pebuilder.config.model import Config
from pebuilder.errors import ConfigError, Exit

LIST_KEYS = {
    "app_extract_initrd": "initrd",
    "app_outside_initrd_onboot": "onboot",
    "app_outside_initrd_ondemand": "ondemand",
    "app_builtin_initrd": "builtin",
}
SINGLE_KEYS = {"cd_location", "temp_dir", "extract_tcz_script"}
KNOWN_FLAGS = {"copy2fs.flg"}
KNOWN_KEYS = set(LIST_KEYS) | SINGLE_KEYS | {"cc", "copy2fs.lst"}
MAX_LINE = 4096


def load(path: Path, overrides: list[tuple[str, Any, bool]] | None = None) -> Config:
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror}); give the path of a readable "
                          "ezremaster.cfg", Exit.CONFIG_UNREADABLE) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); an ezremaster.cfg is a text file",
                          Exit.CONFIG_UNREADABLE) from None
    data, warnings = to_data(text, path.resolve())
    for dotted, value, append in overrides or []:
        registry.set_path(data, dotted, value, append)
    cfg = registry.parse(data, path.resolve(), path.resolve().parent)
    cfg.warnings = warnings
    return cfg


def to_data(text: str, path: Path) -> tuple[dict[str, Any], list[str]]:
    """The cfg as pebuilder.toml-shaped data; the registry then checks it like any other config."""
    single: dict[str, tuple[str, int]] = {}
    exts: dict[str, list[str]] = {}
    codes: list[str] = []
    copy2fs_all = False
    copy2fs: list[str] = []
    warnings: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{path}:{lineno}"
        if len(raw) > MAX_LINE:
            raise ConfigError(f"{where}: a line of {len(raw)} characters; ezremaster.cfg lines are short "
                              f"key = value pairs (at most {MAX_LINE})")
        if "\0" in raw:
            raise ConfigError(f"{where}: holds a NUL byte")
        if not line or line.startswith("#"):
            continue
        if line in KNOWN_FLAGS:
            copy2fs_all = True
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or " " in key or "\t" in key:
            raise ConfigError(f"{where}: expected 'key = value' (or the bare flag copy2fs.flg), got {raw!r}")
        if not value:
            raise ConfigError(f"{where}: key {key!r} has no value")
        words = value.split()
        if key == "cc":
            for w in words:
                msg = v.boot_code(w)
                if msg:
                    raise ConfigError(f"{where}: cc: {msg}")
            codes.extend(words)
            continue
        if len(words) > 1:
            raise ConfigError(f"{where}: the value of {key!r} holds spaces ({value!r}); remaster.sh reads "
                              "only the first word, so give one value per line")
        if key in LIST_KEYS:
            exts.setdefault(LIST_KEYS[key], []).append(value)
        elif key == "copy2fs.lst":
            copy2fs.append(value)
        elif key in SINGLE_KEYS:
            if key in single:
                raise ConfigError(f"{where}: {key!r} is given twice (first on line {single[key][1]}); "
                                  "keep one")
            single[key] = (value, lineno)
        else:
            warnings.append(f"{where}: unknown key {key!r} ignored (known: {', '.join(sorted(KNOWN_KEYS))})")
    if "cd_location" not in single:
        raise ConfigError(f"{path}: cd_location is missing; set it to the template ISO "
                          "(cd_location = /path/CorePure64.iso)", Exit.NO_TEMPLATE)
    if "temp_dir" not in single:
        raise ConfigError(f"{path}: temp_dir is missing; set it to a work folder "
                          "(temp_dir = /path/ezremaster/)", Exit.TEMP_DIR)
    policy = single.get("extract_tcz_script", ("run", 0))[0]
    if policy not in ("ignore", "run"):
        raise ConfigError(f"{path}:{single['extract_tcz_script'][1]}: extract_tcz_script = {policy!r}; "
                          "accepted values: ignore, run")
    base = path.parent
    temp_dir = (base / single["temp_dir"][0]).resolve()
    data: dict[str, Any] = {
        "system": "tinycore",
        "template": {"iso": str((base / single["cd_location"][0]).resolve())},
        "work": {"dir": str(temp_dir)},
        "extensions": {**exts, "scripts": policy, "copy2fs": copy2fs or copy2fs_all},
        "boot": {"codes": codes},
        "output": {"iso": {"path": str(temp_dir / "ezremaster.iso"), "volume_id": "Tinycore"}},
    }
    return data, warnings
