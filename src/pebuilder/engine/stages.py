"""Named build stages, cached by the content hash of what they read.

A stage declares what it reads (files, folders, values, and the stages whose outputs it uses) and
what it writes. Its key is a hash of those inputs plus pebuilder's own source; it runs when the key
differs from the one recorded after its last successful run, or when an output is gone. After it
runs, its token becomes the digest of its outputs: a stage that rewrote byte-identical outputs does
not make the stages after it run again.

A stage's config inputs are the keys it declares (`reads`): its key holds their values, and the
build's config records every key each stage reads (while it is made, keyed and run), so a read
that is not declared stops the build (StageGraphError) instead of leaving a stale image behind. The
engine knows nothing of configs: the build hands it a `ConfigInputs`.

Stages that edit one work tree in place share a `chain` name. A chain runs as a unit: if any member
must run, all run from the first, because editing a tree that already holds the last run's edits
would not give the same result.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pebuilder.engine.fingerprint import HashCache, cache_root, path_digest, source_digest, tree_digest, value_digest
from pebuilder.engine.progress import Progress
from pebuilder.engine.report import StageResult, size_of
from pebuilder.engine.state import StageState

log = logging.getLogger("pebuilder.stage")

Inputs = Sequence[Path] | Callable[[], Sequence[Path]]


@dataclass
class Stage:
    name: str
    action: Callable[[], str | None]
    files: Inputs = ()  # files it reads, hashed by content
    trees: Inputs = ()  # folders it reads, hashed by content
    reads: Sequence[str] = ()  # config keys it reads ("boot.hostname", "users", "output.disk[0]", "output.iso?")
    values: Any = None  # other values it depends on (or a callable giving them, evaluated when needed)
    after: Sequence[str] = ()  # stages whose outputs it reads
    outputs: Sequence[Path] = ()
    chain: str | None = None


class StageGraphError(Exception):
    """A build's stage list is wrong: a bug in pebuilder, not in the user's config."""


class ConfigInputs(Protocol):
    """What a build's config gives the engine: values of declared keys, and the reads it saw."""

    def scoped(self, name: str) -> AbstractContextManager[None]: ...  # reads made inside belong to stage `name`

    def values(self, declared: Sequence[str]) -> Any: ...  # the declared keys' values (and build-wide ones)

    def undeclared(self, name: str, declared: Sequence[str]) -> list[str]: ...  # reads no declaration holds


class _NoConfig:
    """A stage list with no config behind it (tests of the engine itself)."""

    def scoped(self, name: str) -> AbstractContextManager[None]:
        import contextlib

        return contextlib.nullcontext()

    def values(self, declared: Sequence[str]) -> Any:
        return None

    def undeclared(self, name: str, declared: Sequence[str]) -> list[str]:
        return []


def validate(stages: Sequence[Stage]) -> None:
    seen: set[str] = set()
    chains_done: set[str] = set()
    current_chain: str | None = None
    for s in stages:
        if s.name in seen:
            raise StageGraphError(f"stage {s.name!r} is declared twice")
        for a in s.after:
            if a not in seen:
                raise StageGraphError(f"stage {s.name!r} reads {a!r}, which is not a stage before it")
        if s.chain != current_chain:
            if s.chain in chains_done:
                raise StageGraphError(f"chain {s.chain!r} is split: its stages must follow each other")
            if current_chain:
                chains_done.add(current_chain)
            current_chain = s.chain
        seen.add(s.name)


def units(stages: Sequence[Stage]) -> list[list[Stage]]:
    """Stages grouped into what runs as one: a chain, or a single stage."""
    out: list[list[Stage]] = []
    for s in stages:
        if out and s.chain and out[-1][0].chain == s.chain:
            out[-1].append(s)
        else:
            out.append([s])
    return out


def relative_name(p: Path | str, work: Path) -> str:
    text, top = os.path.abspath(p), os.path.abspath(work)
    return "./" + text[len(top) + 1:] if text.startswith(top + os.sep) else text


def _resolve(inputs: Inputs) -> Sequence[Path]:
    return inputs() if callable(inputs) else inputs


