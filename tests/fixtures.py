"""Where the tests find the real Tiny Core files, and how a fresh clone gets them.

Looked for, in order:

1. `$PEBUILDER_FIXTURES` (a folder laid out like ../shared/fixtures/tinycore);
2. `../shared/fixtures/tinycore`, beside the repository (the developers' machines);
3. the test cache (`$PEBUILDER_CACHE/fixtures/tinycore`, i.e. `.test-cache/` in the repository),
   filled from Tiny Core's official mirror on first use.

Every file is pinned by md5 (and size): the values below are those of the fixture folder the suite was
written against. Tiny Core rebuilds extensions upstream from time to time, so a download that does
not match its pin is refused (the fixtures are then "not available"), never used: a test passing
against other bytes would prove nothing. Downloads land in a content store named by md5 after they
verified, and the folder is assembled beside its final place and renamed into it, so an interrupted
or corrupt download never looks like fixtures; a file lock keeps the pytest-xdist workers from
downloading the same files at once.

The mirror layout (see the fixtures' README): `<major>.x/<arch>/release/distribution_files/<file>`
for the base files, the isolinux folder from `boot/isolinux/` of the release's CorePure64 ISO, and
`<major>.x/<arch>/tcz/<name>` for extensions. `PEBUILDER_TC_MIRROR` replaces the mirror list (one
or more base URLs, separated by spaces or commas; `off` disables downloading).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "fixtures" / "tinycore"
MIRRORS = ("http://tinycorelinux.net/", "http://distro.ibiblio.org/tinycorelinux/")
ISO = "6.x/x86_64/release/CorePure64-6.4.1.iso"  # the isolinux folder is its boot/isolinux/
TIMEOUT = 20.0  # seconds without progress before a mirror counts as unreachable
UNREACHABLE_FOR = 600.0  # a mirror that did not answer is not asked again for this long (xdist workers, reruns)

# relative path in the fixtures folder: (md5, size)
PINS: dict[str, tuple[str, int]] = {
    "tc6.4.1-x86_64/rootfs64.gz": ("6187ed2d81767543594fee0df5a21e12", 3051108),
    "tc6.4.1-x86_64/vmlinuz64": ("c4f46b5cd826d7a765a3e85439309cfc", 3576672),
    "tc6.x-corepure64-isolinux/boot.msg": ("c5aae2363fa4593f37e57ffa391d2535", 181),
    "tc6.x-corepure64-isolinux/f2": ("483d46f73bc9f4aac1acd1443fbd7a8d", 871),
    "tc6.x-corepure64-isolinux/f3": ("d4de7cc1c3fbc9f1d602033001fa05c0", 1067),
    "tc6.x-corepure64-isolinux/f4": ("e64fe2746ddec68b60d697493e534fc6", 937),
    "tc6.x-corepure64-isolinux/isolinux.bin": ("5297c54a14898ba5ff6bf2295b7b4af1", 24576),  # see BOOT_INFO
    "tc6.x-corepure64-isolinux/isolinux.cfg": ("3f08f9fdb210928a9d3b17291cb009a0", 188),
    "tcz-14.x-x86_64/db.tcz": ("6934cba98a2d26c5a06084ea28d5503d", 94208),
    "tcz-14.x-x86_64/db.tcz.dep": ("d32161c33ec25533fc7b564a6dd411c7", 10),
    "tcz-14.x-x86_64/db.tcz.md5.txt": ("412a4822764317b43b922a92fa2baa72", 41),
    "tcz-14.x-x86_64/dialog.tcz": ("ced82a003092d2edc52667f33d5901a3", 94208),
    "tcz-14.x-x86_64/dialog.tcz.dep": ("64ea0e29c82351e1f1e04ce4eb91d656", 13),
    "tcz-14.x-x86_64/dialog.tcz.info": ("8ece09ff17518a37f8ff7d0957334a6b", 737),
    "tcz-14.x-x86_64/dialog.tcz.md5.txt": ("7182a6f3f3a131f4fe04693dff2bf220", 45),
    "tcz-14.x-x86_64/ethtool.tcz": ("40a342efddb37121aee0855222d50bb1", 122880),
    "tcz-14.x-x86_64/ethtool.tcz.md5.txt": ("5fb69e9e315b8cc4720a6729cb348bfe", 46),
    "tcz-14.x-x86_64/getlocale.tcz": ("82f12e69ea4e56f81c13c29f8f6e2c36", 4096),
    "tcz-14.x-x86_64/getlocale.tcz.dep": ("567e2fac456ee91c1bba6d78e4d18e4a", 83),
    "tcz-14.x-x86_64/getlocale.tcz.info": ("5e9bb0fb5f7aa1a763f3170a0efa02c1", 1079),
    "tcz-14.x-x86_64/getlocale.tcz.md5.txt": ("1c2946db4d45ba7869a63062cd6b7044", 48),
    "tcz-14.x-x86_64/iproute2.tcz": ("cb242309d7b4948aa79119b4b9269ec5", 643072),
    "tcz-14.x-x86_64/iproute2.tcz.dep": ("e87cc5eb9dd0ce9e210b91d844a33069", 7),
    "tcz-14.x-x86_64/iproute2.tcz.md5.txt": ("4bbb470fb7f8b603f842f8afb6a4e538", 47),
    "tcz-14.x-x86_64/kmaps.tcz": ("0027d2832648ab00d769e41aa3f541af", 143360),
    "tcz-14.x-x86_64/kmaps.tcz.md5.txt": ("8af8e48d19937948fa1b15f254440305", 44),
    "tcz-14.x-x86_64/libzstd.tcz": ("13a8b50e538db90276ab8ed4d5647f0f", 315392),
    "tcz-14.x-x86_64/libzstd.tcz.md5.txt": ("aa27f9f34eb1987828dc10186fadca61", 46),
    "tcz-14.x-x86_64/scsi-6.1.2-tinycore64.tcz": ("b6c8f7ee9b3e28eb51507186b95c579f", 2809856),
    "tcz-14.x-x86_64/scsi-6.1.2-tinycore64.tcz.md5.txt": ("5e36bb3a8a591a86036f6b427caf0ef0", 60),
    "tcz-14.x-x86_64/squashfs-tools.tcz": ("a44331fa2117314e62267147b6876a49", 118784),
    "tcz-14.x-x86_64/squashfs-tools.tcz.dep": ("6de7d77c2184fd9d504e8a48f56d61da", 32),
    "tcz-14.x-x86_64/squashfs-tools.tcz.md5.txt": ("dcbcf6d2a376324a85919042a4bbf548", 53),
}
# Files whose pin is the md5 with bytes [start, end) zeroed. mkisofs/xorriso -boot-info-table write the
# ISO's own layout (LBAs, checksum) into bytes 8-63 of isolinux.bin, so the copy inside the release
# ISO differs there from the fixture (taken from another ISO); every other byte must match.
BOOT_INFO = {"tc6.x-corepure64-isolinux/isolinux.bin": (8, 64)}
# fixtures folder -> where the same files sit on a Tiny Core mirror
FOLDERS = {
    "tc6.4.1-x86_64/": "6.x/x86_64/release/distribution_files/",
    "tc6.x-corepure64-isolinux/": f"{ISO}!boot/isolinux/",  # members of the ISO
    "tcz-14.x-x86_64/": "14.x/x86_64/tcz/",
}


class FixturesUnavailable(Exception):
    """The pinned files could not be had from any mirror; the message says which and why."""


@dataclass
class Located:
    """The answer of `locate`: a complete fixtures folder, or why there is none."""

    folder: Path | None
    source: str  # "PEBUILDER_FIXTURES", "../shared", "test cache", "download", or "" when absent
    expected: Path  # where the files would be (the test cache) when there is no folder
    notes: list[str] = field(default_factory=list)  # what was looked at, in order

    @property
    def reason(self) -> str:
        return "; ".join(self.notes)


def pins_digest() -> str:
    """Names the pin set: a cached folder made for other pins is assembled again."""
    return hashlib.sha256(json.dumps(PINS, sort_keys=True).encode()).hexdigest()


def mirror_location(rel: str) -> tuple[str, str | None]:
    """(path on a mirror, member inside that file or None) of a pinned file."""
    for local, remote in FOLDERS.items():
        if rel.startswith(local):
            name = rel[len(local):]
            if "!" in remote:
                archive, member = remote.split("!", 1)
                return archive, member + name
            return remote + name, None
    raise KeyError(rel)


def missing_from(folder: Path) -> list[str]:
    """Pinned files a folder lacks (existence only: a local folder is the developer's, and trusted)."""
    return [rel for rel in PINS if not (folder / rel).is_file()]


def mirrors_from(env: Mapping[str, str]) -> list[str]:
    given = env.get("PEBUILDER_TC_MIRROR", "").replace(",", " ").split()
    if [m.lower() for m in given] in (["off"], ["none"], ["0"]):
        return []
    return [m if m.endswith("/") else m + "/" for m in given] or list(MIRRORS)


def cache_root(env: Mapping[str, str]) -> Path:
    return Path(env.get("PEBUILDER_CACHE") or ROOT / ".test-cache") / "fixtures"


def locate(env: Mapping[str, str] | None = None, shared: Path = SHARED, *, download: bool = True,
           timeout: float = TIMEOUT) -> Located:
    """The first complete fixtures folder: $PEBUILDER_FIXTURES, ../shared, the test cache, a download."""
    env = os.environ if env is None else env
    cache = cache_root(env)
    final = cache / "tinycore"
    notes: list[str] = []
    explicit = env.get("PEBUILDER_FIXTURES")
    candidates = [(Path(explicit), "PEBUILDER_FIXTURES")] if explicit else []
    candidates.append((shared, "../shared"))
    for folder, source in candidates:
        if not folder.is_dir():
            notes.append(f"{source}: {folder} does not exist")
            continue
        lacking = missing_from(folder)
        if lacking:
            notes.append(f"{source}: {folder} lacks {len(lacking)} pinned files ({', '.join(lacking[:3])}, ...)")
            continue
        return Located(folder, source, final, notes)
    if _cached(final):
        return Located(final, "test cache", final, notes)
    mirrors = mirrors_from(env)
    if not download or not mirrors:
        notes.append("downloading is off (PEBUILDER_TC_MIRROR=off)" if download else "not downloaded")
        return Located(None, "", final, notes)
    try:
        folder = fetch(cache, mirrors, timeout=timeout)
    except FixturesUnavailable as exc:
        notes.append(f"download into {final} failed: {exc}")
        return Located(None, "", final, notes)
    return Located(folder, "download", final, notes)


def _cached(final: Path) -> bool:
    try:
        return (final / ".pins").read_text() == pins_digest() and not missing_from(final)
    except OSError:
        return False


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def fetch(cache: Path, mirrors: list[str], timeout: float = TIMEOUT) -> Path:
    """Download what the content store lacks, verify each file against its pin, assemble the folder.

    Returns `cache/tinycore`; raises FixturesUnavailable naming every file no mirror gave intact."""
    final = cache / "tinycore"
    with _locked(cache):
        if _cached(final):  # another worker finished while this one waited
            return final
        marker = cache / ".unreachable.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            seen = json.loads(marker.read_text())
            if seen["mirrors"] == mirrors and time.time() - seen["time"] < UNREACHABLE_FOR:
                raise FixturesUnavailable(f"{seen['reason']} (not asked again for {UNREACHABLE_FOR / 60:.0f} "
                                          f"minutes; remove {marker} to retry now)")
        store = cache / "files"
        store.mkdir(exist_ok=True)
        session = _Session(mirrors, store, timeout)
        wanted = [rel for rel in PINS if not _stored(store, rel).is_file()]
        by_source: dict[str, list[str]] = {}
        for rel in wanted:
            by_source.setdefault(mirror_location(rel)[0], []).append(rel)
        for remote, rels in by_source.items():
            if len(session.dead) == len(mirrors):
                reason = "no mirror answered: " + "; ".join(session.dead.values())
                with contextlib.suppress(OSError):
                    marker.write_text(json.dumps({"mirrors": mirrors, "time": time.time(), "reason": reason}))
                raise FixturesUnavailable(reason)
            session.get(remote, rels)
        if session.errors:
            shown = session.errors[:4] + ([f"and {len(session.errors) - 4} more"] if len(session.errors) > 4 else [])
            raise FixturesUnavailable("; ".join(shown))
        marker.unlink(missing_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tinycore-", dir=cache))
        try:
            for rel in PINS:
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(_stored(store, rel), target)  # the store's files are read-only: sharing them is safe
                except OSError:
                    shutil.copyfile(_stored(store, rel), target)
                    target.chmod(0o444)
            (staging / ".pins").write_text(pins_digest())
            if final.exists():  # made for other pins, or damaged: replaced whole
                shutil.rmtree(final)
            os.rename(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final


def _stored(store: Path, rel: str) -> Path:
    md5, _ = PINS[rel]
    return store / f"{md5}-{rel.rsplit('/', 1)[-1]}"


def pinned_md5(path: Path, rel: str) -> str:
    """The md5 that is compared with PINS[rel] (with the ISO-specific boot info table zeroed)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        if rel in BOOT_INFO:
            start, end = BOOT_INFO[rel]
            data = bytearray(f.read())
            data[start:end] = bytes(end - start)
            h.update(data)
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _Session:
    """One download attempt over the mirrors, in order; a mirror that does not answer is dropped."""

    def __init__(self, mirrors: list[str], store: Path, timeout: float):
        self.mirrors = mirrors
        self.store = store
        self.timeout = timeout
        self.dead: dict[str, str] = {}  # mirror -> why it is not asked again
        self.errors: list[str] = []

    def get(self, remote: str, rels: list[str]) -> None:
        """Put `rels` (all at `remote`, the file itself or members of it) into the store, verified."""
        problems = []
        for base in self.mirrors:
            if base in self.dead:
                continue
            url = base + remote
            with tempfile.TemporaryDirectory(dir=self.store, prefix=".dl-") as tmp:
                got = Path(tmp) / remote.rsplit("/", 1)[-1]
                try:
                    self._download(url, got)
                except urllib.error.HTTPError as exc:
                    problems.append(f"{url}: HTTP {exc.code}" + (" (absent on this mirror)" if exc.code == 404 else ""))
                    continue
                except (urllib.error.URLError, OSError) as exc:
                    why = getattr(exc, "reason", exc)
                    self.dead[base] = f"{base} unreachable ({why})"
                    problems.append(self.dead[base])
                    continue
                bad = self._keep(got, rels, url, Path(tmp))
                if not bad:
                    return
                problems += bad
        self.errors.append(f"{', '.join(rels)}: " + "; ".join(problems or ["no mirror to ask"]))

    def _download(self, url: str, dest: Path) -> None:
        req = urllib.request.Request(url, headers={"User-Agent": "pebuilder-tests"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)

    def _keep(self, got: Path, rels: list[str], url: str, tmp: Path) -> list[str]:
        """Verify and store; returns what did not match its pin (nothing of it is kept)."""
        members = {rel: mirror_location(rel)[1] for rel in rels}
        files: dict[str, Path] = {}
        if any(members.values()):
            out = tmp / "members"
            out.mkdir()
            try:
                for rel, member in members.items():
                    target = out / rel.rsplit("/", 1)[-1]
                    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(got), "-extract", f"/{member}",
                                    str(target)], check=True, capture_output=True)
                    files[rel] = target
            except (OSError, subprocess.CalledProcessError) as exc:
                return [f"{url}: could not take {', '.join(m for m in members.values() if m)} out of it ({exc})"]
        else:
            files = {rels[0]: got}
        bad = []
        for rel, path in files.items():
            md5, size = PINS[rel]
            have = path.stat().st_size if path.is_file() else -1
            digest = pinned_md5(path, rel) if have == size else "-"
            if digest != md5:
                member = members[rel]
                bad.append(f"{url}{'!' + member if member else ''}: md5 {digest} (size {have}) is not "
                           f"the pinned {md5} (size {size}); refused")
        if bad:
            return bad
        for rel, path in files.items():
            os.chmod(path, 0o444)
            os.replace(path, _stored(self.store, rel))
        return []
