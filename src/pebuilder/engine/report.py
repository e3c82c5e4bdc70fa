"""What a build did, stage by stage: shown while it runs and printed as JSON with --json."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class StageResult:
    name: str
    ran: bool
    seconds: float
    outputs: dict[str, int]
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.name, "ran": self.ran, "seconds": round(self.seconds, 3),
                "outputs": self.outputs, "note": self.note}


def size_of(p: Path) -> int:
    """Bytes of a file, or of the regular files under a folder."""
    if p.is_file():
        return p.stat().st_size
    total = 0
    for dirpath, _, files in os.walk(p):
        for f in files:
            fp = os.path.join(dirpath, f)
            if not os.path.islink(fp):
                total += os.path.getsize(fp)
    return total
