"""Extensions from Tiny Core mirrors, through a verified, shared download cache.

Layout on a mirror: `<base>/<major>.x/<arch>/tcz/NAME.tcz` with `.md5.txt` and `.dep` beside it.
The cache is keyed by that repository path and the md5 the mirror announces: a file is fetched
once, checked against its md5, and only then renamed into place, so an interrupted or corrupt
download never enters it, and two builds at once each finish with a whole file.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pebuilder.errors import Exit, PebuilderError
from pebuilder.formats.tcz import ExtensionMissing, check_name, locate, parse_dep
from pebuilder.fsutil import file_md5
from pebuilder.net.cache import cache_root
from pebuilder.net.http import DownloadError, NotFound, Policy, fetch_bytes, fetch_to

log = logging.getLogger("pebuilder.mirror")


def repo_path(tc_version: str | None, arch: str | None) -> str:
    if not tc_version or not arch:
        raise PebuilderError("cannot tell the mirror's repository path: the template's Tiny Core version or arch "
                             "is unknown; set [extensions] repo, e.g. repo = \"14.x/x86_64/tcz\"", Exit.CONFIG_INVALID)
    return f"{tc_version.split('.')[0]}.x/{arch}/tcz"


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@dataclass
class Mirror:
    bases: list[str]
    repo: str
    offline: bool = False
    policy: Policy = field(default_factory=Policy)
    cache: Path = field(default_factory=lambda: cache_root() / "tcz")
    workers: int = 4
    requests: list[str] = field(default_factory=list)  # what was fetched, for reports and tests
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _fetched: dict[tuple[str, str], bytes | None] = field(default_factory=dict)

    def _dir(self, name: str) -> Path:
        check_name(name, f"extension name from {self.repo}")
        return self.cache / self.repo / name

    def _urls(self, file: str) -> list[str]:
        return [f"{b.rstrip('/')}/{self.repo}/{file}" for b in self.bases]

    def _meta(self, name: str, suffix: str, optional: bool) -> bytes | None:
        """.md5.txt or .dep of an extension, asked of the mirror once per run (stage keys and the
        stages themselves both need them)."""
        key = (name, suffix)
        if key not in self._fetched:
            self._fetched[key] = self._meta_uncached(name, suffix)
        return self._fetched[key]

    def _meta_uncached(self, name: str, suffix: str) -> bytes | None:
        """From the mirror when online (and kept in the cache for --offline), else from the cache."""
        cached = self._dir(name) / suffix.lstrip(".")
        absent = self._dir(name) / (suffix.lstrip(".") + ".absent")
        if self.offline:
            if cached.exists():
                return cached.read_bytes()
            if absent.exists():
                return None
            raise DownloadError(f"offline: {name}{suffix} is not in the cache ({cached}); run once without --offline")
        errors = []
        for url in self._urls(name + suffix):
            try:
                with self._lock:
                    self.requests.append(url)
                data = fetch_bytes(url, self.policy)
                _atomic_bytes(cached, data)
                absent.unlink(missing_ok=True)
                return data
            except NotFound:
                log.debug("%s: not on the mirror (that is fine for %s)", url, suffix)
                errors.append(f"{url}: 404")
            except DownloadError as exc:
                errors.append(str(exc))
        if all(e.endswith(": 404") for e in errors):
            _atomic_bytes(absent, b"")
            return None
        raise DownloadError("; ".join(errors))

    def deps(self, name: str, kver: str | None) -> list[str] | None:
        """None when the mirror has no such extension; [] when it has one without a .dep."""
        if self._meta(name, ".md5.txt", optional=False) is None:
            return None
        dep = self._meta(name, ".dep", optional=True)
        return parse_dep(dep.decode(errors="replace"), kver, self._urls(name + ".dep")[0]) if dep else []

    def md5(self, name: str) -> str:
        data = self._meta(name, ".md5.txt", optional=False)
        if data is None or not data.split():
            raise ExtensionMissing(f"{name}: the mirror has no {name}.md5.txt")
        md5 = data.split()[0].decode(errors="replace").lower()
        if not re.fullmatch(r"[0-9a-f]{32}", md5):
            raise ExtensionMissing(f"{self._urls(name + '.md5.txt')[0]}: not an md5 sum ({md5[:40]!r})")
        return md5

    def fetch(self, name: str, progress=None) -> Path:
        """The verified .tcz from the cache, downloading it first if needed."""
        md5 = self.md5(name)
        target = self._dir(name) / md5 / name
        if target.exists():
            self._sidecars(name, target)
            return target
        if self.offline:
            raise DownloadError(f"offline: {name} (md5 {md5}) is not in the cache; run once without --offline")
        target.parent.mkdir(parents=True, exist_ok=True)
        errors = []
        for url in self._urls(name):
            part = Path(tempfile.mkdtemp(dir=target.parent, prefix=".dl-")) / name
            try:
                with self._lock:
                    self.requests.append(url)
                fetch_to(url, part, self.policy, progress)
                got = file_md5(part)
                if got != md5:
                    errors.append(f"{url}: md5 {got} does not match the mirror's {md5}")
                    continue
                os.replace(part, target)
                self._sidecars(name, target)
                return target
            except NotFound:
                errors.append(f"{url}: 404")
            except DownloadError as exc:
                errors.append(str(exc))
            finally:
                part.unlink(missing_ok=True)
                part.parent.rmdir()
        raise DownloadError(f"could not download {name}: " + "; ".join(errors))

    def _sidecars(self, name: str, target: Path) -> None:
        """.dep and .md5.txt beside the cached .tcz, where Tiny Core's tools expect them."""
        for suffix in (".dep", ".md5.txt"):
            src = self._dir(name) / suffix.lstrip(".")
            dst = target.with_name(name + suffix)
            if src.exists() and not dst.exists():
                _atomic_bytes(dst, src.read_bytes())

    def fetch_all(self, names: list[str]) -> dict[str, Path]:
        """Fetch with bounded parallelism; progress shows bytes, rate and files."""
        from pebuilder.net.progress import DownloadProgress

        progress = DownloadProgress(len(names))

        def one(name: str) -> Path:
            path = self.fetch(name, progress.add)
            progress.file_done()
            return path

        with progress.shown(), concurrent.futures.ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {n: pool.submit(one, n) for n in names}
            return {n: f.result() for n, f in futures.items()}


class Sources:
    """Where extensions come from, in order: local folders, then mirrors."""

    def __init__(self, dirs: list[Path], mirror: Mirror | None, kver: str | None):
        self.dirs = dirs
        self.mirror = mirror
        self.kver = kver

    def local(self, name: str) -> Path | None:
        try:
            return locate(name, self.dirs)
        except ExtensionMissing:
            return None

    def deps_of(self, name: str) -> list[str] | None:
        path = self.local(name)
        if path is not None:
            dep = path.with_name(name + ".dep")
            return parse_dep(dep.read_text(errors="replace"), self.kver, str(dep)) if dep.is_file() else []
        if self.mirror is None:
            return None
        return self.mirror.deps(name, self.kver)

    def paths(self, names: list[str]) -> dict[str, Path]:
        out = {n: p for n in names if (p := self.local(n)) is not None}
        remote = [n for n in names if n not in out]
        if remote:
            if self.mirror is None:
                raise ExtensionMissing(f"{', '.join(remote)} not found in {', '.join(map(str, self.dirs))}")
            out.update(self.mirror.fetch_all(remote))
        return {n: out[n] for n in names}