class Engine:
    def __init__(self, state_dir: Path, progress: Progress | None = None, force: bool = False,
                 config: ConfigInputs | None = None):
        self.config: ConfigInputs = config or _NoConfig()
        self.work = state_dir.parent
        self.state = StageState(state_dir)
        self.hashes = HashCache(state_dir / "hashes.json", ours=[state_dir.parent, cache_root()])
        self.results: list[StageResult] = []
        self.progress = progress or Progress(enabled=False)
        self.force = force
        self.read_by_others: set[str] = set()  # stages named in some stage's `after`
        self.sizes: dict[str, int] = {}  # this run's output sizes (the extract tree is output of two stages)

    def key(self, stage: Stage, unit_names: Iterable[str] = ()) -> str:
        inside = set(unit_names)
        with self.config.scoped(stage.name):  # what the input callables read is the stage's too
            parts = {
                "pebuilder": source_digest(),
                "config": self.config.values(stage.reads),
                "files": [[self.name(f), self.hashes.file(f)] for f in _resolve(stage.files)],
                "trees": [[self.name(t), tree_digest(t, self.hashes)] for t in _resolve(stage.trees)],
                "values": stage.values() if callable(stage.values) else stage.values,
                "after": [[a, self.state.token(a)] for a in stage.after if a not in inside],
            }
        self._check_reads(stage)
        return value_digest(parts)

    def _check_reads(self, stage: Stage) -> None:
        missing = self.config.undeclared(stage.name, stage.reads)
        if missing:
            raise StageGraphError(f"stage {stage.name!r} reads config keys it does not declare: "
                                  f"{', '.join(missing)} (add them to its reads: its key must cover them)")

    def run(self, stages: Sequence[Stage], only: set[str] | None = None) -> list[StageResult]:
        """Run (or skip) the stages in order; `only` limits the run to those names (and their chains)."""
        validate(stages)
        self.read_by_others = {a for s in stages for a in s.after}
        out: list[StageResult] = []
        try:
            for unit in units(stages):
                if only is not None and not any(s.name in only for s in unit):
                    continue
                out += self._unit(unit)
        finally:
            self.state.save()
            self.hashes.save()
        return out

    def _unit(self, unit: list[Stage]) -> list[StageResult]:
        names = [s.name for s in unit]
        keys = [self.key(s, names) for s in unit]
        fresh = not self.force and all(
            self.state.key(s.name) == k and all(o.exists() for o in s.outputs) for s, k in zip(unit, keys, strict=True))
        results = []
        if fresh:
            for s in unit:
                results.append(StageResult(s.name, False, 0.0, self._skipped_sizes(s), "unchanged, skipped"))
        else:
            self.sizes.clear()
            for s in unit:
                self.state.forget(s.name)
            self.state.save()  # a run killed from here on reruns the whole unit next time
            notes = []
            for s in unit:
                t0 = time.monotonic()
                with self.progress.stage(s.name), self.config.scoped(s.name):
                    note = s.action()
                self._check_reads(s)
                for o in s.outputs:
                    self.hashes.forget(o)
                notes.append((s, time.monotonic() - t0, note if isinstance(note, str) else ""))
            token = self._token(unit, keys[-1])
            results = [StageResult(s.name, True, dt, self._sizes(s.outputs), note) for s, dt, note in notes]
            for s, k, r in zip(unit, keys, results, strict=True):
                self.state.record(s.name, k, token, r.outputs)
            self.state.save()
        for r in results:
            self.progress.done(r)
        self.results += results
        return results

    def _token(self, unit: list[Stage], last_key: str) -> str:
        """What the unit produced: digests of its outputs (or its key when it declares none)."""
        outputs = [o for s in unit for o in s.outputs]
        # Only stages that others read need an output digest: a 20 GiB sparse disk image is not hashed.
        if not outputs or not any(s.name in self.read_by_others for s in unit):
            return last_key
        return value_digest([[self.name(o), path_digest(o, self.hashes)] for o in outputs])

    def name(self, p: Path) -> str:
        """A path as keys hold it: relative to the work folder when inside it, so a moved or copied
        project keeps its stage records."""
        return relative_name(p, self.work)

    def report(self) -> dict[str, Any]:
        return {"stages": [r.as_dict() for r in self.results],
                "seconds": round(sum(r.seconds for r in self.results), 3),
                "hashed_files": self.hashes.reads}

    def _skipped_sizes(self, stage: Stage) -> dict[str, int]:
        """A skipped stage's outputs are what it wrote last time: report the sizes measured then,
        rather than walk an initrd tree of thousands of files again (the stage's own reruns and the
        stages reading it still see every change, through their keys)."""
        recorded = self.state.sizes(stage.name)
        if recorded is not None and sorted(recorded) == sorted(str(o) for o in stage.outputs if o.exists()):
            return recorded
        return self._sizes(stage.outputs)

    def _sizes(self, outputs: Sequence[Path]) -> dict[str, int]:
        """Sizes for the report, each output measured once per run until a stage runs again."""
        out = {}
        for o in outputs:
            k = str(o)
            if k not in self.sizes:
                if not o.exists():
                    continue
                self.sizes[k] = size_of(o)
            out[k] = self.sizes[k]
        return out

