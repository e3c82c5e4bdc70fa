"""Content hashes of stage inputs and outputs: files, whole trees, plain values, pebuilder itself.

File hashes are remembered by (path, size, mtime, inode), like git's index, so an unchanged 1 GB ISO
is read once, not on every run; within one run each file is looked at once. Trees are walked with
os.scandir and one lstat per entry: a no-op run over an initrd tree of thousands of files costs
that walk and no reads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from pebuilder.fsutil import file_sha256, write_text_atomic


class HashCache:
    """sha256 of files, remembered across runs by (size, mtime_ns, inode) and within a run by path."""

    def __init__(self, path: Path, ours: list[Path] | None = None):
        self.path = path
        # Folders only pebuilder writes, and never in place (atomic replace gives a new inode): the work
        # folder and the download cache. Files anywhere else may be edited in place within one timestamp
        # tick of being read ("racy" in git's terms), so a fresh record of one is not trusted next run.
        self.ours = tuple(os.path.abspath(o) + os.sep for o in ours or [])
        self.data: dict[str, list[Any]] = {}
        try:
            with open(path, "rb") as f:
                loaded = json.loads(f.read())
            self.data = loaded if isinstance(loaded, dict) else {}
        except FileNotFoundError:
            pass
        except ValueError:
            self.data = {}  # a damaged record only costs a re-read
        self.dirty = False
        self.memo: dict[str, str] = {}  # this run's answers: each path is looked at once per run
        self.reads = 0  # files whose content was read (a no-op run reads none)
        self.lookups = 0

    def file(self, p: Path | str) -> str:
        key = os.path.abspath(p)
        self.lookups += 1
        if key in self.memo:
            return self.memo[key]
        return self._digest(key, os.stat(key))

    def stated(self, key: str, st: os.stat_result) -> str:
        """Like file(), for a walker that already holds the absolute path and its (l)stat."""
        self.lookups += 1
        digest = self.memo.get(key)
        if digest is not None:
            return digest
        return self._digest(key, st)

    def _digest(self, key: str, st: os.stat_result) -> str:
        hit = self.data.get(key)
        if (hit and len(hit) == 5 and hit[4] and hit[0] == st.st_size and hit[1] == st.st_mtime_ns
                and hit[2] == st.st_ino):
            digest = hit[3]
        else:
            self.reads += 1
            digest = file_sha256(Path(key))
            trusted = key.startswith(self.ours) or not racy(st.st_mtime_ns)
            self.data[key] = [st.st_size, st.st_mtime_ns, st.st_ino, digest, trusted]
            self.dirty = True
        self.memo[key] = digest
        return digest

    def forget(self, p: Path) -> None:
        """Called when a stage rewrites a path: this run's answer about it is stale."""
        prefix = os.path.abspath(p)
        below = prefix + os.sep
        for k in [k for k in self.memo if k == prefix or k.startswith(below)]:
            del self.memo[k]

    def save(self) -> None:
        if self.dirty:
            # Entries of files that are gone would only grow the file.
            self.data = {k: v for k, v in self.data.items() if os.path.exists(k)}
            write_text_atomic(self.path, json.dumps(self.data, separators=(",", ":")))
            self.dirty = False


def racy(mtime_ns: int) -> bool:
    """Whether a file with this mtime, read now, could still change within the same timestamp tick.

    Linux file systems stamp with the kernel's coarse clock (a few ms); one whose stamps are whole
    seconds (FAT, some network file systems) gets two seconds, as pebuilder's own source digest does."""
    window = RACY_NS if mtime_ns % 1_000_000_000 == 0 else RACY_FINE_NS
    return time.time_ns() - mtime_ns < window


