"""Compression of initrd archives: detected by magic, streamed both ways.

gzip is written by the parallel compressor in `pgzip` (one gzip member, all cores, libdeflate),
or for level "seed" exactly as Tiny Core's remaster.sh does it (gzip -2, then advdef -z4); xz goes
through the standard library; zstd through the `zstd` program, since Python 3.11 has no zstd
module. Output is deterministic: gzip headers carry mtime 0 and no file name, and no output depends
on the number of threads.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import BinaryIO, NoReturn

from pebuilder.errors import ConfigError, PebuilderError, ToolMissingError
from pebuilder.formats import pgzip
from pebuilder.runner import require, run, which

MAGICS = {
    b"\x1f\x8b": "gzip",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"070701": "none",
    b"070702": "none",
}
COMPRESSIONS = ("gzip", "xz", "zstd", "none")


def detect(head: bytes) -> str | None:
    for magic, name in MAGICS.items():
        if head.startswith(magic):
            return name
    return None


class _ProcReader:
    """A decompressing child process seen as a readable file; waits for it when closed."""

    def __init__(self, argv: list[str], source: BinaryIO):
        self.proc = subprocess.Popen(argv, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout

    def read(self, n: int = -1) -> bytes:
        return self.stdout.read(n)

    def close(self) -> None:
        self.stdout.close()
        err = self.proc.stderr.read() if self.proc.stderr else b""
        rc = self.proc.wait()
        if rc not in (0, -13):
            raise PebuilderError(f"zstd could not decompress: {err.decode(errors='replace').strip()}")


def open_decompressed(raw: BinaryIO, kind: str):
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    if kind == "zstd":
        return _ProcReader([require("zstd"), "-dc", "-q"], raw)
    return raw


class _ProcWriter:
    """A compressing child process seen as a writable file; its output goes straight to `sink`."""

    def __init__(self, argv: list[str], sink: BinaryIO):
        self.name = Path(argv[0]).name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.PIPE)
        assert self.proc.stdin is not None
        self.stdin = self.proc.stdin

    def write(self, data: bytes) -> int:
        try:
            return self.stdin.write(data)
        except BrokenPipeError:
            self._fail()

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.stdin.close()
        if self.proc.wait() != 0:
            self._fail()

    def _fail(self) -> NoReturn:
        err = self.proc.stderr.read() if self.proc.stderr else b""
        self.proc.wait()
        raise PebuilderError(f"{self.name} could not compress: {err.decode(errors='replace').strip()}")


# --- levels ---------------------------------------------------------------------------------------

LEVEL_NAMES = ("fast", "default", "best", "seed")
# The numbers each compressor takes, and what the names mean for xz and zstd (gzip's names are
# the parallel compressor's, see pgzip.NAMED_LEVELS; "seed" is gzip only).
LEVEL_RANGES = {"gzip": (1, 12), "xz": (0, 9), "zstd": (1, 22)}
RANGE_TEXT = {
    "gzip": "1-9 as with the gzip program, or 10-12 (libdeflate's slowest, smallest)",
    "xz": "0-9",
    "zstd": "1-19, or 20-22 (zstd --ultra)",
}
NAMED_LEVELS = {
    "xz": {"fast": 1, "default": 6, "best": 9 | lzma.PRESET_EXTREME},
    "zstd": {"fast": 3, "default": 19, "best": 22},
}


def _as_level(level: int | str | None) -> int | str | None:
    """A level as given in a config file: names are case-insensitive, digits are numbers."""
    if isinstance(level, str):
        level = level.strip().lower()
        if level.isdigit():
            return int(level)
    return level


def check_level(kind: str, level: int | str | None) -> None:
    """Refuse a level the compressor `kind` does not have, with a message naming what it takes.

    None means the compressor's default; "none" takes any level and ignores it."""
    if kind not in COMPRESSIONS:
        raise ConfigError(f"unknown compression {kind!r}; choose one of: {', '.join(COMPRESSIONS)}")
    level = _as_level(level)
    if level is None or kind == "none":
        return
    names = ", ".join(LEVEL_NAMES if kind == "gzip" else LEVEL_NAMES[:3])
    takes = f"{kind} takes {RANGE_TEXT[kind]}, or one of: {names}"
    if level == "seed" and kind != "gzip":
        raise ConfigError(f"level 'seed' (gzip -2 then advdef -z4, as remaster.sh) is for gzip only; {takes}")
    if isinstance(level, str):
        if level not in LEVEL_NAMES:
            raise ConfigError(f"unknown {kind} level {level!r}; {takes}")
        return
    if isinstance(level, bool) or not isinstance(level, int):
        raise ConfigError(f"{kind} level must be a number or a name, not {level!r}; {takes}")
    low, high = LEVEL_RANGES[kind]
    if not low <= level <= high:
        raise ConfigError(f"{kind} level {level} is out of range; {takes}")


