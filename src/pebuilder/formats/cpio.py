"""newc cpio: the initramfs format, read and written as a stream.

Owners, modes, device numbers and times live in the archive, not on the builder's disk: an
unprivileged extraction keeps them in a side file (`TreeMeta`) so that repacking writes the
template's real owners back, and device nodes survive without mknod.
"""

from __future__ import annotations

import lzma
import os
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pebuilder.errors import Exit, PebuilderError
from pebuilder.formats import compress
from pebuilder.fsroot import Budget, FsRoot, TreeMeta, host_perm, safe_relpath, walk_sorted
from pebuilder.fsutil import atomic_output, source_date_epoch

HEADER_LEN = 110
TRAILER = "TRAILER!!!"
CHUNK = 1 << 20


class CpioError(PebuilderError):
    code = Exit.CPIO


@dataclass
class Entry:
    name: str
    mode: int
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    mtime: int = 0
    size: int = 0
    ino: int = 0
    devmajor: int = 0
    devminor: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0
    link_target: str | None = None  # for symlinks; their data

    @property
    def kind(self) -> str:
        return _KIND.get(stat.S_IFMT(self.mode), "unknown")


_KIND = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "chr",
         stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "sock"}


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


class _Stream:
    """A byte stream with exact reads and one step of look-ahead, over raw or decompressed data."""

    def __init__(self, f, source: str):
        self.f = f
        self.buf = b""
        self.source = source

    def read(self, n: int) -> bytes:
        out = self.buf[:n]
        self.buf = self.buf[n:]
        while len(out) < n:
            try:
                chunk = self.f.read(min(max(n - len(out), 65536), CHUNK))
            except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
                raise CpioError(f"{self.source}: the compressed data is cut short or corrupt ({exc}); "
                                "truncated initrd?") from None
            if not chunk:
                break
            need = n - len(out)
            out += chunk[:need]
            self.buf = chunk[need:] + self.buf
        return out

    def exact(self, n: int) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise CpioError(f"{self.source}: archive ends in the middle of an entry (truncated initrd?)")
        return data

    def peek(self, n: int) -> bytes:
        data = self.read(n)
        self.buf = data + self.buf
        return data

    def skip_zeros(self) -> None:
        while True:
            head = self.peek(512)
            if not head:
                return
            stripped = head.lstrip(b"\0")
            self.read(len(head) - len(stripped))
            if stripped:
                return


class DataReader:
    """The body of the current member; what the caller leaves unread is skipped for it."""

    def __init__(self, stream: _Stream, size: int):
        self._stream = stream
        self.remaining = size

    def read(self, n: int = CHUNK) -> bytes:
        n = min(n, self.remaining)
        if n <= 0:
            return b""
        data = self._stream.exact(n)
        self.remaining -= n
        return data

    def chunks(self) -> Iterator[bytes]:
        while self.remaining:
            yield self.read(CHUNK)

    def drain(self) -> None:
        while self.remaining:
            self.read(CHUNK)


def _parse_header(raw: bytes, source: str) -> tuple[Entry, int]:
    magic = raw[:6]
    if magic not in (b"070701", b"070702"):
        raise CpioError(f"{source}: not a newc cpio archive (magic {magic!r}); only newc is supported")
    try:
        f = [int(raw[6 + 8 * i: 14 + 8 * i], 16) for i in range(13)]
    except ValueError:
        raise CpioError(f"{source}: corrupt cpio header") from None
    e = Entry(name="", ino=f[0], mode=f[1], uid=f[2], gid=f[3], nlink=f[4], mtime=f[5], size=f[6],
              devmajor=f[7], devminor=f[8], rdevmajor=f[9], rdevminor=f[10])
    return e, f[11]


