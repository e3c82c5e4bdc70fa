"""The one build model both config readers produce; everything downstream reads only this."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Placement = Literal["initrd", "onboot", "builtin", "ondemand"]
PLACEMENTS: tuple[str, ...] = ("initrd", "onboot", "builtin", "ondemand")
ScriptPolicy = Literal["run", "ignore"]


@dataclass
class ExtensionSpec:
    name: str  # normalised: always ends in .tcz
    placement: Placement


@dataclass
class IsoOutput:
    path: Path
    volume_id: str = "PEBUILDER"
    uefi: bool = True


@dataclass
class BuildConfig:
    source: Path | None  # the config file this came from
    template_iso: Path | None  # None: the built-in Debian template
    work_dir: Path
    ext_dirs: list[Path] = field(default_factory=list)
    extensions: list[ExtensionSpec] = field(default_factory=list)
    boot_codes: list[str] = field(default_factory=list)
    extract_scripts: ScriptPolicy = "run"
    copy2fs_all: bool = False
    copy2fs: list[str] = field(default_factory=list)
    menu_timeout: float | None = None  # seconds; None keeps the template's
    serial: bool = False
    initrd_compression: str = "gzip"
    initrd_level: int = 9
    iso: IsoOutput | None = None
    warnings: list[str] = field(default_factory=list)

    def names(self, placement: str) -> list[str]:
        return [e.name for e in self.extensions if e.placement == placement]

    def to_dict(self) -> dict:
        def clean(v):
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items() if x is not None}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        d = clean(asdict(self))
        d.pop("warnings", None)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def tcz_name(name: str) -> str:
    """Tiny Core's own rule: an extension name always carries the .tcz suffix."""
    name = name.strip()
    return name if name.endswith(".tcz") else name + ".tcz"
