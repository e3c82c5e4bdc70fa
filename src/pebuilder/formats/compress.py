"""Compression of initrd archives: detected by magic, streamed both ways.

gzip and xz go through the standard library; zstd through the `zstd` program, since Python 3.11
has no zstd module. Output is deterministic: gzip headers carry mtime 0 and no file name.
"""

from __future__ import annotations

import gzip
import lzma
import subprocess
from typing import BinaryIO

from pebuilder.errors import ConfigError, PebuilderError
from pebuilder.runner import require

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
    def __init__(self, argv: list[str], sink: BinaryIO):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.PIPE)
        assert self.proc.stdin is not None
        self.stdin = self.proc.stdin

    def write(self, data: bytes) -> int:
        return self.stdin.write(data)

    def close(self) -> None:
        self.stdin.close()
        err = self.proc.stderr.read() if self.proc.stderr else b""
        if self.proc.wait() != 0:
            raise PebuilderError(f"zstd could not compress: {err.decode(errors='replace').strip()}")


def open_compressor(sink: BinaryIO, kind: str, level: int | None = None):
    """A writable stream that compresses into `sink` the way the kernel can unpack it."""
    if kind == "gzip":
        return gzip.GzipFile(filename="", fileobj=sink, mode="wb", compresslevel=level or 9, mtime=0)
    if kind == "xz":
        # The kernel's xz decoder wants CRC32 checks, not xz's default CRC64.
        return lzma.LZMAFile(sink, mode="wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                             preset=level if level is not None else 6)
    if kind == "zstd":
        return _ProcWriter([require("zstd"), "-q", "-c", f"-{level or 19}", "-T1"], sink)
    if kind == "none":
        return _Uncompressed(sink)
    raise ConfigError(f"unknown compression {kind!r}; choose one of: {', '.join(COMPRESSIONS)}")


class _Uncompressed:
    def __init__(self, sink: BinaryIO):
        self.sink = sink

    def write(self, data: bytes) -> int:
        return self.sink.write(data)

    def close(self) -> None:
        pass