def iter_stream(stream: _Stream, source: str) -> Iterator[tuple[Entry, DataReader]]:
    while True:
        stream.skip_zeros()
        head = stream.peek(6)
        if not head:
            return
        if not head.startswith(b"0707"):
            raise _NextLayer(compress.detect(head))
        entry, namesize = _parse_header(stream.exact(HEADER_LEN), source)
        name = stream.exact(namesize).rstrip(b"\0").decode("utf-8", errors="surrogateescape")
        stream.exact(_pad4(HEADER_LEN + namesize))
        entry.name = name
        if name == TRAILER:
            continue
        if entry.kind == "symlink":
            entry.link_target = stream.exact(entry.size).decode("utf-8", errors="surrogateescape")
            stream.exact(_pad4(entry.size))
            yield entry, DataReader(stream, 0)
            continue
        body = DataReader(stream, entry.size)
        yield entry, body
        body.drain()
        stream.exact(_pad4(entry.size))


class _NextLayer(Exception):
    def __init__(self, kind: str | None):
        self.kind = kind


def iter_archive(path: Path) -> Iterator[tuple[Entry, DataReader]]:
    """Every member of an initrd: compressed or not, and concatenated archives one after another."""
    source = str(path)
    with open(path, "rb") as raw:
        layer = _Stream(raw, source)
        while True:
            head = layer.peek(6)
            if not head:
                return
            kind = compress.detect(head)
            if kind is None:
                raise CpioError(f"{source}: neither a cpio archive nor gzip/xz/zstd data")
            if kind == "none":
                stream = layer
            else:
                # Give the decompressor the raw file from the current position on.
                raw.seek(raw.tell() - len(layer.buf))
                layer.buf = b""
                stream = _Stream(compress.open_decompressed(raw, kind), source)
            try:
                yield from iter_stream(stream, source)
                if stream is not layer and hasattr(stream.f, "close"):
                    stream.f.close()
                return
            except _NextLayer as nxt:
                if stream is not layer or nxt.kind in (None, "none"):
                    raise CpioError(f"{source}: unexpected data after a cpio trailer") from None
                # An uncompressed archive followed by a compressed one (as with early microcode).
                continue


class CpioWriter:
    """Writes newc members; inode numbers are assigned in order so output repeats exactly."""

    def __init__(self, sink):
        self.sink = sink
        self.next_ino = 1

    def _header(self, e: Entry, namebytes: bytes, size: int) -> bytes:
        fields = [e.ino, e.mode, e.uid, e.gid, e.nlink, e.mtime, size, e.devmajor, e.devminor,
                  e.rdevmajor, e.rdevminor, len(namebytes) + 1, 0]
        head = b"070701" + b"".join(b"%08X" % (v & 0xFFFFFFFF) for v in fields)
        return head + namebytes + b"\0" + b"\0" * _pad4(HEADER_LEN + len(namebytes) + 1)

    def add(self, e: Entry, data: BinaryIO | bytes | None = None) -> None:
        if not e.ino:
            e.ino = self.next_ino
            self.next_ino += 1
        name = e.name.encode("utf-8", errors="surrogateescape")
        if e.kind == "symlink":
            body = (e.link_target or "").encode("utf-8", errors="surrogateescape")
            self.sink.write(self._header(e, name, len(body)) + body + b"\0" * _pad4(len(body)))
            return
        size = e.size if e.kind == "file" else 0
        self.sink.write(self._header(e, name, size))
        if size:
            written = 0
            if isinstance(data, bytes):
                self.sink.write(data)
                written = len(data)
            elif data is not None:
                while chunk := data.read(CHUNK):
                    self.sink.write(chunk)
                    written += len(chunk)
            if written != size:
                raise CpioError(f"{e.name}: changed size while being archived ({size} -> {written})")
            self.sink.write(b"\0" * _pad4(size))

    def finish(self) -> None:
        self.add(Entry(name=TRAILER, mode=0, nlink=1, ino=0))
        # The kernel reads initramfs in 512-byte blocks; pad as GNU cpio does.
        pos = self.sink.tell() if hasattr(self.sink, "tell") else None
        if pos is not None and pos % 512:
            self.sink.write(b"\0" * (512 - pos % 512))