def compress_file(src: Path, dst: Path, kind: str, level: int | str | None = None) -> None:
    """`src` compressed into `dst`, streamed, and swapped in whole (a kernel, an install image)."""
    from pebuilder.fsutil import atomic_output

    with atomic_output(dst) as tmp, open(tmp, "wb") as raw, open(src, "rb") as source:
        z = open_compressor(raw, kind, level)
        while chunk := source.read(1 << 20):
            z.write(chunk)
        z.close()


def open_compressor(sink: BinaryIO, kind: str, level: int | str | None = None, jobs: int | None = None):
    """A writable stream (write(), close()) that compresses into `sink` the way the kernel can unpack it.

    `level` is a number or one of LEVEL_NAMES (None: "default"); `jobs` is how many threads gzip
    and zstd may use (None: one per CPU). The output never depends on `jobs`."""
    check_level(kind, level)
    level = _as_level(level)
    if kind == "gzip":
        if level == "seed":
            return _SeedGzipWriter(sink)
        return pgzip.ParallelGzipWriter(sink, level, jobs)
    if isinstance(level, str) or level is None:
        level = NAMED_LEVELS.get(kind, {}).get(level or "default", 0)
    if kind == "xz":
        # The kernel's xz decoder wants CRC32 checks, not xz's default CRC64.
        return lzma.LZMAFile(sink, mode="wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=level)
    if kind == "zstd":
        # zstd's multi-threaded output is the same for any -T; levels above 19 need --ultra.
        threads = jobs or pgzip.default_jobs()
        ultra = ["--ultra"] if level > 19 else []
        return _ProcWriter([require("zstd"), "-q", "-c", *ultra, f"-{level}", f"-T{threads}"], sink)
    return _Uncompressed(sink)


class _Uncompressed:
    def __init__(self, sink: BinaryIO):
        self.sink = sink

    def write(self, data: bytes) -> int:
        return self.sink.write(data)

    def close(self) -> None:
        pass


class _SeedGzipWriter:
    """remaster.sh's method, byte for byte: `gzip -2 -n`, then `advdef -z4` re-encodes the deflate
    data with zopfli. advdef works on a file in place, so gzip writes a spool file next to `sink`."""

    def __init__(self, sink: BinaryIO):
        if which("advdef") is None:
            raise ToolMissingError("advdef is needed for initrd level 'seed' but not found; "
                                   "install it with: apt-get install advancecomp")
        self.sink = sink
        self._dir = tempfile.TemporaryDirectory(prefix="pebuilder-seed-", dir=_spool_dir(sink))
        self._path = Path(self._dir.name) / "initrd.gz"
        self._raw = open(self._path, "wb")  # noqa: SIM115 - closed in close()
        # advdef keeps gzip's header (-n: no name, mtime 0) and replaces all of its deflate data.
        self._gz = _ProcWriter([require("gzip"), "-2", "-n", "-c"], self._raw)

    def write(self, data: bytes) -> int:
        return self._gz.write(data)

    def close(self) -> None:
        if self._raw.closed:
            return
        try:
            self._gz.close()
            self._raw.close()
            run(["advdef", "-z4", "-q", self._path], what="recompressing the initrd (level seed)")
            with open(self._path, "rb") as f:
                shutil.copyfileobj(f, self.sink, 1 << 20)
        finally:
            self._raw.close()
            self._dir.cleanup()


def _spool_dir(sink: BinaryIO) -> str | None:
    """The folder of the output file, so a large spool file stays on its filesystem."""
    name = getattr(sink, "name", None)
    if isinstance(name, str) and os.path.isdir(os.path.dirname(os.path.abspath(name))):
        return os.path.dirname(os.path.abspath(name))
    return None
