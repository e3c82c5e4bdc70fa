"""Config reads, recorded: what a stage reads is what its key is made of.

A build sees its config only through a `ConfigView`. Every key it reads is recorded under the
stage being keyed or run (or the build itself, outside any stage): `boot.hostname`, `users[0].shell`,
`output.iso?` (whether an optional table is there), `output.disk#` (how many disks). A stage declares
the keys it reads (`Stage.reads`); its key is computed from the declared keys' values, and a read of
a key it did not declare stops the build as a bug in pebuilder, in every build and every test. So a
stage cannot read a value that its key does not cover: a new read without a declaration fails the
first test that runs the stage.

Keys the registry marks `inert` (where downloads come from, work paths, output paths: nothing inside
an image) may be read anywhere undeclared and never make a stage rerun.

Why a proxy and not an accessor function: the stages keep reading config as plain attributes
(`self.cfg.boot.hostname`), helpers that take a table keep taking it, and no read can bypass the
recording by holding on to a sub-table: children are views too.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BUILD = ""  # the scope of reads made outside any stage (the build's own set-up, which stages exist)
PRESENT = "?"  # suffix: whether an optional table is set
COUNT = "#"  # suffix: how many tables an array holds


class Recorder:
    """The keys read, by scope (a stage's name, or BUILD)."""

    def __init__(self) -> None:
        self.scope = BUILD
        self.log: dict[str, set[str]] = {BUILD: set()}

    def read(self, path: str) -> None:
        self.log.setdefault(self.scope, set()).add(path)

    @contextmanager
    def scoped(self, name: str) -> Iterator[None]:
        previous, self.scope = self.scope, name
        try:
            yield
        finally:
            self.scope = previous

    def reads(self, scope: str) -> set[str]:
        return set(self.log.get(scope, ()))

    def move(self, source: str, target: str) -> None:
        """Reads made while a stage was being made belong to that stage."""
        self.log.setdefault(target, set()).update(self.log.pop(source, ()))


def _fields(obj: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


class ConfigView:
    """A config table that records each key read through it; children are views too."""

    __slots__ = ("_raw", "_path", "_rec")

    def __init__(self, raw: Any, path: str, rec: Recorder):
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_rec", rec)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(view, Config) holds, as for the table itself
        return type(object.__getattribute__(self, "_raw"))

    def __getattr__(self, name: str) -> Any:
        raw = object.__getattribute__(self, "_raw")
        rec: Recorder = object.__getattribute__(self, "_rec")
        path = _join(object.__getattribute__(self, "_path"), name)
        field = _fields(raw).get(name)
        if field is None:
            attr = getattr(type(raw), name, None)
            if isinstance(attr, property) and attr.fget is not None:
                return attr.fget(self)  # a property's reads are recorded like any other
            if callable(attr):
                return attr.__get__(self)
            return getattr(raw, name)
        value = getattr(raw, name)
        kind = field.metadata.get("kind")
        if kind in (None, "internal"):  # where the config came from: not a key
            return value
        if kind == "tables":
            return ListView(value, path, rec)
        if dataclasses.is_dataclass(value):
            return ConfigView(value, path, rec)
        if kind == "optional_table":  # absent: the caller learns only that
            rec.read(path + PRESENT)
            return None
        rec.read(path)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_raw"), name, unwrap(value, record=False))

    def __bool__(self) -> bool:
        object.__getattribute__(self, "_rec").read(object.__getattribute__(self, "_path") + PRESENT)
        return True

    def __eq__(self, other: object) -> bool:
        return bool(unwrap(self) == unwrap(other))

    __hash__ = None  # type: ignore[assignment]  # as the dataclass itself

    def __repr__(self) -> str:
        return f"ConfigView({object.__getattribute__(self, '_path') or 'config'})"


class ListView(Sequence[Any]):
    """An array of tables ([[output.disk]], [[users]]): its length is a read, its items are views."""

    __slots__ = ("_raw", "_path", "_rec")

    def __init__(self, raw: list[Any], path: str, rec: Recorder):
        self._raw = raw
        self._path = path
        self._rec = rec

    def _item(self, i: int) -> ConfigView:
        return ConfigView(self._raw[i], f"{self._path}[{i}]", self._rec)

    def __len__(self) -> int:
        self._rec.read(self._path + COUNT)
        return len(self._raw)

    def __iter__(self) -> Iterator[ConfigView]:
        self._rec.read(self._path + COUNT)
        return (self._item(i) for i in range(len(self._raw)))

    def __getitem__(self, i: Any) -> Any:
        self._rec.read(self._path + COUNT)
        if isinstance(i, slice):
            return [self._item(j) for j in range(len(self._raw))[i]]
        return self._item(range(len(self._raw))[i])

    def __eq__(self, other: object) -> bool:
        return bool(unwrap(self) == unwrap(other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ListView({self._path})"


def view(cfg: Any, rec: Recorder) -> Any:
    """The config as a build sees it (typed as the config itself: it answers as one)."""
    return ConfigView(cfg, "", rec)


def unwrap(obj: Any, record: bool = True) -> Any:
    """The plain table behind a view: a whole-table read (to_data, comparisons)."""
    if isinstance(obj, ListView):
        if record:
            obj._rec.read(obj._path)
        return obj._raw
    if type(obj) is ConfigView:
        raw = object.__getattribute__(obj, "_raw")
        if record:
            path = object.__getattribute__(obj, "_path")
            object.__getattribute__(obj, "_rec").read(path or "*")
        return raw
    if isinstance(obj, list):
        return [unwrap(x, record) for x in obj]
    return obj


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# -- declarations ---------------------------------------------------------------------------------

def _marker(path: str) -> tuple[str, str]:
    if path.endswith((PRESENT, COUNT)):
        return path[:-1], path[-1]
    return path, ""


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")


def covered(read: str, declared: Iterable[str]) -> bool:
    """Whether a declared key (or table) holds this read. Declaring a key covers knowing whether its
    table is there; declaring `output.disk[0]` covers knowing how many disks there are."""
    base, mark = _marker(read)
    for d in declared:
        d_base, d_mark = _marker(d)
        if d_mark:
            if read == d:
                return True
        elif _under(base, d_base) or (mark and _under(d_base, base)):
            return True
    return False


def undeclared(reads: Iterable[str], declared: Iterable[str], inert: Iterable[str] = ()) -> list[str]:
    """Reads no declaration holds, less those of inert keys (by their registry path, `output.disk[].path`)."""
    declared = list(declared)
    inert_set = set(inert)
    return sorted(r for r in reads if not covered(r, declared) and registry_path(r) not in inert_set)


_INDEX = re.compile(r"\[\d+\]")


def registry_path(path: str) -> str:
    """`output.disk[0].size` as the registry names it: `output.disk[].size`."""
    return _INDEX.sub("[]", path)


_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\.")


def resolve(cfg: Any, path: str) -> Any:
    """A declared key's value as plain data, for the stage key (None where a table or item is absent)."""
    from pebuilder.config import registry

    base, mark = _marker(path)
    node: Any = cfg
    for name, index in _TOKEN.findall(base):
        if node is None:
            break
        if name:
            node = getattr(node, name)
        elif index:
            node = node[int(index)] if int(index) < len(node) else None
    if mark == PRESENT:
        return node is not None
    if mark == COUNT:
        return len(node) if node is not None else 0
    return _plain(node, registry)


def _plain(node: Any, registry: Any) -> Any:
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return registry.to_data(node)
    if isinstance(node, list):
        return [_plain(x, registry) for x in node]
    if isinstance(node, Path):
        return str(node)
    return node


def values(cfg: Any, declared: Sequence[str]) -> dict[str, Any]:
    return {d: resolve(cfg, d) for d in declared}
