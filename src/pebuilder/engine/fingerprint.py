"""Content hashes of stage inputs and outputs: files, whole trees, plain values, pebuilder itself.

File hashes are remembered by (path, size, mtime, inode), like git's index, so an unchanged 1 GB ISO
is read once, not on every run; within one run each file is looked at once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from pebuilder.fsutil import file_sha256, write_text_atomic


class HashCache:
    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, list[Any]] = {}
        if path.exists():
            try:
                loaded = json.loads(path.read_text())
                self.data = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                self.data = {}
        self.dirty = False
        self.memo: dict[str, str] = {}  # this run's answers: each path is looked at once per run
        self.reads = 0  # files whose content was read (a no-op run reads none)
        self.lookups = 0

    def file(self, p: Path) -> str:
        key = os.path.abspath(p)
        self.lookups += 1
        if key in self.memo:
            return self.memo[key]
        st = os.stat(p)
        sig = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = self.data.get(key)
        if hit and hit[:3] == sig:
            digest = hit[3]
        else:
            self.reads += 1
            digest = file_sha256(p)
            self.data[key] = [*sig, digest]
            self.dirty = True
        self.memo[key] = digest
        return digest

    def forget(self, p: Path) -> None:
        """Called when a stage rewrites a path: this run's answer about it is stale."""
        prefix = os.path.abspath(p)
        for k in [k for k in self.memo if k == prefix or k.startswith(prefix + os.sep)]:
            del self.memo[k]

    def save(self) -> None:
        if self.dirty:
            # Entries of files that are gone would only grow the file.
            self.data = {k: v for k, v in self.data.items() if os.path.exists(k)}
            write_text_atomic(self.path, json.dumps(self.data))
            self.dirty = False


def tree_digest(root: Path, cache: HashCache | None = None) -> str:
    """Names, types, permission bits, link targets and contents of every entry under root."""
    h = hashlib.sha256()
    if not root.exists():
        return "absent"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            st = os.lstat(p)
            h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode(
                errors="surrogateescape"))
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode(errors="surrogateescape"))
            elif stat.S_ISREG(st.st_mode):
                h.update((cache.file(p) if cache else file_sha256(p)).encode())
            h.update(b"\n")
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


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """pebuilder's own code and data files: a changed pebuilder never reuses an old stage result."""
    pkg = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for n in sorted(filenames):
            if n.endswith((".pyc", ".pyo")):
                continue
            p = Path(dirpath) / n
            h.update(p.relative_to(pkg).as_posix().encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()
