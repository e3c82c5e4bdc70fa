"""Configs: pebuilder.toml and Tiny Core's ezremaster.cfg, both read into one model (model.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pebuilder.config.model import Config


def load_any(path: Path, overrides: list[tuple[str, Any, bool]] | None = None) -> Config:
    """Pick the reader by name: *.toml is native, anything else is read as ezremaster.cfg."""
    if path.suffix == ".toml":
        from pebuilder.config import toml

        return toml.load(path, overrides)
    from pebuilder.config import ezcfg

    return ezcfg.load(path, overrides)
