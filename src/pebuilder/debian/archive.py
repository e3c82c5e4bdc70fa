"""Debian's archive read directly: signed InRelease → verified Packages index → verified .debs.

apt on an amd64 host cannot see arm64 packages without `dpkg --add-architecture` (a change to the
host), so pebuilder reads the mirror itself, with apt's chain of trust:

1. `dists/<suite>/InRelease` is checked with `gpgv` against the source's Signed-By keyring (or
   Debian's archive keyring). Only the text gpgv vouches for is read, never the unsigned parts
   around it. Like apt, one good signature from a known key is enough (an archive is signed by
   several keys and an older keyring may lack the newest); a bad signature or a weak hash is not.
2. `<component>/binary-<arch>/Packages.xz` is fetched by the SHA256 that text lists (through
   `by-hash/` when the Release offers it, so a mirror mid-update cannot give a mismatched pair).
3. Each `.deb` is fetched by the SHA256 in that index.

`Valid-Until` is checked when present (security suites carry one, the main suite does not) on a
freshly downloaded InRelease; offline runs reuse the last verified copy and only warn, because
there is no mirror to replay anything then.

Parsing bookworm's 63,000 paragraphs with python-debian takes a few seconds, so each parsed
index is kept as JSON named by its Packages file's SHA256 (JSON rather than pickle: a cache
folder is no place to load code from); a run whose indexes did not change reads them in a fraction
of a second. Names with several candidates across suites keep the highest version, as apt's
default pinning would choose.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import gzip
import json
import logging
import lzma
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pebuilder.arch import Arch
from pebuilder.debian.sources import DEFAULT_KEYRING, TESTED, UNRELEASED, Source, describe, split_suite
from pebuilder.errors import ConfigError, Exit, PebuilderError, ToolFailedError, ToolMissingError
from pebuilder.fsutil import atomic_output
from pebuilder.net.cache import DownloadCache
from pebuilder.net.http import DownloadError, NotFound, fetch_bytes
from pebuilder.runner import run, which

if TYPE_CHECKING:
    from pebuilder.net.progress import DownloadProgress

log = logging.getLogger("pebuilder.debian")

INDEX_FORMAT = 1
RELEASE_LIMIT = 32 << 20
PARALLEL = 4
PRUNE_AFTER = 30 * 86400  # parsed indexes unused this long are removed
WEAK_HASHES = {"1": "MD5", "2": "SHA1", "3": "RIPEMD160"}  # OpenPGP hash algorithm ids apt refuses
FIELDS = ["Package", "Version", "Architecture", "Filename", "SHA256", "Size", "Installed-Size", "Depends",
          "Pre-Depends", "Provides", "Essential", "Priority", "Section", "Multi-Arch", "Source", "Description"]
# Positions in an index row (a list, so that JSON stores it compactly).
(V_VERSION, V_ARCH, V_FILENAME, V_SHA256, V_SIZE, V_ISIZE, V_DEPENDS, V_PREDEPENDS, V_PROVIDES, V_ESSENTIAL,
 V_PRIORITY, V_SECTION, V_MULTIARCH, V_SOURCE, V_DESCRIPTION, V_ORIGIN) = range(16)


class SignatureError(DownloadError):
    """An InRelease file whose signature does not check out against the configured keyring."""


class SuiteError(PebuilderError):
    """base.suite cannot be built from this mirror: not there, or a suite in development whose index
    the mirror stopped renewing."""

    code = Exit.SUITE


class PackageNotFound(PebuilderError):
    """A name the merged index does not hold (or holds only as a virtual package)."""

    code = Exit.UNRESOLVABLE


# -- relations --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dep:
    """One alternative of a relation field: `name[:archqual] [(op version)]`."""

    name: str
    op: str | None = None  # one of >=, <=, =, >>, << (the obsolete < and > are read as <= and >=)
    version: str | None = None
    archqual: str | None = None  # any, native, or an architecture name

    def __str__(self) -> str:
        qual = f":{self.archqual}" if self.archqual else ""
        return f"{self.name}{qual} ({self.op} {self.version})" if self.op else f"{self.name}{qual}"


Alternatives = tuple[Dep, ...]
_OPS = {">": ">=", "<": "<="}
_PROVIDE = re.compile(r"^([a-z0-9][a-z0-9+.\-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*=\s*([^\s)]+)\s*\))?$")


def parse_relations(text: str) -> tuple[Alternatives, ...]:
    """A Depends-style field as groups of alternatives (python-debian's parser)."""
    if not text or not text.strip():
        return ()
    from debian.deb822 import PkgRelation

    groups = []
    for group in PkgRelation.parse_relations(text):
        alts = []
        for rel in group:
            op, ver = rel.get("version") or (None, None)
            alts.append(Dep(rel["name"], _OPS.get(op, op) if op else None, ver, rel.get("archqual")))
        if alts:
            groups.append(tuple(alts))
    return tuple(groups)


def parse_provides(text: str) -> list[tuple[str, str | None]]:
    """`Provides:` as (virtual name, provided version or None); a fast path for the whole index."""
    out = []
    for item in text.split(","):
        m = _PROVIDE.match(item.strip())
        if m:
            out.append((m.group(1), m.group(2)))
    return out


# -- packages ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One binary package as the merged index offers it."""

    name: str
    version: str
    arch: str
    filename: str  # pool path, relative to `uri`
    sha256: str
    size: int
    installed_size: int  # KiB
    depends_field: str
    pre_depends_field: str
    provides_field: str
    essential: bool
    priority: str
    section: str
    multi_arch: str
    source_package: str
    description: str  # the one-line synopsis
    uri: str  # the mirror it came from
    suite: str

    @cached_property
    def depends(self) -> tuple[Alternatives, ...]:
        return parse_relations(self.depends_field)

    @cached_property
    def pre_depends(self) -> tuple[Alternatives, ...]:
        return parse_relations(self.pre_depends_field)

    @cached_property
    def provides(self) -> tuple[tuple[str, str | None], ...]:
        return tuple(parse_provides(self.provides_field))

    @property
    def url(self) -> str:
        return f"{self.uri}/{self.filename}"

    @property
    def deb_name(self) -> str:
        return self.filename.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.arch})"


