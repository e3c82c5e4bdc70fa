"""The one way pebuilder reads and writes inside an image tree.

An image tree (an unpacked initrd, a Debian base, an extension) is a foreign root: its symlinks
were made by someone else, absolute ones point into the image, and its owners, setuid bits and
device nodes are not the builder's to create. So:

- every path is resolved inside the root as if the root were `/` (`..` and symlinks, absolute or
  relative, never lead out of it);
- owners, full modes (setuid/setgid/sticky included) and device numbers live in `TreeMeta`, not on
  the host: host files get plain permission bits the builder can read and write, device nodes and
  fifos are empty placeholders that are never opened as what they claim to be;
- hard links are only made to regular files already inside the root;
- archives are unpacked under a `Budget`, so a small archive cannot fill the disk.

Nothing else in pebuilder writes into a tree by joining paths: grep for `FsRoot` to find them all.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from pebuilder.errors import PebuilderError, UnsafeArchiveError
from pebuilder.fsutil import atomic_output, rmtree

CHUNK = 1 << 20
HOST_PERM = 0o777  # setuid/setgid/sticky stay in TreeMeta, never on the builder's files
OWNER_BITS = {stat.S_IFREG: stat.S_IRUSR | stat.S_IWUSR, stat.S_IFDIR: stat.S_IRWXU}
GIB = 1 << 30


class Readable(Protocol):
    def read(self, n: int = ..., /) -> bytes: ...


def safe_relpath(name: str) -> PurePosixPath:
    """Normalise an archive member name; refuse absolute names and any `..` component."""
    if "\0" in name:
        raise UnsafeArchiveError(f"archive member {name!r} holds a NUL byte; refusing to extract it")
    if name.startswith("/"):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path; refusing to extract it")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchiveError(f"archive member {name!r} climbs out with '..'; refusing to extract it")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def resolve_in_root(root: Path, rel: str | PurePosixPath, *, follow_last: bool = False) -> Path:
    """Resolve `rel` inside `root` as if `root` were `/`: symlinks, absolute or not, stay inside."""
    base = os.fspath(root)
    pending = [p for p in str(rel).split("/") if p not in ("", ".")]
    pending.reverse()
    current: list[str] = []
    hops = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = os.path.join(base, *current, part)
        if (follow_last or pending) and os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise UnsafeArchiveError(f"too many symlinks while resolving {rel} in {root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            pending.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
            continue
        current.append(part)
    return Path(os.path.join(base, *current)) if current else Path(root)


def walk_sorted(root: Path) -> list[str]:
    """Relative paths of a tree in byte order, which puts every folder before what it holds."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        reldir = os.path.relpath(dirpath, root)
        for n in dirnames + filenames:
            out.append(n if reldir == "." else f"{reldir}/{n}")
    out.sort(key=lambda s: s.encode("utf-8", errors="surrogateescape"))
    return out


def host_perm(mode: int) -> int:
    """Permission bits a tree entry gets on the builder's disk: readable and writable by the builder,
    never setuid/setgid/sticky (those live in TreeMeta)."""
    return (stat.S_IMODE(mode) & HOST_PERM) | OWNER_BITS.get(stat.S_IFMT(mode), 0)


