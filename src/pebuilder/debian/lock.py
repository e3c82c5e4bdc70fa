"""The pinned package set of a Debian build: resolved once, then reused until asked to refresh.

Like a lock file in a language package manager: the first build resolves the packages against the
mirror's signed index and writes name, version, URL and SHA256 of each to
`.pebuilder/packages.lock.json`; later builds fetch exactly those files (from the cache, offline if
need be), so rebuilding the same config gives the same system until `--refresh` (or a config change
that touches the package set) resolves again.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pebuilder.arch import Arch
from pebuilder.debian.archive import Archive, Package
from pebuilder.debian.resolve import Have, resolve
from pebuilder.debian.sources import sources_for, untested_note
from pebuilder.formats import deb
from pebuilder.fsroot import Budget, FsRoot
from pebuilder.fsutil import rmtree, write_text_atomic
from pebuilder.net.cache import DownloadCache

log = logging.getLogger("pebuilder.debian")


@dataclass(frozen=True)
class Pinned:
    name: str
    version: str
    arch: str
    url: str
    sha256: str
    size: int
    description: str = ""
    direct: tuple[str, ...] = ()  # direct dependencies that are in the same set

    @property
    def deb_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @classmethod
    def of(cls, p: Package, direct: list[str] | None = None) -> Pinned:
        return cls(p.name, p.version, p.arch, p.url, p.sha256, p.size, p.description, tuple(direct or ()))


@dataclass
class Lock:
    suite: str
    arch: str
    sources: list[str]
    groups: dict[str, list[Pinned]] = field(default_factory=dict)  # e.g. base, kernel, busybox, grub

    def save(self, path: Path) -> None:
        data = {"suite": self.suite, "arch": self.arch, "sources": self.sources,
                "groups": {g: [asdict(p) for p in ps] for g, ps in self.groups.items()}}
        write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> Lock:
        data = json.loads(path.read_text())
        groups = {g: [Pinned(**{**p, "direct": tuple(p.get("direct", ()))}) for p in ps]
                  for g, ps in data["groups"].items()}
        return cls(data["suite"], data["arch"], data["sources"], groups)

    def group(self, name: str) -> list[Pinned]:
        return self.groups.get(name, [])

    def one(self, group: str, name: str) -> Pinned:
        for p in self.group(group):
            if p.name == name:
                return p
        raise KeyError(f"{name} is not in the {group} packages of the lock")


_WARNED: set[str] = set()


def open_archive(suite: str, arch: Arch, mirror: str | None, cache: DownloadCache, offline: bool = False) -> Archive:
    archive = Archive(sources_for(suite, mirror), arch, cache, offline=offline).load()
    note = untested_note(suite)
    if note and suite not in _WARNED:  # once the index is there (when it is not, the error says why)
        _WARNED.add(suite)
        log.warning("%s", note)
    return archive


def resolve_closure(archive: Archive, names: list[str], have: Have | None = None) -> list[Pinned]:
    """`names` and every dependency they need (beyond `have`), dependencies first, each with the direct
    ones it pulled in."""
    if not names:
        return []
    res = resolve(names, archive, have)
    for note in res.notes:
        log.info("%s", note)
    return [Pinned.of(p, res.added_deps(p.name)) for p in res.packages]


def fetch(p: Pinned, cache: DownloadCache) -> Path:
    return cache.get([p.url], "sha256", p.sha256, p.deb_name)


def fetch_all(ps: list[Pinned], cache: DownloadCache) -> list[Path]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="deb") as pool:
        return list(pool.map(lambda p: fetch(p, cache), ps))


def unpacked(p: Pinned, cache: DownloadCache) -> Path:
    """The package's files unpacked once into the cache (a kernel, busybox, GRUB's modules), in a
    folder named after the package file and its digest."""
    root = cache.root / "unpacked" / f"{p.deb_name.removesuffix('.deb')}-{p.sha256[:16]}"
    if root.is_dir():
        return root
    debfile = fetch(p, cache)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".x-"))
    try:
        deb.extract(debfile, FsRoot(tmp / "root"), Budget(max_bytes=8 << 30, what=p.deb_name))
        try:
            os.replace(tmp / "root", root)
        except OSError:
            if not root.is_dir():  # else another build unpacked the same package first
                raise
    finally:
        rmtree(tmp)
    return root
