"""Content hashes of stage inputs: files, whole trees, and plain values.

File hashes are remembered by (path, size, mtime, inode) so an unchanged 1 GB ISO is read once,
not on every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from pebuilder.fsutil import file_sha256


class HashCache:
    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, list[Any]] = {}
        if path.exists():
            try:
                self.data = json.loads(path.read_text())
            except ValueError:
                self.data = {}
        self.dirty = False

    def file(self, p: Path) -> str:
        st = os.stat(p)
        key = str(Path(p).resolve())
        sig = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = self.data.get(key)
        if hit and hit[:3] == sig:
            return hit[3]
        digest = file_sha256(p)
        self.data[key] = [*sig, digest]
        self.dirty = True
        return digest

    def save(self) -> None:
        if self.dirty:
            from pebuilder.fsutil import write_text_atomic

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


def value_digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
