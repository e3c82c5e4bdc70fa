"""Unpack a tar stream into an image tree, as the tree's owner would, without being root.

Used for the data part of .deb files and for mmdebstrap's tar output (~10,000 members), so it
reads the archive once, front to back, never seeking and never holding a member in memory.
Everything goes through `FsRoot`: names through `safe_relpath` (no absolute names, no `..`),
symlinks resolved inside the tree (a member written "through" a link lands inside, as dpkg would
put `bin/busybox` into `usr/bin` on a merged-/usr base), owners, setuid bits and device numbers
into `TreeMeta`, devices and fifos as placeholders, hard links only to files already inside.
Member types tar has but an image has no use for (sockets cannot be archived; GNU volume headers,
unknown vendor types) are refused rather than guessed at.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import os
import stat
import tarfile
import zlib
from collections.abc import Callable
from typing import IO

from pebuilder.errors import UnsafeArchiveError
from pebuilder.fsroot import Budget, FsRoot, safe_relpath

log = logging.getLogger("pebuilder.tar")

Exclude = Callable[[str], bool]
# What a damaged or truncated stream raises from tarfile or a decompressor below it.
DAMAGED: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError,
                                            gzip.BadGzipFile)
try:
    import zstandard

    DAMAGED += (zstandard.ZstdError,)
except ImportError:  # only .deb members compressed with zstd need it
    zstandard = None  # type: ignore[assignment]
_DEVICE_TYPES = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK, tarfile.FIFOTYPE: stat.S_IFIFO}


class _EndCheckingTarInfo(tarfile.TarInfo):
    """Remembers why the archive ended: tarfile takes a truncated or garbled header after the first
    member for the end of the archive, silently, so a cut-off stream would unpack half a package."""

    @classmethod
    def fromtarfile(cls, tf: tarfile.TarFile) -> _EndCheckingTarInfo:
        try:
            return super().fromtarfile(tf)
        except tarfile.HeaderError as exc:
            tf.pebuilder_end = exc  # type: ignore[attr-defined]
            raise


def _beneath(name: str, folders: set[str]) -> bool:
    if not folders:
        return False
    cut = name.rfind("/")
    while cut > 0:
        name = name[:cut]
        if name in folders:
            return True
        cut = name.rfind("/")
    return False


def _member_name(what: str, name: str) -> str:
    try:
        return safe_relpath(name).as_posix()
    except UnsafeArchiveError as exc:
        raise UnsafeArchiveError(f"{what}: {exc}") from None


def extract_into(fileobj: IO[bytes], fsroot: FsRoot, budget: Budget, exclude: Exclude | None = None,
                 what: str = "archive") -> list[str]:
    """Stream every member of a tar (plain, gzip, bzip2 or xz) into `fsroot`.

    Returns the member names written (normalised, no leading './', folders included, excluded
    members left out), the way dpkg lists a package's files; `fsroot.path(name)` gives where each
    one landed. Folders that existed before keep their owner and mode, as with dpkg.
    """
    existing = set(fsroot.meta.entries)
    written: list[str] = []
    excluded: set[str] = set()
    dropped_dirs: set[str] = set()  # what lies beneath an excluded folder goes too, whatever `exclude` says
    dir_times: list[tuple[str, float]] = []
    xattrs = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*", tarinfo=_EndCheckingTarInfo) as tf:
            for m in tf:
                name = _member_name(what, m.name)
                if m.pax_headers and any(k.startswith("SCHILY.xattr.") for k in m.pax_headers):
                    xattrs += 1
                if name != "." and exclude is not None and (exclude(name) or _beneath(name, dropped_dirs)):
                    excluded.add(name)
                    if m.isdir():
                        dropped_dirs.add(name)
                    continue
                budget.take(m.size if m.isreg() else 0, name)
                if m.isdir():
                    resolved = fsroot.path(name)
                    keep = resolved.is_dir() and fsroot.rel(resolved) in existing
                    if name == ".":
                        if "." not in existing:
                            fsroot.mkdir(".", stat.S_IMODE(m.mode), m.uid, m.gid)
                        continue
                    fsroot.mkdir(name, m.mode, m.uid, m.gid, keep=keep)
                    if not keep:
                        dir_times.append((name, m.mtime))
                elif m.isreg():
                    stream = tf.extractfile(m)
                    if stream is None:
                        raise UnsafeArchiveError(f"{what}: cannot read the body of {name!r}")
                    fsroot.write_stream(name, stream, m.size, m.mode, m.uid, m.gid, m.mtime)
                elif m.issym():
                    if not m.linkname:
                        raise UnsafeArchiveError(f"{what}: symlink {name!r} has an empty target; refusing it")
                    fsroot.symlink(name, m.linkname, m.uid, m.gid, m.mtime)
                elif m.islnk():
                    target = _member_name(what, m.linkname)
                    if target in excluded:
                        excluded.add(name)  # a link to a trimmed file goes with it
                        continue
                    fsroot.hardlink(name, target, m.uid, m.gid)
                elif m.type in _DEVICE_TYPES:
                    fsroot.special(name, _DEVICE_TYPES[m.type] | stat.S_IMODE(m.mode), m.devmajor, m.devminor,
                                   m.uid, m.gid, m.mtime)
                else:
                    raise UnsafeArchiveError(f"{what}: member {name!r} is of tar type {m.type!r}, which an image "
                                             "tree cannot hold; refusing the archive")
                written.append(name)
            end = getattr(tf, "pebuilder_end", None)
            if not isinstance(end, tarfile.EOFHeaderError):  # type: ignore[attr-defined]  # not in typeshed
                raise UnsafeArchiveError(f"{what}: ends without tar's end-of-archive marker after {len(written)} "
                                         f"members ({end}); the file is truncated or damaged")
    except DAMAGED as exc:
        raise UnsafeArchiveError(f"{what}: not a tar archive, or a damaged or truncated one ({exc})") from None
    # Folder times last: every file created in a folder changed its time again.
    for name, mtime in dir_times:
        path = fsroot.path(name, follow_last=False)
        if path.is_dir() and not path.is_symlink():
            os.utime(path, (mtime, mtime))
    if xattrs:
        log.info("%s: %d members carry extended attributes (file capabilities, ACLs); an image tree does not "
                 "keep them", what, xattrs)
    return written


def open_compressed(fileobj: IO[bytes], suffix: str, what: str) -> IO[bytes]:
    """A decompressing reader for a member named `*.tar<suffix>` (for callers that know the kind)."""
    if suffix in ("", ".tar"):
        return fileobj
    if suffix == ".gz":
        return gzip.GzipFile(fileobj=fileobj, mode="rb")  # type: ignore[return-value]
    if suffix == ".xz":
        return lzma.LZMAFile(fileobj)
    if suffix == ".bz2":
        return bz2.BZ2File(fileobj)
    if suffix == ".zst":
        if zstandard is None:
            raise UnsafeArchiveError(f"{what}: zstd-compressed, and the Python package 'zstandard' is not "
                                     "installed (pip install zstandard)")
        return zstandard.ZstdDecompressor().stream_reader(fileobj, read_across_frames=True)
    raise UnsafeArchiveError(f"{what}: unknown compression {suffix!r}")
