"""Named build stages, cached by the content hash of what they read.

A stage runs when its key (a hash of its declared inputs) differs from the one recorded after its
last successful run, or when one of its outputs is gone. Stages that edit one work tree in turn
form a chain: if any of them must run, the chain reruns from its first stage, because editing a
tree that already holds the previous run's edits would not give the same result.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pebuilder import __version__
from pebuilder.engine.fingerprint import HashCache, tree_digest, value_digest
from pebuilder.engine.progress import Progress
from pebuilder.fsutil import write_text_atomic

log = logging.getLogger("pebuilder.stage")


@dataclass
class Stage:
    name: str
    action: Callable[[], Any]
    files: Any = field(default_factory=list)  # inputs hashed by content (a list, or a callable giving one)
    trees: list[Path] = field(default_factory=list)  # input folders hashed by content
    values: Any = None  # config values the stage depends on
    outputs: list[Path] = field(default_factory=list)
    after: list[str] = field(default_factory=list)  # stages whose results this one reads


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


def _size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    total = 0
    for dirpath, _, files in os.walk(p):
        for f in files:
            fp = os.path.join(dirpath, f)
            if not os.path.islink(fp):
                total += os.path.getsize(fp)
    return total


class Engine:
    def __init__(self, state_dir: Path, progress: Progress | None = None, force: bool = False):
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = state_dir / "stages.json"
        self.state: dict[str, dict[str, str]] = (
            json.loads(self.state_path.read_text()) if self.state_path.exists() else {})
        self.hashes = HashCache(state_dir / "hashes.json")
        self.results: list[StageResult] = []
        self.progress = progress or Progress(enabled=False)
        self.force = force

    def key(self, stage: Stage) -> str:
        # Inputs may be callables: they are evaluated only when the key is needed, after the stages
        # before have run (e.g. extension names resolved against the unpacked template).
        files = stage.files() if callable(stage.files) else stage.files
        values = stage.values() if callable(stage.values) else stage.values
        parts = {
            "pebuilder": __version__,  # a new pebuilder may build differently: never reuse across versions
            "files": [[str(f), self.hashes.file(f)] for f in files],
            "trees": [[str(t), tree_digest(t, self.hashes)] for t in stage.trees],
            "values": values,
            # Tokens change whenever a stage actually runs, so what reads its results runs again too.
            "after": [self.state.get(a, {}).get("token", "") for a in stage.after],
        }
        return value_digest(parts)

    def _fresh(self, stage: Stage, key: str) -> bool:
        return (not self.force and self.state.get(stage.name, {}).get("key") == key
                and all(o.exists() for o in stage.outputs))

    def run(self, stage: Stage) -> StageResult:
        return self.chain([stage])[0]

    def chain(self, stages: list[Stage]) -> list[StageResult]:
        # Keys of later stages may read tokens of earlier ones, so a key is only known once the
        # stages before it have settled; a chain is fresh only if every member is.
        must_run = False
        for s in stages:
            if not self._fresh(s, self.key(s)):
                must_run = True
                break
        out = []
        for s in stages:
            k = self.key(s)
            if must_run:
                self.state.pop(s.name, None)
                self._save()
                t0 = time.monotonic()
                with self.progress.stage(s.name):
                    note = s.action()
                dt = time.monotonic() - t0
                self.state[s.name] = {"key": k, "token": value_digest([k, time.time_ns(), os.getpid()])}
                res = StageResult(s.name, True, dt, {str(o): _size(o) for o in s.outputs if o.exists()},
                                  note if isinstance(note, str) else "")
            else:
                res = StageResult(s.name, False, 0.0, {str(o): _size(o) for o in s.outputs if o.exists()},
                                  "unchanged, skipped")
            self.progress.done(res)
            self.results.append(res)
            out.append(res)
        self._save()
        return out

    def _save(self) -> None:
        write_text_atomic(self.state_path, json.dumps(self.state, indent=1, sort_keys=True))
        self.hashes.save()

    def report(self) -> dict[str, Any]:
        return {"stages": [r.as_dict() for r in self.results],
                "seconds": round(sum(r.seconds for r in self.results), 3)}