def version_compare(a: str, b: str) -> int:
    from debian.debian_support import version_compare as vc

    return vc(a, b)


# -- signatures -------------------------------------------------------------------------------------


def dearmor(text: str) -> bytes:
    """The binary form of an ASCII-armored key block (gpgv reads binary keyrings only)."""
    out = bytearray()
    for block in re.findall(r"-----BEGIN PGP PUBLIC KEY BLOCK-----(.*?)-----END PGP PUBLIC KEY BLOCK-----",
                            text, re.S):
        lines = block.strip().splitlines()
        # Armor headers ("Comment: …") end at the first empty line; the checksum line starts with '='.
        if "" in [ln.strip() for ln in lines]:
            lines = lines[[ln.strip() for ln in lines].index("") + 1:]
        body = "".join(ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("="))
        out += base64.b64decode(body)
    if not out:
        raise SignatureError("Signed-By holds no OpenPGP public key block")
    return bytes(out)


def judge_gpgv_status(status: str) -> str | None:
    """None when the status lines show an acceptable signature, else the reason (apt's rules:
    one valid, non-weak signature from a key that is neither expired nor revoked; no bad one)."""
    good: list[str] = []
    weak: list[str] = []
    worthless: set[str] = set()
    bad: list[str] = []
    errors: list[str] = []
    missing: list[str] = []
    for line in status.splitlines():
        if not line.startswith("[GNUPG:] "):
            continue
        parts = line[9:].split()
        if not parts:
            continue
        kw = parts[0]
        if kw == "VALIDSIG" and len(parts) > 8:
            (weak if parts[8] in WEAK_HASHES else good).append(parts[1])
        elif kw == "BADSIG":
            bad.append(" ".join(parts[1:]))
        elif kw in ("EXPKEYSIG", "REVKEYSIG", "EXPSIG") and len(parts) > 1:
            worthless.add(parts[1][-16:].upper())
        elif kw == "ERRSIG" and len(parts) > 6:
            (missing if parts[6] == "9" else errors).append(parts[1])
    if bad:
        return f"BAD signature from {bad[0]} (the file was altered after signing)"
    if errors:
        return f"signature by key {errors[0]} could not be checked"
    valid = [fp for fp in good if fp[-16:].upper() not in worthless]
    if valid:
        return None
    if weak:
        return f"signed only with a weak hash ({', '.join(sorted(set(weak)))})"
    if worthless:
        return "signed only by expired or revoked keys"
    if missing:
        return f"signed by unknown key(s) {', '.join(missing)} only"
    return "no signature found"


