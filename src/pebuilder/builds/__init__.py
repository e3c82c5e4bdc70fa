"""The systems pebuilder builds, each a flat `stages()` table of contents over one engine."""

from __future__ import annotations

from pebuilder.builds.common import Build
from pebuilder.config.model import Config


def for_config(cfg: Config) -> Build:
    """The build for a config's system; the CLI never branches on systems itself."""
    if cfg.kind == "tinycore":
        from pebuilder.builds.tinycore import TinyCoreRemaster

        return TinyCoreRemaster(cfg)
    from pebuilder.builds.debian import DebianLive

    return DebianLive(cfg)
