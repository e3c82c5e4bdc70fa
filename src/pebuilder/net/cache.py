"""A download cache addressed by the digest the caller already trusts.

Debian's indexes name every file by its SHA256 (Tiny Core's by md5), so the cache never has to ask
whether an entry is "fresh": an entry *is* its content. Files are downloaded into a private
temporary file inside the cache (same filesystem) and renamed into place only after the digest
matched, so another process asking for the same file at the same time sees either nothing or the
whole verified file, never half of one. Two processes may both download it; the second rename
simply replaces identical bytes.

Layout: `<root>/<algo>/<first two hex digits>/<digest>/<name>`; the folder per digest lets the
file keep its real name (tools such as dpkg-deb print it) while the digest decides identity.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pebuilder.fsutil import file_digest
from pebuilder.net.http import DownloadError, Policy, fetch_to

log = logging.getLogger("pebuilder.cache")

ALGOS = {"sha256": 64, "md5": 32, "sha512": 128, "sha1": 40}
STALE_AFTER = 3600.0  # seconds: a temporary this old belongs to a process that died
CHUNK = 1 << 20


class DigestMismatch(DownloadError):
    """The bytes a URL gave are not the ones the index promised (mirror in sync, or tampering)."""


def cache_root() -> Path:
    """`$PEBUILDER_CACHE`, else `$XDG_CACHE_HOME/pebuilder`, else `~/.cache/pebuilder`."""
    explicit = os.environ.get("PEBUILDER_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "pebuilder"


def _check_key(algo: str, digest: str, name: str) -> tuple[str, str]:
    algo = algo.lower()
    if algo not in ALGOS:
        raise DownloadError(f"{name}: unsupported digest algorithm {algo!r}; use one of {', '.join(ALGOS)}")
    digest = digest.strip().lower()
    if len(digest) != ALGOS[algo] or not re.fullmatch(r"[0-9a-f]+", digest):
        raise DownloadError(f"{name}: {digest!r} is not a {algo} digest")
    if not name or "/" in name or name.startswith(".") or "\0" in name:
        raise DownloadError(f"{name!r} is not usable as a cache file name (no folders, no leading dot)")
    return algo, digest


class DownloadCache:
    """Verified files by digest; `offline` turns every miss into an error instead of a download."""

    def __init__(self, root: Path | None = None, *, offline: bool = False, policy: Policy | None = None):
        self.root = Path(root) if root is not None else cache_root()
        self.offline = offline
        self.policy = policy
        self._tmp = self.root / "tmp"
        self._swept = False

    # -- lookup -----------------------------------------------------------------------------------

    def path_for(self, algo: str, digest: str, name: str) -> Path:
        """Where the entry lives (whether or not it is there yet)."""
        algo, digest = _check_key(algo, digest, name)
        return self.root / algo / digest[:2] / digest / name

    def lookup(self, algo: str, digest: str, name: str) -> Path | None:
        """The cached file if present. Entries were verified when they were added; a copy under
        another name of the same content is linked, not downloaded again."""
        target = self.path_for(algo, digest, name)
        if target.is_file():
            return target
        folder = target.parent
        if folder.is_dir():
            for other in folder.iterdir():
                if other.is_file() and not other.name.startswith("."):
                    tmp = self._tmp_path(name)
                    try:
                        os.unlink(tmp)
                        os.link(other, tmp)
                        os.replace(tmp, target)
                    except OSError:
                        with contextlib.suppress(OSError):
                            os.unlink(tmp)
                        continue
                    return target
        return None

    # -- download ---------------------------------------------------------------------------------

    def get(self, urls: Sequence[str], algo: str, digest: str, name: str,
            progress: Callable[[int], None] | None = None) -> Path:
        """A path inside the cache whose content has `digest`, downloading from the first URL that
        gives the right bytes. A mismatch is never cached; it is reported with both digests."""
        if isinstance(urls, str):
            urls = [urls]
        algo, digest = _check_key(algo, digest, name)
        found = self.lookup(algo, digest, name)
        if found is not None:
            return found
        where = ", ".join(urls) or "(no URL)"
        if self.offline:
            raise DownloadError(f"{name} ({algo} {digest[:16]}…) is not in the cache {self.root} and offline "
                                f"mode is on; run once with network access to fetch it from {where}")
        if not urls:
            raise DownloadError(f"{name}: no URL to download it from")
        self._sweep()
        target = self.path_for(algo, digest, name)
        errors: list[DownloadError] = []
        for url in urls:
            try:
                self._download(url, target, algo, digest, name, progress)
                return target
            except DownloadError as exc:
                log.info("%s", exc)
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        mismatch = next((e for e in errors if isinstance(e, DigestMismatch)), None)
        detail = "; ".join(str(e) for e in errors)
        cls = DigestMismatch if mismatch else DownloadError
        raise cls(f"{name}: every URL failed: {detail}")

    def put(self, src: Path, algo: str, digest: str, name: str) -> Path:
        """Add a local file (copied, verified) — for content that did not come over HTTP."""
        algo, digest = _check_key(algo, digest, name)
        target = self.path_for(algo, digest, name)
        if target.is_file():
            return target
        tmp = self._tmp_path(name)
        try:
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                while chunk := fin.read(CHUNK):
                    fout.write(chunk)
            self._commit(tmp, target, algo, digest, str(src))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return target

    def _download(self, url: str, target: Path, algo: str, digest: str, name: str,
                  progress: Callable[[int], None] | None) -> None:
        tmp = self._tmp_path(name)
        try:
            fetch_to(url, tmp, self.policy, progress)
            self._commit(tmp, target, algo, digest, url)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _commit(self, tmp: Path, target: Path, algo: str, digest: str, origin: str) -> None:
        got = file_digest(tmp, algo)
        if got != digest:
            raise DigestMismatch(f"{origin}: {algo} mismatch: expected {digest}, got {got}; the mirror may be "
                                 "in the middle of an update (try again later) or the file was tampered with")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)

    def _tmp_path(self, name: str) -> Path:
        """A fresh, private temporary file name in the cache's own filesystem."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=f"{name}.", suffix=".part", dir=self._tmp)
        os.close(fd)
        return Path(path)

    def _sweep(self) -> None:
        """Remove temporaries left by processes that died (once per cache object)."""
        if self._swept:
            return
        self._swept = True
        if not self._tmp.is_dir():
            return
        limit = time.time() - STALE_AFTER
        for entry in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                if entry.lstat().st_mtime < limit and not entry.is_dir():
                    entry.unlink()
                    log.debug("removed stale temporary %s", entry)