# -- the archive ------------------------------------------------------------------------------------


@dataclass
class _Release:
    source: Source
    files: dict[str, tuple[str, int]]  # path in dists/<suite>/ -> (sha256, size)
    by_hash: bool
    architectures: list[str]


@dataclass
class _IndexFile:
    source: Source
    component: str
    path: str  # e.g. main/binary-arm64/Packages.xz
    sha256: str
    size: int
    urls: list[str]

    @property
    def cache_name(self) -> str:
        return f"{self.source.suite}_{self.path.replace('/', '_')}"


@dataclass
class Timings:
    """Where the time of a load went (seconds); for logs and for tuning."""

    release: float = 0.0
    download: float = 0.0
    parse: float = 0.0
    load: float = 0.0
    merge: float = 0.0
    parsed_files: int = 0  # Packages files parsed in this run (0: all came from the JSON cache)


def _uri_key(uri: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", uri.split("://", 1)[-1]).strip("_")


class Archive:
    """All packages of `sources` for one architecture, merged; highest version wins."""

    def __init__(self, sources: Iterable[Source], arch: Arch, cache: DownloadCache, offline: bool = False):
        self.sources = list(sources)
        if not self.sources:
            raise ConfigError("no Debian sources to read packages from")
        self.arch = arch
        self.cache = cache
        self.offline = offline or cache.offline
        self.timings = Timings()
        self.notes: list[str] = []
        self._rows: dict[str, list] | None = None
        self._origins: list[tuple[str, str]] = []  # (uri, suite) per index file
        self._provides: dict[str, list[tuple[str, str | None]]] | None = None
        self._objects: dict[str, Package] = {}
        self.folder = cache.root / "debian"

    # -- public -----------------------------------------------------------------------------------

    def load(self) -> Archive:
        """Read (or refresh) the indexes; done once, on first use."""
        if self._rows is None:
            self._load()
        return self

    def get(self, name: str) -> Package | None:
        rows = self._index()
        obj = self._objects.get(name)
        if obj is None:
            row = rows.get(name)
            if row is None:
                return None
            uri, suite = self._origins[row[V_ORIGIN]]
            obj = Package(name, row[V_VERSION], row[V_ARCH], row[V_FILENAME], row[V_SHA256], row[V_SIZE],
                          row[V_ISIZE], row[V_DEPENDS], row[V_PREDEPENDS], row[V_PROVIDES], row[V_ESSENTIAL],
                          row[V_PRIORITY], row[V_SECTION], row[V_MULTIARCH], row[V_SOURCE] or name,
                          row[V_DESCRIPTION], uri, suite)
            self._objects[name] = obj
        return obj

    def package(self, name: str) -> Package:
        """The candidate for `name`; a clear error (with providers, if virtual) when there is none."""
        pkg = self.get(name)
        if pkg is not None:
            return pkg
        providers = self.providers(name)
        where = ", ".join(f"{s.uri} {s.suite}" for s in self.sources)
        if providers:
            raise PackageNotFound(f"{name} is a virtual package in Debian ({self.arch.debian}); pick one of: "
                                  f"{', '.join(p for p, _ in providers)}")
        raise PackageNotFound(f"no Debian package {name!r} for {self.arch.debian} in {where}; check the name "
                              "(packages.debian.org lists them)")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._index()

    def __len__(self) -> int:
        return len(self._index())

    def names(self) -> Iterator[str]:
        return iter(self._index())

    def providers(self, virtual: str) -> list[tuple[str, str | None]]:
        """Packages whose Provides names `virtual`: (package, provided version or None), by name."""
        self._index()
        assert self._provides is not None
        return list(self._provides.get(virtual, ()))

    def fetch(self, pkg: Package, progress: DownloadProgress | None = None) -> Path:
        """The package's .deb in the cache, checked against the index's SHA256."""
        path = self._get([pkg.url], pkg.sha256, pkg.deb_name, progress.add if progress else None)
        if progress:
            progress.file_done()
        return path

    def fetch_all(self, pkgs: Iterable[Package], progress: DownloadProgress | None = None) -> list[Path]:
        """Several .debs, four at a time (a mirror serves one connection slowly, many politely)."""
        pkgs = list(pkgs)
        with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="deb") as pool:
            return list(pool.map(lambda p: self.fetch(p, progress), pkgs))

    # -- loading ----------------------------------------------------------------------------------

    def _index(self) -> dict[str, list]:
        if self._rows is None:
            self._load()
        assert self._rows is not None
        return self._rows

    def _load(self) -> None:
        t0 = time.monotonic()
        files: list[_IndexFile] = []
        for src in self.sources:
            rel = self._release(src)
            if rel is None:
                continue
            for comp in src.components:
                files.append(self._index_file(rel, comp))
        if not files:
            raise DownloadError("none of the configured Debian suites could be read: "
                                + ", ".join(s.release_url for s in self.sources))
        self.timings.release = time.monotonic() - t0
        parsed = [self._parsed(f) for f in files]
        t1 = time.monotonic()
        self._merge(files, parsed)
        self.timings.merge = time.monotonic() - t1
        self._prune()
        log.info("Debian index for %s: %d packages from %d index files (%.2f s: release %.2f, download %.2f, "
                 "parse %.2f, load %.2f, merge %.2f)", self.arch.debian, len(self._rows or {}), len(files),
                 time.monotonic() - t0, self.timings.release, self.timings.download, self.timings.parse,
                 self.timings.load, self.timings.merge)

    def _merge(self, files: list[_IndexFile], parsed: list[dict[str, list]]) -> None:
        """One table for all index files (rows are the freshly loaded ones, extended in place)."""
        self._origins = [(f.source.uri, f.source.suite) for f in files]
        gc.disable()
        try:
            rows: dict[str, list] = {}
            for origin, table in enumerate(parsed):
                if not rows:
                    for row in table.values():
                        row.append(origin)
                    rows = table
                    continue
                for name, row in table.items():
                    old = rows.get(name)
                    if old is None or (row[V_VERSION] != old[V_VERSION]
                                       and version_compare(row[V_VERSION], old[V_VERSION]) > 0):
                        row.append(origin)
                        rows[name] = row
            provides: dict[str, list[tuple[str, str | None]]] = {}
            for name, row in rows.items():
                if row[V_PROVIDES]:
                    for virtual, ver in parse_provides(row[V_PROVIDES]):
                        provides.setdefault(virtual, []).append((name, ver))
            for lst in provides.values():
                lst.sort()
        finally:
            gc.enable()
        self._rows = rows
        self._provides = provides

    def _release(self, src: Source) -> _Release | None:
        """The verified, parsed InRelease of one source (None: an optional pocket that is absent)."""
        store = self.folder / "dists" / _uri_key(src.uri) / src.suite / "InRelease"
        url = src.release_url
        _, pocket = split_suite(src.suite)
        if self.offline:
            if not store.is_file():
                raise DownloadError(f"{url}: no verified copy in the cache ({store}) and offline mode is on; "
                                    "run once with network access")
            raw = store.read_bytes()
        else:
            try:
                raw = fetch_bytes(url, self.cache.policy, limit=RELEASE_LIMIT)
            except NotFound:
                if pocket is not None:
                    msg = f"{url} does not exist; building without {src.suite}"
                    log.warning("%s", msg)
                    self.notes.append(msg)
                    return None
                raise SuiteError(f"base.suite = \"{src.suite}\" ({describe(src.suite)}): {src.uri} has no such suite "
                                 f"({url} not found); set base.suite to one it carries, such as \"trixie\", or "
                                 "[base] mirror to a mirror that has it") from None
        text = self._verify(src, raw)
        from debian.deb822 import Release

        rel = Release(text)
        names = {rel.get("Suite", ""), rel.get("Codename", "")}
        if src.suite not in names:
            log.warning("%s: says Suite %s / Codename %s, not %s", url, rel.get("Suite"), rel.get("Codename"),
                        src.suite)
        self._check_valid_until(url, rel.get("Valid-Until"), fresh=not self.offline, suite=src.suite)
        if not self.offline:
            with atomic_output(store) as tmp:
                tmp.write_bytes(raw)
        files = {}
        for entry in rel.get("SHA256", []):
            files[entry["name"]] = (entry["sha256"].lower(), int(entry["size"]))
        if not files:
            raise SignatureError(f"{url}: lists no SHA256 checksums; refusing an index that cannot be verified")
        return _Release(src, files, rel.get("Acquire-By-Hash", "").strip().lower() == "yes",
                        rel.get("Architectures", "").split())

    def _check_valid_until(self, url: str, value: str | None, fresh: bool, suite: str = "") -> None:
        if not value:
            return
        try:
            until = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            raise SignatureError(f"{url}: unreadable Valid-Until {value!r}") from None
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        if until < datetime.now(UTC):
            msg = (f"{url} expired on {value} (Valid-Until); the mirror is out of date or the clock is wrong")
            if fresh and split_suite(suite)[0] in UNRELEASED:
                # A suite in development re-signs its index daily, valid for a week: an expired one is a
                # mirror that stopped following it (a snapshot, a frozen proxy), not a transient failure.
                raise SuiteError(f"base.suite = \"{suite}\" ({describe(suite)}): the mirror's index expired on "
                                 f"{value} ({url}, Valid-Until), so this mirror no longer follows {suite}; build "
                                 f"a released suite (base.suite = \"{TESTED[-1]}\") or set [base] mirror to a "
                                 "current mirror")
            if fresh:
                raise SignatureError(msg + "; try another mirror with [base] mirror = …")
            log.warning("%s; offline mode reuses the copy verified earlier", msg)
            self.notes.append(msg)

    def _verify(self, src: Source, raw: bytes) -> str:
        """The signed text of an InRelease, as gpgv vouches for it."""
        if which("gpgv") is None:
            raise ToolMissingError("gpgv is needed to check Debian's signatures; install it with: "
                                   "apt-get install gpgv")
        url = src.release_url
        tmp_root = self.cache.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tmp_root, prefix="gpgv.") as d:
            folder = Path(d)
            keyring = self._keyring(src, folder)
            if not keyring.is_file():
                raise SignatureError(f"{url}: keyring {keyring} is missing; install debian-archive-keyring or "
                                     "fix Signed-By")
            signed = folder / "InRelease"
            signed.write_bytes(raw)
            out, status = folder / "signed.txt", folder / "status"
            # gpgv also fails when one of several signatures is from an unknown key: judged below.
            with contextlib.suppress(ToolFailedError):
                run(["gpgv", "--status-fd", "1", "--keyring", keyring, "--output", out, signed],
                    stdout_to=status, what=f"checking the signature of {url}", code=Exit.DOWNLOAD)
            reason = judge_gpgv_status(status.read_text(errors="replace") if status.exists() else "")
            if reason is not None:
                raise SignatureError(f"{url}: signature check against {keyring} failed: {reason}; refusing this "
                                     "mirror's index (a proxy altering files, or a keyring too old: update "
                                     "debian-archive-keyring)")
            return out.read_text(errors="replace")

    def _keyring(self, src: Source, folder: Path) -> Path:
        if src.signed_by_key:
            path = folder / "inline.gpg"
            path.write_bytes(dearmor(src.signed_by_key))
            return path
        keyring = src.signed_by or DEFAULT_KEYRING
        if keyring.suffix == ".asc" and keyring.is_file():
            path = folder / "keyring.gpg"
            path.write_bytes(dearmor(keyring.read_text(errors="replace")))
            return path
        return keyring

    def _index_file(self, rel: _Release, comp: str) -> _IndexFile:
        src = rel.source
        base = f"{comp}/binary-{self.arch.debian}/Packages"
        for ext in (".xz", ".gz", ""):
            if base + ext in rel.files:
                path = base + ext
                break
        else:
            archs = " ".join(rel.architectures) or "not listed"
            raise DownloadError(f"{src.release_url} lists no {base}.xz: {src.suite} on {src.uri} has no {comp} "
                                f"index for {self.arch.debian} (architectures: {archs})")
        sha, size = rel.files[path]
        plain = f"{src.uri}/dists/{src.suite}/{path}"
        urls = [plain]
        if rel.by_hash:
            urls.insert(0, f"{src.uri}/dists/{src.suite}/{comp}/binary-{self.arch.debian}/by-hash/SHA256/{sha}")
        return _IndexFile(src, comp, path, sha, size, urls)

    def _parsed(self, f: _IndexFile) -> dict[str, list]:
        """{name: row} of one Packages file: from the JSON cache, or downloaded and parsed."""
        cached = self.folder / "index" / f"packages-{INDEX_FORMAT}-{f.sha256}.json"
        t0 = time.monotonic()
        if cached.is_file():
            try:
                gc.disable()  # ~60,000 small lists: the collector would walk them all, for nothing
                with open(cached, "rb") as fh:
                    table = json.load(fh)
                with contextlib.suppress(OSError):
                    os.utime(cached)
                self.timings.load += time.monotonic() - t0
                return table
            except (OSError, ValueError) as exc:
                log.info("%s unreadable (%s); parsing the index again", cached, exc)
            finally:
                gc.enable()
        path = self._get(f.urls, f.sha256, f.cache_name, None)
        t1 = time.monotonic()
        self.timings.download += t1 - t0
        with _open_index(path) as stream:
            table = parse_packages(stream, f.urls[-1])
        self.timings.parse += time.monotonic() - t1
        self.timings.parsed_files += 1
        with atomic_output(cached) as tmp, open(tmp, "w") as out:
            json.dump(table, out, separators=(",", ":"))
        return table

    def _get(self, urls: list[str], sha256: str, name: str, progress: Callable[[int], None] | None) -> Path:
        if self.offline:
            found = self.cache.lookup("sha256", sha256, name)
            if found is None:
                raise DownloadError(f"{name} (sha256 {sha256[:16]}…) is not in the cache {self.cache.root} and "
                                    f"offline mode is on; run once with network access to fetch {urls[-1]}")
            return found
        return self.cache.get(urls, "sha256", sha256, name, progress)

    def _prune(self) -> None:
        """Forget parsed indexes nobody read for a month (each bookworm main one is ~27 MB)."""
        folder = self.folder / "index"
        limit = time.time() - PRUNE_AFTER
        with contextlib.suppress(OSError):
            for p in folder.iterdir():
                with contextlib.suppress(OSError):
                    if p.stat().st_mtime < limit:
                        p.unlink()


