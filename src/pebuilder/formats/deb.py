"""Read .deb files without dpkg: an `ar` archive of debian-binary, control.tar.* and data.tar.*.

`dpkg-deb -x` would write owners it cannot set (as a non-root user), setuid bits and device
nodes straight onto the host; reading the format here sends everything through `FsRoot` instead.
The members are streamed from disk (a kernel package is ~70 MB) and decompressed on the fly:
gzip, xz and bzip2 with Python's own modules, zstd with the PyPI `zstandard` package (Python 3.11
has no zstd module, and a pipe to the `zstd` program would need a feeding thread for nothing).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from pebuilder.errors import UnsafeArchiveError
from pebuilder.formats import tar
from pebuilder.fsroot import Budget, FsRoot, safe_relpath

AR_MAGIC = b"!<arch>\n"
CONTROL_LIMIT = 16 << 20  # all control files together; real ones are a few KB
COMPRESSIONS = ("", ".gz", ".xz", ".zst", ".bz2")


class DebFormatError(UnsafeArchiveError):
    """A file that is not a well-formed Debian binary package."""


@dataclass(frozen=True)
class ArMember:
    name: str
    offset: int  # of the data, in the file
    size: int


class _Slice(io.RawIOBase):
    """`size` bytes of `f` from `offset`, as a read-only stream (one member of the ar archive)."""

    def __init__(self, f: BinaryIO, offset: int, size: int):
        self._f = f
        self._pos = offset
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), self._left)
        if n <= 0:
            return 0
        self._f.seek(self._pos)
        data = self._f.read(n)
        if not data:
            raise DebFormatError(f"{getattr(self._f, 'name', 'package')}: ends inside an ar member")
        buf[: len(data)] = data
        self._pos += len(data)
        self._left -= len(data)
        return len(data)


def members(f: BinaryIO, what: str) -> Iterator[ArMember]:
    """The ar members, read header by header (data is skipped, not read)."""
    f.seek(0)
    if f.read(8) != AR_MAGIC:
        raise DebFormatError(f"{what}: not a Debian package (no ar signature)")
    pos = 8
    while True:
        f.seek(pos)
        header = f.read(60)
        if not header:
            return
        if len(header) < 60 or header[58:60] != b"`\n":
            raise DebFormatError(f"{what}: damaged ar header at byte {pos}")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise DebFormatError(f"{what}: damaged ar header at byte {pos} (size field)") from None
        if size < 0:
            raise DebFormatError(f"{what}: negative member size at byte {pos}")
        yield ArMember(name, pos + 60, size)
        pos += 60 + size + (size & 1)


def _parts(f: BinaryIO, what: str) -> tuple[ArMember, ArMember]:
    """(control.tar.*, data.tar.*) after checking the format version."""
    found = list(members(f, what))
    if not found or found[0].name != "debian-binary":
        raise DebFormatError(f"{what}: not a Debian package (first member is not debian-binary)")
    f.seek(found[0].offset)
    version = f.read(min(found[0].size, 16))
    if not version.startswith(b"2."):
        raise DebFormatError(f"{what}: package format {version.strip().decode(errors='replace')!r}, not 2.x")
    control = next((m for m in found if m.name.startswith("control.tar")), None)
    data = next((m for m in found if m.name.startswith("data.tar")), None)
    if control is None or data is None:
        raise DebFormatError(f"{what}: has no {'control' if control is None else 'data'}.tar member")
    for m in (control, data):
        suffix = m.name.split(".tar", 1)[1]
        if suffix not in COMPRESSIONS:
            raise DebFormatError(f"{what}: {m.name}: unknown compression")
    return control, data


def _stream(f: BinaryIO, m: ArMember, what: str) -> IO[bytes]:
    raw = io.BufferedReader(_Slice(f, m.offset, m.size), buffer_size=1 << 20)
    return tar.open_compressed(raw, m.name.split(".tar", 1)[1], f"{what}: {m.name}")


def control_files(path: Path) -> dict[str, bytes]:
    """Every regular file of control.tar (control, md5sums, conffiles, maintainer scripts…)."""
    what = str(path)
    out: dict[str, bytes] = {}
    total = 0
    with open(path, "rb") as f:
        control, _ = _parts(f, what)
        try:
            with tarfile.open(fileobj=_stream(f, control, what), mode="r|") as tf:
                for ti in tf:
                    name = safe_relpath(ti.name).as_posix()
                    if not ti.isreg():
                        continue
                    total += ti.size
                    if total > CONTROL_LIMIT:
                        raise DebFormatError(f"{what}: control files larger than {CONTROL_LIMIT} bytes")
                    body = tf.extractfile(ti)
                    out[name] = body.read() if body is not None else b""
        except tar.DAMAGED as exc:
            raise DebFormatError(f"{what}: damaged control.tar ({exc})") from None
    return out


def control(path: Path) -> dict[str, str]:
    """The package's control fields (Package, Version, Architecture, Depends, …)."""
    from debian.deb822 import Deb822

    files = control_files(path)
    if "control" not in files:
        raise DebFormatError(f"{path}: control.tar holds no control file")
    return dict(Deb822(files["control"].decode("utf-8", "replace")))


def extract(path: Path, fsroot: FsRoot, budget: Budget, exclude: tar.Exclude | None = None) -> list[str]:
    """Unpack data.tar into `fsroot`; returns the member names written (for a .list file)."""
    what = str(path)
    with open(path, "rb") as f:
        _, data = _parts(f, what)
        stream = _stream(f, data, what)
        try:
            return tar.extract_into(stream, fsroot, budget, exclude, what=f"{path.name}")
        finally:
            stream.close()