@dataclass
class TreeMeta:
    """What an unprivileged disk cannot hold: per-path mode, owner, and device identity."""

    entries: dict[str, list[int]] = field(default_factory=dict)  # name -> [st_mode, uid, gid]
    specials: dict[str, list[int]] = field(default_factory=dict)  # name -> [st_mode, major, minor]

    @classmethod
    def load(cls, path: Path) -> TreeMeta:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(entries=data.get("entries", {}), specials=data.get("specials", {}))

    def save(self, path: Path) -> None:
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps({"version": 1, "entries": self.entries, "specials": self.specials},
                                      sort_keys=True, separators=(",", ":")))

    def set(self, name: str, mode: int, uid: int = 0, gid: int = 0) -> None:
        self.entries[name] = [mode, uid, gid]

    def owner(self, name: str, default: tuple[int, int, int]) -> tuple[int, int, int]:
        """(permission bits incl. setuid, uid, gid) recorded for `name`, else `default`."""
        e = self.entries.get(name)
        return (stat.S_IMODE(e[0]), e[1], e[2]) if e else default

    def forget(self, name: str) -> None:
        """Drop a path and everything under it (it was removed from the tree)."""
        prefix = name.rstrip("/") + "/"
        for table in (self.entries, self.specials):
            for k in [k for k in table if k == name or k.startswith(prefix)]:
                del table[k]


@dataclass
class Budget:
    """Limits for unpacking what someone else made: apparent bytes and entries in all."""

    max_bytes: int = 4 * GIB
    max_entries: int = 1_000_000
    what: str = "archive"
    used_bytes: int = 0
    used_entries: int = 0

    def take(self, size: int, name: str) -> None:
        self.used_bytes += max(size, 0)
        self.used_entries += 1
        if self.used_bytes > self.max_bytes:
            raise UnsafeArchiveError(
                f"{self.what}: unpacking {name!r} would exceed the extraction limit of "
                f"{self.max_bytes / GIB:.1f} GiB (apparent size, sparse files included); if the content is "
                "genuine, raise [work] extract_limit")
        if self.used_entries > self.max_entries:
            raise UnsafeArchiveError(f"{self.what}: more than {self.max_entries} entries; refusing to unpack it")