def _open_index(path: Path) -> IO[bytes]:
    with open(path, "rb") as probe:
        magic = probe.read(6)
    if magic.startswith(b"\xfd7zXZ"):
        return lzma.open(path, "rb")
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")  # noqa: SIM115 - returned to a with-block


def parse_packages(stream: IO[bytes], what: str) -> dict[str, list]:
    """Rows of a Packages stream, one per name (the highest version if a name repeats)."""
    from debian.deb822 import Deb822

    table: dict[str, list] = {}
    try:
        for para in Deb822.iter_paragraphs(stream, fields=FIELDS, use_apt_pkg=False):
            get = para.get
            name = get("Package")
            version = get("Version")
            if not name or not version or not get("Filename") or not get("SHA256"):
                continue  # not installable from this index (no file or no checksum)
            row = [version, get("Architecture", ""), get("Filename"), (get("SHA256") or "").lower(), _int(get("Size")),
                   _int(get("Installed-Size")), get("Depends", ""), get("Pre-Depends", ""), get("Provides", ""),
                   get("Essential", "").strip().lower() == "yes", get("Priority", ""), get("Section", ""),
                   get("Multi-Arch", ""), (get("Source", "") or "").split(" ", 1)[0],
                   get("Description", "").split("\n", 1)[0].strip()]
            old = table.get(name)
            if old is None or version_compare(version, old[V_VERSION]) > 0:
                table[name] = row
    except (EOFError, lzma.LZMAError, OSError, UnicodeDecodeError) as exc:
        raise DownloadError(f"{what}: damaged index ({exc}); delete it from the cache and retry") from None
    return table


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
