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
    """Bytes of a file, or of the regular files under a folder (links not followed).

    os.scandir with one lstat per entry: a skipped stage whose output is an initrd tree of
    thousands of files still reports its size within the no-op's budget."""
    if p.is_file():
        return p.stat().st_size
    total = 0
    pending = [os.fspath(p)]
    while pending:
        try:
            it = os.scandir(pending.pop())
        except OSError:
            continue
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    pending.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
    return total
