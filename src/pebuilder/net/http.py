"""HTTP(S) downloads that survive flaky mirrors: timeouts, retries with backoff, resume by Range.

Bytes land in a temporary file the caller gives; only the caller decides (after checking md5)
whether it becomes a cache entry, so nothing half-downloaded is ever taken for a whole file.
HTTPS is verified against the system CA store.
"""

from __future__ import annotations

import functools
import http.client
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pebuilder import __version__
from pebuilder.errors import Exit, PebuilderError

log = logging.getLogger("pebuilder.http")
CHUNK = 1 << 16


class DownloadError(PebuilderError):
    code = Exit.DOWNLOAD


class NotFound(DownloadError):
    """The server says the file is not there (404/410): final, not worth a retry."""


@dataclass
class Policy:
    timeout: float = 15.0  # seconds without progress on connect or read
    retries: int = 5  # attempts after the first
    backoff: float = 0.5  # first wait; doubles up to backoff_max
    backoff_max: float = 8.0


class _Transient(Exception):
    pass


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """Loading the system CA store costs ~30 ms: once per process, not once per file."""
    return ssl.create_default_context()


def _open(url: str, policy: Policy, offset: int = 0):
    headers = {"User-Agent": f"pebuilder/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        ctx = _ssl_context() if url.startswith("https:") else None
        return urllib.request.urlopen(req, timeout=policy.timeout, context=ctx)
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise NotFound(f"{url}: not found ({exc.code})") from None
        if exc.code == 416:
            raise _Transient("range not satisfiable") from None
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code}") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise DownloadError(f"{url}: TLS certificate not trusted ({exc.reason.verify_message}); "
                                "install ca-certificates or fix the mirror URL") from None
        raise _Transient(str(exc.reason)) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
        raise _Transient(str(exc) or type(exc).__name__) from None


def _attempts(url: str, policy: Policy):
    delay = policy.backoff
    for attempt in range(policy.retries + 1):
        yield attempt
        if attempt < policy.retries:
            time.sleep(delay)
            delay = min(delay * 2, policy.backoff_max)


def fetch_to(url: str, dest: Path, policy: Policy | None = None,
             progress: Callable[[int], None] | None = None) -> int:
    """Download url into dest (appending to what a previous attempt left); returns its size."""
    policy = policy or Policy()
    last = ""
    for attempt in _attempts(url, policy):
        have = dest.stat().st_size if dest.exists() else 0
        try:
            resp = _open(url, policy, have)
            with resp:
                status = resp.status
                if have and status != 206:
                    have = 0  # the server ignored Range: start over
                length = resp.headers.get("Content-Length")
                expected = int(length) if length is not None else None
                got = 0
                with open(dest, "ab" if have else "wb") as out:
                    while True:
                        try:
                            chunk = resp.read(CHUNK)
                        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                            raise _Transient(f"connection lost after {have + got} bytes ({exc})") from None
                        if not chunk:
                            break
                        out.write(chunk)
                        got += len(chunk)
                        if progress:
                            progress(len(chunk))
                if expected is not None and got < expected:
                    raise _Transient(f"short body: {got} of {expected} bytes")
                return have + got
        except _Transient as exc:
            last = str(exc)
            log.info("%s: %s (attempt %d of %d)", url, last, attempt + 1, policy.retries + 1)
    raise DownloadError(f"{url}: giving up after {policy.retries + 1} attempts: {last}")


def fetch_bytes(url: str, policy: Policy | None = None, limit: int = 1 << 20) -> bytes:
    """A small file (metadata) in memory; NotFound when the server has none."""
    policy = policy or Policy()
    last = ""
    for attempt in _attempts(url, policy):
        try:
            with _open(url, policy) as resp:
                length = resp.headers.get("Content-Length")
                data = resp.read(limit + 1)
                if len(data) > limit:
                    raise DownloadError(f"{url}: larger than {limit} bytes; not a metadata file")
                if length is not None and len(data) < int(length):
                    raise _Transient(f"short body: {len(data)} of {length} bytes")
                return data
        except _Transient as exc:
            last = str(exc)
            log.info("%s: %s (attempt %d of %d)", url, last, attempt + 1, policy.retries + 1)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            last = str(exc) or type(exc).__name__
            log.info("%s: %s (attempt %d of %d)", url, last, attempt + 1, policy.retries + 1)
    raise DownloadError(f"{url}: giving up after {policy.retries + 1} attempts: {last}")