def tree_digest(root: Path, cache: HashCache | None = None) -> str:
    """Names, types, permission bits, link targets and contents of every entry under root.

    Each folder's entries are hashed in name order, then its subfolders are walked in name order
    (what os.walk's top-down order gave before, so digests did not change with the walker)."""
    h = hashlib.sha256()
    top = os.path.abspath(root)
    try:
        if not stat.S_ISDIR(os.stat(top).st_mode):
            return "absent"
    except FileNotFoundError:
        return "absent"
    pending = [(top, "")]  # (absolute folder, its path relative to root with a trailing "/")
    while pending:
        folder, rel_folder = pending.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue  # as os.walk did: a folder that cannot be listed adds nothing
        subdirs = []
        for e in entries:
            st = e.stat(follow_symlinks=False)
            mode = st.st_mode
            rel = rel_folder + e.name
            h.update(f"{rel}\0{stat.S_IFMT(mode)}\0{stat.S_IMODE(mode)}\0".encode(errors="surrogateescape"))
            if stat.S_ISLNK(mode):
                h.update(os.readlink(e.path).encode(errors="surrogateescape"))
            elif stat.S_ISREG(mode):
                h.update((cache.stated(e.path, st) if cache else file_sha256(Path(e.path))).encode())
            elif stat.S_ISDIR(mode):
                subdirs.append((e.path, rel + "/"))
            h.update(b"\n")
        pending.extend(reversed(subdirs))  # popped from the end: walked in name order
    return h.hexdigest()


def path_digest(p: Path, cache: HashCache | None = None) -> str:
    """A file's or a folder's content digest; "absent" when there is nothing."""
    if p.is_dir():
        return tree_digest(p, cache)
    if p.exists():
        return cache.file(p) if cache else file_sha256(p)
    return "absent"


def value_digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# --- pebuilder's own code -------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parent.parent
RACY_NS = 2_000_000_000  # a file changed this recently may change again within one mtime tick
RACY_FINE_NS = 50_000_000  # the same, where timestamps have sub-second resolution


def cache_root() -> Path:
    """As net.cache.cache_root (not imported: that module pulls in the HTTP stack, ~10 ms)."""
    explicit = os.environ.get("PEBUILDER_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "pebuilder"


def _source_files(pkg: Path) -> list[tuple[str, str, os.stat_result]]:
    """(relative name, path, stat) of pebuilder's code and data files, in a fixed order."""
    out = []
    pending = [(os.fspath(pkg), "")]
    while pending:
        folder, rel_folder = pending.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in entries:
            if e.is_dir():
                if e.name != "__pycache__":
                    subdirs.append((e.path, rel_folder + e.name + "/"))
            elif not e.name.endswith((".pyc", ".pyo")):
                out.append((rel_folder + e.name, e.path, e.stat()))
        pending.extend(reversed(subdirs))
    return sorted(out, key=lambda f: f[0])


def _content_digest(files: list[tuple[str, str, os.stat_result]]) -> str:
    h = hashlib.sha256()
    for rel, path, _ in files:
        h.update(rel.encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """pebuilder's own code and data files: a changed pebuilder never reuses an old stage result.

    The digest is of the files' contents. Reading them all on every run is what a no-op cannot
    afford, so it is remembered in the user cache under a signature of every file's name, size,
    mtime and inode (as git's index does): an edit, a reinstall (new inodes) or an added or removed
    file changes the signature, and the contents are hashed again. A file changed in the last two
    seconds could still change within the same mtime tick, so such a digest is not remembered."""
    files = _source_files(PACKAGE)
    sig = hashlib.sha256()
    newest = 0
    for rel, _, st in files:
        sig.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode(errors="surrogateescape"))
        newest = max(newest, st.st_mtime_ns)
    signature = sig.hexdigest()
    record = cache_root() / "source-digest" / (hashlib.sha256(os.fsencode(PACKAGE)).hexdigest()[:32] + ".json")
    try:
        kept = json.loads(record.read_text())
        if kept.get("package") == str(PACKAGE) and kept.get("signature") == signature:
            return str(kept["digest"])
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    digest = _content_digest(files)
    if time.time_ns() - newest > RACY_NS:
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(record, json.dumps({"package": str(PACKAGE), "signature": signature,
                                                  "digest": digest}))
        except OSError:
            pass  # a read-only cache only costs reading the files on every run
    return digest