class _CountingSink:
    def __init__(self, inner):
        self.inner = inner
        self.pos = 0

    def write(self, data: bytes) -> int:
        self.inner.write(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos


# --- trees on disk with their metadata kept aside ------------------------------------------------


def extract(archive: Path, dest: Path, meta_path: Path, budget: Budget | None = None) -> TreeMeta:
    try:
        return _extract(archive, dest, meta_path, budget)
    except PebuilderError as exc:
        if exc.code != Exit.USAGE:
            raise
        # the image cannot take a member (a file where the tree has a folder of that name)
        raise CpioError(f"{archive}: {exc}") from None


def _extract(archive: Path, dest: Path, meta_path: Path, budget: Budget | None = None) -> TreeMeta:
    """Unpack an initrd into `dest`; later members and archives override earlier ones, like the kernel.

    Everything goes through FsRoot: parents resolve inside `dest`, devices become recorded
    placeholders, setuid bits stay in the metadata, and a hard link is only made to a regular file
    this archive put inside `dest` and nothing replaced since.
    """
    dest.mkdir(parents=True, exist_ok=True)
    fs = FsRoot(dest, TreeMeta.load(meta_path))
    budget = budget or Budget(what=str(archive))
    links: dict[tuple[int, int, int], str] = {}  # (dev, ino) -> first member holding that inode
    dir_times: dict[str, int] = {}
    for e, body in iter_archive(archive):
        rel = safe_relpath(e.name).as_posix()
        budget.take(e.size if e.kind == "file" else 0, e.name)
        if rel == ".":
            fs.meta.set(".", e.mode, e.uid, e.gid)
            dir_times["."] = e.mtime
            continue
        # Whatever this member replaces can no longer be the target of a later hard link.
        for k in [k for k, v in links.items() if v == rel or v.startswith(rel + "/")]:
            del links[k]
        kind = e.kind
        if kind == "dir":
            written = fs.mkdir(rel, stat.S_IMODE(e.mode), e.uid, e.gid)
            dir_times[written] = e.mtime
            continue
        if kind == "symlink":
            fs.symlink(rel, e.link_target or "", e.uid, e.gid, e.mtime)
        elif kind == "file":
            key = (e.devmajor, e.devminor, e.ino)
            first = links.get(key) if e.nlink > 1 else None
            if first is not None:
                fs.hardlink(rel, first, e.uid, e.gid)
                if e.size:
                    target = fs.path(rel, follow_last=False)
                    with open(target, "r+b") as out:
                        out.truncate(0)
                        for chunk in body.chunks():
                            out.write(chunk)
                fs.meta.set(fs.rel(fs.path(rel, follow_last=False)), e.mode, e.uid, e.gid)
                os.utime(fs.path(rel, follow_last=False), (e.mtime, e.mtime))
            else:
                written = fs.write_stream(rel, body, e.size, e.mode, e.uid, e.gid, e.mtime)
                if e.nlink > 1:
                    links[key] = written
        else:
            fs.special(rel, e.mode, e.rdevmajor, e.rdevminor, e.uid, e.gid, e.mtime)
    for d, t in sorted(dir_times.items(), key=lambda kv: -kv[0].count("/")):
        p = dest if d == "." else dest / d
        if p.is_dir() and not p.is_symlink():
            os.utime(p, (t, t))
    fs.meta.save(meta_path)
    return fs.meta


def _entry_for(root: Path, rel: str, st: os.stat_result, meta: TreeMeta, clamp: int | None) -> Entry:
    mtime = int(st.st_mtime)
    if clamp is not None:
        mtime = min(mtime, clamp)
    known = meta.entries.get(rel)
    special = meta.specials.get(rel)
    if special and stat.S_ISREG(st.st_mode) and st.st_size == 0:
        mode, major, minor = special
        uid, gid = (known[1], known[2]) if known else (0, 0)
        return Entry(name=rel, mode=mode, uid=uid, gid=gid, mtime=mtime, rdevmajor=major, rdevminor=minor)
    kind = _KIND.get(stat.S_IFMT(st.st_mode), "unknown")
    perm = stat.S_IMODE(st.st_mode)
    uid = gid = 0
    if known:
        kmode, uid, gid = known
        same_type = stat.S_IFMT(kmode) == stat.S_IFMT(st.st_mode)
        # Keep the archive's bits unless someone changed them on disk after extraction.
        if same_type and (kind == "symlink" or host_perm(kmode) == perm):
            perm = stat.S_IMODE(kmode)
    if kind == "symlink":
        return Entry(name=rel, mode=stat.S_IFLNK | perm, uid=uid, gid=gid, mtime=mtime,
                     link_target=os.readlink(root / rel))
    return Entry(name=rel, mode=stat.S_IFMT(st.st_mode) | perm, uid=uid, gid=gid, mtime=mtime,
                 size=st.st_size if kind == "file" else 0)


def pack(root: Path, meta: TreeMeta, out_path: Path, compression: str = "gzip",
         level: int | str | None = None) -> int:
    """Write `root` as a newc archive, owners from `meta` (root for anything new). Returns its size."""
    clamp = source_date_epoch()
    names = walk_sorted(root)
    stats = {n: os.lstat(root / n) for n in names}
    groups: dict[tuple[int, int], list[str]] = {}
    for n, st in stats.items():
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            groups.setdefault((st.st_dev, st.st_ino), []).append(n)
    group_of = {n: g for g in groups.values() if len(g) > 1 for n in g}
    subdirs: dict[str, int] = {}
    for n, st in stats.items():
        if stat.S_ISDIR(st.st_mode):
            parent = n.rpartition("/")[0] or "."
            subdirs[parent] = subdirs.get(parent, 0) + 1
    with atomic_output(out_path) as tmp:
        with open(tmp, "wb") as raw:
            _write_tree(root, names, stats, meta, group_of, subdirs, clamp, raw, compression, level)
        return tmp.stat().st_size


def _write_tree(root: Path, names: list[str], stats: dict[str, os.stat_result], meta: TreeMeta,
                group_of: dict[str, list[str]], subdirs: dict[str, int], clamp: int | None, raw: BinaryIO,
                compression: str, level: int | str | None) -> None:
    z = compress.open_compressor(raw, compression, level)
    inner = _CountingSink(z)
    w = CpioWriter(inner)
    if "." in meta.entries:
        mode, uid, gid = meta.entries["."]
        st = os.stat(root)
        mt = int(st.st_mtime) if clamp is None else min(int(st.st_mtime), clamp)
        w.add(Entry(name=".", mode=mode, uid=uid, gid=gid, nlink=2 + subdirs.get(".", 0), mtime=mt))
    group_ino: dict[str, int] = {}
    for n in names:
        e = _entry_for(root, n, stats[n], meta, clamp)
        group = group_of.get(n)
        if e.kind == "dir":
            e.nlink = 2 + subdirs.get(n, 0)
        if group:
            first = group[0]
            if first not in group_ino:
                group_ino[first] = w.next_ino
                w.next_ino += 1
            e.ino = group_ino[first]
            e.nlink = len(group)
            if n != group[-1]:
                e.size = 0
                w.add(e)
                continue
        if e.kind == "file" and e.size:
            with open(root / n, "rb") as data:
                w.add(e, data)
        else:
            w.add(e)
    w.finish()
    z.close()


def list_entries(path: Path) -> list[Entry]:
    """All member headers of an archive (bodies skipped), for inspection and tests."""
    return [e for e, _ in iter_archive(path)]


def read_member(path: Path, name: str) -> bytes | None:
    """The body of one member (the last one of that name, as the kernel would leave it)."""
    found: bytes | None = None
    want = safe_relpath(name).as_posix()
    for e, body in iter_archive(path):
        if safe_relpath(e.name).as_posix() == want:
            found = (e.link_target or "").encode() if e.kind == "symlink" else b"".join(body.chunks())
    return found
