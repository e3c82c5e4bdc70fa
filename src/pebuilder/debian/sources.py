"""Which Debian mirror to read: the host's own apt configuration, never a mirror named in code.

A builder that hard-codes deb.debian.org breaks behind a proxy or a local mirror and ignores the
keys the administrator chose. So the mirrors (and their Signed-By keyrings) come from
/etc/apt/sources.list and /etc/apt/sources.list.d/ (one-line `.list` and deb822 `.sources`), and
an explicit `[base] mirror = "http://..."` replaces them when given.

Rules, kept simple on purpose:

- For the host's own suite (say bookworm) the answer is the host's `deb` entries for `bookworm`,
  `bookworm-updates` and `bookworm-security` that carry `main`.
- For another suite (say trixie on a bookworm host), each host mirror is reused with the new suite
  name: the mirror that serves the host's plain suite gets `trixie`, and `trixie-updates` when the
  host has `bookworm-updates` there; the mirror that serves `bookworm-security` gets
  `trixie-security`. unstable/sid/experimental have neither updates nor security suites.
- An explicit mirror gives `<suite>` and `<suite>-updates` (no security: that lives elsewhere).

Only `main` is indexed by default; `http`/`https` URIs only (cdrom:, file:, mirror+…: skipped).
Signed-By may name keyring files or embed a key block; fingerprints in Signed-By are ignored (the
whole keyring is trusted, as apt does without them).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pebuilder.errors import ConfigError

log = logging.getLogger("pebuilder.debian")

APT_ETC = Path("/etc/apt")
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
NO_UPDATES = frozenset({"sid", "unstable", "experimental", "rc-buggy"})
POCKETS = ("updates", "security", "backports", "proposed-updates", "backports-sloppy")
# Debian's codenames and aliases: what tells a Debian entry from a third-party repository
# (nodesource, Google Cloud, …) that also says "deb … main".
DEBIAN_SUITES = frozenset({
    "buzz", "rex", "bo", "hamm", "slink", "potato", "woody", "sarge", "etch", "lenny", "squeeze", "wheezy",
    "jessie", "stretch", "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "stable", "oldstable", "oldoldstable", "testing", "unstable", "experimental", "rc-buggy",
})
# Release numbers of the codenames, and the releases pebuilder is tested with (its default first: the
# README says why bookworm is still the default). Others are built with a warning; when one cannot be
# built, the error names base.suite (Exit.SUITE) instead of a bare download failure.
RELEASES = {"buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13", "forky": "14", "duke": "15"}
TESTED = ("bookworm", "trixie")
UNRELEASED = frozenset({"forky", "duke", "testing", "sid", "unstable", "experimental", "rc-buggy"})
NO_MIRROR = ("no Debian mirror configured in /etc/apt/sources.list(.d); set [base] mirror = "
             "\"http://deb.debian.org/debian\" (or your local mirror) in the configuration")


@dataclass(frozen=True)
class Source:
    """One `deb URI SUITE COMPONENTS` line: where `dists/<suite>/InRelease` lives."""

    uri: str  # without a trailing slash
    suite: str
    components: tuple[str, ...] = ("main",)
    signed_by: Path | None = None  # keyring file for gpgv; None: Debian's archive keyring
    signed_by_key: str | None = None  # an OpenPGP key block embedded in a deb822 Signed-By field

    @property
    def release_url(self) -> str:
        return f"{self.uri}/dists/{self.suite}/InRelease"

    def __str__(self) -> str:
        return f"{self.uri} {self.suite} {' '.join(self.components)}"


@dataclass(frozen=True)
class _Entry:
    """A host entry before suite selection (one per URI × suite)."""

    types: tuple[str, ...]
    uri: str
    suite: str
    components: tuple[str, ...]
    signed_by: Path | None
    signed_by_key: str | None
    origin: str  # file it came from, for messages


def split_suite(suite: str) -> tuple[str, str | None]:
    """'bookworm-security' → ('bookworm', 'security'); 'bookworm' → ('bookworm', None)."""
    for pocket in sorted(POCKETS, key=len, reverse=True):
        if suite.endswith("-" + pocket):
            return suite[: -len(pocket) - 1], pocket
    return suite, None


def _is_debian(entry: _Entry) -> bool:
    base, _ = split_suite(entry.suite.split("/")[0])
    return base in DEBIAN_SUITES or (entry.signed_by is not None and entry.signed_by.name.startswith("debian-"))


def _normal_uri(uri: str) -> str | None:
    parts = urlsplit(uri.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return uri.strip().rstrip("/")


def parse_mirror(url: str, suite: str, signed_by: Path | None = None) -> list[Source]:
    """An explicit mirror: `<suite>` and `<suite>-updates` there, main only."""
    uri = _normal_uri(url)
    if uri is None:
        raise ConfigError(f"[base] mirror = {url!r} is not an http:// or https:// URL of a Debian mirror "
                          "(such as http://deb.debian.org/debian)")
    suites = [suite] if split_suite(suite)[0] in NO_UPDATES else [suite, f"{suite}-updates"]
    return [Source(uri, s, ("main",), signed_by) for s in suites]


def _signed_by(value: str) -> tuple[Path | None, str | None]:
    value = value.strip()
    if not value:
        return None, None
    if "BEGIN PGP PUBLIC KEY BLOCK" in value:
        # deb822 folds the block: each line indented, empty lines written as " .".
        lines = ["" if ln.strip() == "." else ln.strip() for ln in value.splitlines() if ln.strip()]
        return None, "\n".join(lines) + "\n"
    paths = [Path(p) for p in re.split(r"[\s,]+", value) if p.startswith("/")]
    if len(paths) > 1:
        log.info("Signed-By names %d keyrings; using %s", len(paths), paths[0])
    return (paths[0] if paths else None), None


def _parse_one_line(text: str, origin: str) -> list[_Entry]:
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        options: dict[str, str] = {}
        m = re.match(r"^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            log.info("%s: cannot read %r; skipping it", origin, raw)
            continue
        kind, opts, uri, suite, comps = m.groups()
        for opt in (opts or "").split():
            key, _, val = opt.partition("=")
            options[key.lower()] = val
        norm = _normal_uri(uri)
        if norm is None:
            continue
        signed, key = _signed_by(options.get("signed-by", "").replace(",", " "))
        entries.append(_Entry((kind,), norm, suite, tuple(comps.split()), signed, key, origin))
    return entries


def _parse_deb822(text: str, origin: str) -> list[_Entry]:
    from debian import deb822

    entries = []
    for para in deb822.Deb822.iter_paragraphs(text.splitlines(True), use_apt_pkg=False):
        if para.get("Enabled", "yes").strip().lower() == "no":
            continue
        types = tuple(para.get("Types", "").split())
        signed, key = _signed_by(para.get("Signed-By", ""))
        comps = tuple(para.get("Components", "").split())
        for uri in para.get("URIs", "").split():
            norm = _normal_uri(uri)
            if norm is None:
                continue
            for suite in para.get("Suites", "").split():
                entries.append(_Entry(types, norm, suite, comps, signed, key, origin))
    return entries


def _host_entries(apt_etc: Path) -> list[_Entry]:
    files: list[Path] = []
    main = apt_etc / "sources.list"
    if main.is_file():
        files.append(main)
    folder = apt_etc / "sources.list.d"
    if folder.is_dir():
        files.extend(sorted(p for p in folder.iterdir() if p.suffix in (".list", ".sources") and p.is_file()))
    entries: list[_Entry] = []
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError as exc:
            log.info("cannot read %s (%s); skipping it", f, exc)
            continue
        entries.extend(_parse_deb822(text, str(f)) if f.suffix == ".sources" else _parse_one_line(text, str(f)))
    return entries


def host_sources(suite: str, apt_etc: Path = APT_ETC, components: tuple[str, ...] = ("main",)) -> list[Source]:
    """The host's Debian mirrors for `suite` (see the module docstring for the rules)."""
    usable = [e for e in _host_entries(apt_etc)
              if "deb" in e.types and "main" in e.components and _is_debian(e)]
    if not usable:
        raise ConfigError(NO_MIRROR)
    base, _ = split_suite(suite)
    wanted = [suite] if base in NO_UPDATES else [suite, f"{suite}-updates", f"{suite}-security"]

    def make(uri: str, s: str, like: _Entry) -> Source:
        return Source(uri, s, components, like.signed_by, like.signed_by_key)

    out: list[Source] = []
    seen: set[tuple[str, str]] = set()

    def add(src: Source) -> None:
        if (src.uri, src.suite) not in seen:
            seen.add((src.uri, src.suite))
            out.append(src)

    direct = [e for e in usable if e.suite in wanted]
    if any(e.suite == suite for e in direct):
        for want in wanted:
            for e in direct:
                if e.suite == want:
                    add(make(e.uri, e.suite, e))
        return out

    # Another suite than the host's: reuse each host mirror with the new name.
    for e in usable:
        _, pocket = split_suite(e.suite)
        if pocket is None:
            add(make(e.uri, suite, e))
    for e in usable:
        _, pocket = split_suite(e.suite)
        if pocket in ("updates", "security") and base not in NO_UPDATES:
            add(make(e.uri, f"{suite}-{pocket}", e))
    if not any(s.suite == suite for s in out):
        raise ConfigError(NO_MIRROR)
    # Keep the order suite, -updates, -security, as for the host's own suite.
    order = {s: i for i, s in enumerate(wanted)}
    out.sort(key=lambda s: order.get(s.suite, len(order)))
    return out


def sources_for(suite: str, mirror: str | None = None, apt_etc: Path = APT_ETC) -> list[Source]:
    """What a build uses: the explicit `[base] mirror` when set, else the host's configuration."""
    return parse_mirror(mirror, suite) if mirror else host_sources(suite, apt_etc)


def describe(suite: str) -> str:
    """'forky' → 'Debian 14 "forky", not released yet'; for messages about base.suite."""
    base, _ = split_suite(suite)
    number = RELEASES.get(base)
    if number:
        return f"Debian {number} \"{base}\"" + (", not released yet" if base in UNRELEASED else "")
    if base in UNRELEASED:
        return "Debian's development suite"
    if base in DEBIAN_SUITES:
        return "an alias that moves with each Debian release"
    return "not a Debian release name pebuilder knows"


def untested_note(suite: str) -> str | None:
    """A warning for a suite pebuilder is not tested with (None for bookworm and trixie)."""
    base, _ = split_suite(suite)
    if base in TESTED:
        return None
    return (f"base.suite = \"{suite}\" ({describe(suite)}) is not a release pebuilder is tested with "
            f"({', '.join(TESTED)}); building it anyway")