class FsRoot:
    """An image tree on disk plus its TreeMeta; all writes resolve inside `root`."""

    def __init__(self, root: Path, meta: TreeMeta | None = None):
        self.root = Path(root)
        self.meta = meta if meta is not None else TreeMeta()

    # -- paths ------------------------------------------------------------------------------------

    def path(self, rel: str | PurePosixPath, *, follow_last: bool = True) -> Path:
        return resolve_in_root(self.root, rel, follow_last=follow_last)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _parent(self, rel: str | PurePosixPath, own: bool = False) -> tuple[Path, str]:
        """The resolved parent folder (created root-owned 0755 where missing) and the last name.

        `own`: the parents must be real folders at exactly this path; links or files in the way (a
        template's `boot/grub -> elsewhere`) are replaced, so pebuilder's own files land where the
        boot loader will look for them.
        """
        pure = PurePosixPath(str(rel).lstrip("/"))
        if not pure.name or pure.name in (".", "..") or ".." in pure.parts:
            raise PebuilderError(f"{rel!r} names no file inside the image")
        if own:
            self.root.mkdir(parents=True, exist_ok=True)
            current = self.root
            for part in pure.parent.parts:
                current = current / part
                if current.is_symlink() or (current.exists() and not current.is_dir()):
                    current.unlink()
                    self.meta.forget(self.rel(current))
                if not current.exists():
                    current.mkdir()
                    os.chmod(current, 0o755)
                    self.meta.entries.setdefault(self.rel(current), [stat.S_IFDIR | 0o755, 0, 0])
            return current, pure.name
        parent = self.path(pure.parent) if str(pure.parent) not in ("", ".") else self.root
        self._makedirs(parent)
        return parent, pure.name

    def _makedirs(self, folder: Path) -> None:
        if folder.is_dir():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        missing = []
        p = folder
        while not p.exists() and not p.is_symlink() and p != self.root:
            missing.append(p)
            p = p.parent
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            # A dangling link or a file where a folder is needed: an image that cannot take the path.
            raise PebuilderError(f"cannot create {self.rel(folder)!r} in {self.root}: "
                                 f"{self.rel(p) if p != self.root else '/'} is not a folder")
        for d in reversed(missing):
            d.mkdir()
            os.chmod(d, 0o755)
            self.meta.entries.setdefault(self.rel(d), [stat.S_IFDIR | 0o755, 0, 0])

    # -- reading ----------------------------------------------------------------------------------

    def exists(self, rel: str) -> bool:
        p = self.path(rel)
        return p.exists() or p.is_symlink()

    def is_file(self, rel: str) -> bool:
        p = self.path(rel)
        return p.is_file() and self.rel(p) not in self.meta.specials

    def read_bytes(self, rel: str) -> bytes | None:
        """A regular file's bytes, or None when there is none (device placeholders are not files)."""
        return self.path(rel).read_bytes() if self.is_file(rel) else None

    def read_lines(self, rel: str) -> list[str]:
        data = self.read_bytes(rel)
        return data.decode(errors="surrogateescape").splitlines() if data is not None else []

    def owner(self, rel: str, default: tuple[int, int, int]) -> tuple[int, int, int]:
        p = self.path(rel)
        return self.meta.owner(self.rel(p), default) if p != self.root else self.meta.owner(".", default)

    # -- writing ----------------------------------------------------------------------------------

    def _clear(self, target: Path) -> None:
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        elif target.is_dir():
            raise PebuilderError(f"{self.rel(target)!r} is a folder in the image; cannot replace it with a file")
        r = self.rel(target)  # never a folder here: one entry to drop, not a subtree
        self.meta.entries.pop(r, None)
        self.meta.specials.pop(r, None)

    def write(self, rel: str, data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> str:
        """Write a regular file; a symlink in its place is replaced, never followed."""
        parent, name = self._parent(rel)
        target = parent / name
        self._clear(target)
        with open(target, "xb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        return self._record(target, stat.S_IFREG | stat.S_IMODE(mode), uid, gid)

    def write_keeping_owner(self, rel: str, data: bytes | str, default: tuple[int, int, int]) -> str:
        mode, uid, gid = self.owner(rel, default) if self.exists(rel) else default
        return self.write(rel, data, mode, uid, gid)

    def copy_from(self, src: Path, rel: str, mode: int | None = None, uid: int = 0, gid: int = 0, *,
                  own_parents: bool = False) -> str:
        """Stream a regular host file into the tree (a device, fifo or folder is refused, never read)."""
        st = os.stat(src)
        if not stat.S_ISREG(st.st_mode):
            raise PebuilderError(f"{src} is not a regular file; cannot copy it into the image")
        parent, name = self._parent(rel, own_parents)
        target = parent / name
        self._clear(target)
        with open(src, "rb") as fin, open(target, "xb") as fout:
            while chunk := fin.read(CHUNK):
                fout.write(chunk)
        perm = stat.S_IMODE(st.st_mode) if mode is None else mode
        return self._record(target, stat.S_IFREG | perm, uid, gid, st.st_mtime)

    def move_from(self, src: Path, rel: str, mode: int, uid: int = 0, gid: int = 0) -> str:
        """Move a regular file from a scratch folder into the tree (a rename on the same file system,
        a copy elsewhere); its time is kept. For files pebuilder itself just unpacked."""
        st = os.lstat(src)
        if not stat.S_ISREG(st.st_mode):
            raise PebuilderError(f"{src} is not a regular file; cannot move it into the image")
        parent, name = self._parent(rel)
        target = parent / name
        self._clear(target)
        try:
            os.rename(src, target)
        except OSError:
            return self.copy_from(src, rel, mode, uid, gid)
        return self._record(target, stat.S_IFREG | stat.S_IMODE(mode), uid, gid, st.st_mtime)

    def write_stream(self, rel: str, stream: Readable, size: int, mode: int, uid: int, gid: int,
                     mtime: float | None = None) -> str:
        """A file's body from an archive member: exactly `size` bytes."""
        parent, name = self._parent(rel)
        target = parent / name
        self._clear(target)
        left = size
        with open(target, "xb") as f:
            while left:
                chunk = stream.read(min(CHUNK, left))
                if not chunk:
                    raise UnsafeArchiveError(f"{rel}: archive ends inside this member")
                f.write(chunk)
                left -= len(chunk)
        return self._record(target, stat.S_IFREG | stat.S_IMODE(mode), uid, gid, mtime)

    def mkdir(self, rel: str, mode: int = 0o755, uid: int = 0, gid: int = 0, *, keep: bool = False) -> str:
        """A folder with this owner and mode (`keep`: an existing folder keeps what it has)."""
        if str(rel).strip("/") in ("", "."):
            self.meta.set(".", stat.S_IFDIR | mode, uid, gid)
            return "."
        parent, name = self._parent(rel)
        target = parent / name
        if target.is_symlink():
            resolved = self.path(rel)
            if resolved.is_dir():
                return self.rel(resolved)
            target.unlink()
        if target.exists() and not target.is_dir():
            self._clear(target)
        if target.is_dir():
            if keep and self.rel(target) in self.meta.entries:
                return self.rel(target)
        else:
            target.mkdir()
        return self._record(target, stat.S_IFDIR | stat.S_IMODE(mode), uid, gid)

    def symlink(self, rel: str, link_target: str, uid: int = 0, gid: int = 0, mtime: float | None = None) -> str:
        parent, name = self._parent(rel)
        target = parent / name
        self._clear(target)
        os.symlink(link_target, target)
        r = self.rel(target)
        self.meta.set(r, stat.S_IFLNK | 0o777, uid, gid)
        if mtime is not None:
            os.utime(target, (mtime, mtime), follow_symlinks=False)
        return r

    def special(self, rel: str, mode: int, major: int = 0, minor: int = 0, uid: int = 0, gid: int = 0,
                mtime: float | None = None) -> str:
        """A device node, fifo or socket: recorded, with an empty placeholder that is never opened."""
        parent, name = self._parent(rel)
        target = parent / name
        self._clear(target)
        with open(target, "xb"):
            pass
        os.chmod(target, 0o600)
        r = self.rel(target)
        self.meta.set(r, mode, uid, gid)
        self.meta.specials[r] = [mode, major, minor]
        if mtime is not None:
            os.utime(target, (mtime, mtime))
        return r

    def hardlink(self, rel: str, existing: str, uid: int = 0, gid: int = 0) -> str:
        """A hard link to a regular file already in the tree (looked up without following a final link)."""
        src = self.path(existing, follow_last=False)
        src_rel = self.rel(src)
        st = os.lstat(src) if src.exists() or src.is_symlink() else None
        if st is None or not stat.S_ISREG(st.st_mode) or src_rel in self.meta.specials:
            raise UnsafeArchiveError(f"hard link {rel!r} -> {existing!r}: the target is not a regular file "
                                     "inside the image; refusing it")
        parent, name = self._parent(rel)
        target = parent / name
        self._clear(target)
        os.link(src, target, follow_symlinks=False)
        mode = self.meta.entries.get(src_rel, [stat.S_IFREG | stat.S_IMODE(st.st_mode), uid, gid])[0]
        return self._record(target, mode, uid, gid)

    def remove(self, rel: str) -> None:
        target = self.path(rel, follow_last=False)
        if target == self.root:
            raise PebuilderError("refusing to remove the image's root")
        rmtree(target)
        self.meta.forget(self.rel(target))

    def _record(self, target: Path, mode: int, uid: int, gid: int, mtime: float | None = None) -> str:
        os.chmod(target, host_perm(mode))
        r = self.rel(target)
        self.meta.set(r, mode, uid, gid)
        if mtime is not None:
            os.utime(target, (mtime, mtime), follow_symlinks=False)
        return r

    # -- whole trees ------------------------------------------------------------------------------

    def walk(self) -> Iterator[str]:
        """Relative paths in byte order (every folder before what it holds)."""
        yield from walk_sorted(self.root)
