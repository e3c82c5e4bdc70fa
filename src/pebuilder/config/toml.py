"""pebuilder.toml: the native config, a superset of ezremaster.cfg, read through the key registry.

Every key is checked: an unknown one or a wrong type is an error that names the key and what it
accepts, since a silently ignored typo in a boot config costs a whole build-and-boot cycle.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pebuilder.config import registry
from pebuilder.config.model import Config
from pebuilder.errors import ConfigError, Exit


def read_data(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror}); give the path of a readable "
                          "pebuilder.toml", Exit.CONFIG_UNREADABLE) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); a pebuilder.toml is a UTF-8 TOML file",
                          Exit.CONFIG_UNREADABLE) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load(path: Path, overrides: list[tuple[str, Any, bool]] | None = None) -> Config:
    """Read, apply command-line overrides (table.key, value, append), check, return the model."""
    data = read_data(path)
    for dotted, value, append in overrides or []:
        registry.set_path(data, dotted, value, append)
    return registry.parse(data, path.resolve())
