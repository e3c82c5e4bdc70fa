"""Parallel gzip: one gzip member compressed on all cores, streamed with bounded memory.

The kernel unpacks an initramfs with a plain gzip decoder, so the output is an ordinary
single-member gzip file, built pigz-style: the input is cut into fixed-size blocks, each block is
compressed on its own in a thread (both engines below release the GIL), and every block but the
last ends non-final and byte-aligned after an empty stored block (the "sync flush" marker
00 00 ff ff), so the pieces concatenate into one deflate stream. The CRC32 and the size are taken
over the input in order. Blocks are cut at fixed offsets and compressed independently of each
other, so the bytes never depend on the number of jobs: same input, same level, same output.

Two engines:

- ``libdeflate`` (the PyPI package ``deflate``): smaller output than zlib at every speed, and
  levels 10-12 (near-optimal parsing) that reach zopfli's sizes at a small fraction of its time.
  libdeflate has no preset dictionary, so each block starts cold; the blocks are large (1 MiB,
  16 MiB for levels 10-12) to make that cost small. libdeflate also always ends its output with a
  final block (BFINAL=1): that bit is located with zlib's ``inflate(Z_BLOCK)``, which stops at
  every block boundary and reports the exact bit position (the technique of zlib's
  ``examples/gzjoin.c``), then cleared, and the empty stored block appended. The same inflate pass
  checks that the block decodes back to its input.
- ``zlib`` (standard library): the fallback where ``deflate`` or the system libz is missing. Each
  block is primed with the previous 32 KiB as dictionary and ended with ``Z_SYNC_FLUSH``, exactly
  as pigz does. Levels above 9 act as 9.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from pebuilder.errors import PebuilderError

try:  # an accelerator: without it the zlib engine is used
    import deflate as _libdeflate
except ImportError:  # pragma: no cover - depends on the environment
    _libdeflate = None  # type: ignore[assignment]

ENGINES = ("libdeflate", "zlib")
# What the names mean per engine, chosen on three inputs (bench/remaster_speed.py's cpio of Python's
# standard library at 10 and 80 MB, and Tiny Core's rootfs64): libdeflate 5 is about `gzip -6`'s
# size (-1 % to +1 %) at a third of its CPU time; 8 is smaller than `gzip -9` on all three
# (libdeflate 7 was not, on the text-heavy one) and on one core about as fast as `gzip -6`; 12
# (16 MiB blocks) is the size of `advdef -z4` (zopfli), from 0.5 % larger to a few bytes smaller,
# in a few percent of its time.
NAMED_LEVELS = {
    "libdeflate": {"fast": 5, "default": 8, "best": 12},
    "zlib": {"fast": 3, "default": 6, "best": 9},
}
MAX_LEVEL = {"libdeflate": 12, "zlib": 9}
BLOCK_SIZE = 1 << 20
BIG_BLOCK_SIZE = 16 << 20  # levels 10-12 exist for size: pay memory to lose less at block starts
WINDOW = 32 * 1024
INFLATE_BUFFER = 256 * 1024  # the check's scratch space per thread
IN_FLIGHT_BYTES = 256 << 20  # caps the blocks queued for threads, whatever `jobs` says
# Header: magic, deflate, no flags, mtime 0, no extra flags, OS "Unix" (as gzip writes it).
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
SYNC_MARK = b"\x00\x00\xff\xff"  # LEN 0 and NLEN 0xffff of an empty stored block

Z_OK, Z_STREAM_END, Z_BLOCK = 0, 1, 5


class CompressionError(PebuilderError):
    """A block could not be compressed, or did not decode back to its input."""


# --- finding and clearing libdeflate's final-block bit, with zlib's inflate(Z_BLOCK) -------------

class _ZStream(ctypes.Structure):
    """zlib's z_stream as zlib.h declares it (pointers, uInt = 32 bits, uLong = C long)."""

    _fields_ = [("next_in", ctypes.c_void_p), ("avail_in", ctypes.c_uint), ("total_in", ctypes.c_ulong),
                ("next_out", ctypes.c_void_p), ("avail_out", ctypes.c_uint), ("total_out", ctypes.c_ulong),
                ("msg", ctypes.c_char_p), ("state", ctypes.c_void_p), ("zalloc", ctypes.c_void_p),
                ("zfree", ctypes.c_void_p), ("opaque", ctypes.c_void_p), ("data_type", ctypes.c_int),
                ("adler", ctypes.c_ulong), ("reserved", ctypes.c_ulong)]


_libz: ctypes.CDLL | None = None
_libz_tried = False
_libz_lock = threading.Lock()


def _load_libz() -> ctypes.CDLL | None:
    """The system zlib, whose inflate can stop at block boundaries (Python's zlib module can't)."""
    global _libz, _libz_tried
    with _libz_lock:
        if not _libz_tried:
            _libz_tried = True
            for name in ("libz.so.1", ctypes.util.find_library("z")):
                try:
                    lib = ctypes.CDLL(name) if name else None
                except OSError:
                    continue
                if lib is None:
                    continue
                lib.zlibVersion.restype = ctypes.c_char_p
                lib.inflateInit2_.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
                lib.inflate.argtypes = [ctypes.c_void_p, ctypes.c_int]
                lib.inflateEnd.argtypes = [ctypes.c_void_p]
                _libz = lib
                break
        return _libz


def _address(buf: bytearray) -> int:
    """Where a bytearray's bytes are; valid while it is neither resized nor freed."""
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf)) if buf else 0


def _final_block_bits(comp: bytearray, expect: bytes | bytearray) -> tuple[int, int]:
    """Bit offsets of the last block's header and of the stream's end, in a raw deflate stream.

    Decodes the whole stream (in C, GIL released) into a small rotating buffer and checks that it
    gives back `expect`, piece by piece."""
    libz = _load_libz()
    if libz is None:
        raise CompressionError("the system zlib (libz.so.1) could not be loaded for the libdeflate engine")
    out = bytearray(INFLATE_BUFFER)
    strm = _ZStream()
    if libz.inflateInit2_(ctypes.byref(strm), -15, libz.zlibVersion(), ctypes.sizeof(strm)) != Z_OK:
        raise CompressionError("zlib's inflateInit2 failed")
    try:
        strm.next_in, strm.avail_in = _address(comp), len(comp)
        start, last_start, end, done, rc = 0, -1, -1, 0, Z_OK
        while rc != Z_STREAM_END:
            strm.next_out, strm.avail_out = _address(out), len(out)
            rc = libz.inflate(ctypes.byref(strm), Z_BLOCK)
            if rc not in (Z_OK, Z_STREAM_END):
                raise CompressionError(f"libdeflate produced a block that zlib cannot decode (zlib error {rc})")
            got = len(out) - strm.avail_out
            if out[:got] != expect[done:done + got]:
                raise CompressionError("a compressed block did not decode back to its input")
            done += got
            flags = strm.data_type
            if flags & 128:  # just after an end-of-block code: the bit position is exact
                pos = (len(comp) - strm.avail_in) * 8 - (flags & 7)
                if flags & 64:  # ... of the final block
                    last_start, end = start, pos
                else:
                    start = pos
        left = strm.avail_in
    finally:
        libz.inflateEnd(ctypes.byref(strm))
    if left or last_start < 0 or done != len(expect):
        raise CompressionError("a compressed block did not decode back to its input")
    return last_start, end


def _unfinalize(comp: bytearray, expect: bytes | bytearray) -> bytearray:
    """Turn a complete raw deflate stream into one that goes on: BFINAL cleared, then byte-aligned
    by an empty stored block, so that the next independently compressed block can follow."""
    last_start, end = _final_block_bits(comp, expect)
    comp[last_start >> 3] &= ~(1 << (last_start & 7)) & 0xFF
    spare = len(comp) * 8 - end  # padding bits after the final end-of-block code
    if spare:
        comp[-1] &= (1 << (8 - spare)) - 1
    # The stored block's 3 header bits (all zero) fit in the padding if it has room, else they take
    # one more zero byte; either way the decoder then skips to the byte boundary for LEN/NLEN.
    comp += SYNC_MARK if spare >= 3 else b"\x00" + SYNC_MARK
    return comp


def _libdeflate_block(data: bytes | bytearray, level: int, final: bool, prev: bytes) -> bytes:
    comp = _libdeflate.deflate_compress(data, level)
    return bytes(comp) if final else bytes(_unfinalize(comp, data))


def _zlib_block(data: bytes | bytearray, level: int, final: bool, prev: bytes) -> bytes:
    if prev:
        z = zlib.compressobj(min(level, 9), zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, prev)
    else:
        z = zlib.compressobj(min(level, 9), zlib.DEFLATED, -15, 9)
    return z.compress(data) + z.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


BlockFunc = Callable[[bytes | bytearray, int, bool, bytes], bytes]
_BLOCK_FUNCS: dict[str, BlockFunc] = {"libdeflate": _libdeflate_block, "zlib": _zlib_block}


# --- choices -------------------------------------------------------------------------------------

def default_engine() -> str:
    """libdeflate where both the `deflate` package and the system libz are there, else zlib."""
    return "libdeflate" if _libdeflate is not None and _load_libz() is not None else "zlib"


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise PebuilderError(f"unknown gzip engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if engine == "libdeflate" and (_libdeflate is None or _load_libz() is None):
        raise PebuilderError("the libdeflate gzip engine needs the Python package 'deflate' "
                             "(pip install deflate) and the system zlib (libz.so.1)")


def resolve_level(level: int | str | None, engine: str) -> int:
    """The engine's numeric level for a name or number; None means "default"."""
    if level is None:
        level = "default"
    if isinstance(level, str):
        try:
            return NAMED_LEVELS[engine][level]
        except KeyError:
            raise PebuilderError(f"unknown gzip level {level!r}; use fast, default, best or 1-12") from None
    if not 1 <= level <= 12:
        raise PebuilderError(f"gzip level {level} is out of range 1-12")
    return min(level, MAX_LEVEL[engine])


def block_size_for(level: int) -> int:
    return BIG_BLOCK_SIZE if level >= 10 else BLOCK_SIZE


def default_jobs() -> int:
    """The CPUs this process may run on (fewer than os.cpu_count() under taskset or cgroups)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# --- the writer ------------------------------------------------------------------------------------

class ParallelGzipWriter:
    """A write-only file object that gzips into `sink` using `jobs` threads.

    Memory stays bounded whatever the input size: at most jobs + 1 blocks (and never more than
    IN_FLIGHT_BYTES of them) are in flight, and the oldest is written out before another one is
    queued: about (jobs + 2) × block size in all, 1 MiB blocks (16 MiB at levels 10-12).
    `close()` writes the final block and the trailer; it does not close `sink`."""

    def __init__(self, sink: BinaryIO, level: int | str | None = None, jobs: int | None = None,
                 engine: str | None = None, block_size: int | None = None):
        self.engine = engine or default_engine()
        check_engine(self.engine)
        self.level = resolve_level(level, self.engine)
        self.block_size = block_size or block_size_for(self.level)
        if self.block_size < WINDOW:
            raise PebuilderError(f"block size {self.block_size} is below the deflate window ({WINDOW})")
        if jobs is not None and jobs < 0:
            raise PebuilderError(f"jobs must be 1 or more (0 or None: one per CPU), not {jobs}")
        self.jobs = jobs or default_jobs()
        # One block waiting per busy thread, but never more than IN_FLIGHT_BYTES of them.
        self._in_flight = max(2, min(self.jobs + 1, IN_FLIGHT_BYTES // self.block_size))
        self.sink = sink
        self._compress = _BLOCK_FUNCS[self.engine]
        self._pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="pgzip") if self.jobs > 1 else None
        self._pending: deque[Future[bytes | bytearray]] = deque()
        self._buf = bytearray()
        self._prev = b""  # the last WINDOW bytes of the previous block (the zlib engine's dictionary)
        self._crc = 0
        self._size = 0
        self._closed = False
        sink.write(HEADER)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed ParallelGzipWriter")
        view = memoryview(data).cast("B")
        n = len(view)
        self._crc = zlib.crc32(view, self._crc)
        self._size += n
        pos = 0
        if self._buf:
            pos = min(n, self.block_size - len(self._buf))
            self._buf += view[:pos]
            if len(self._buf) == self.block_size:
                block, self._buf = self._buf, bytearray()
                self._submit(block, final=False)
        while n - pos >= self.block_size:  # whole blocks straight from the caller's buffer
            self._submit(bytes(view[pos:pos + self.block_size]), final=False)
            pos += self.block_size
        self._buf += view[pos:]
        return n

    def _submit(self, block: bytes | bytearray, final: bool) -> None:
        prev, self._prev = self._prev, bytes(block[-WINDOW:])
        if self._pool is None:
            self.sink.write(self._compress(block, self.level, final, prev))
            return
        while len(self._pending) >= self._in_flight:
            self._write_oldest()
        self._pending.append(self._pool.submit(self._compress, block, self.level, final, prev))

    def _write_oldest(self) -> None:
        self.sink.write(self._pending.popleft().result())

    def close(self) -> None:
        """Compress what is left as the final block, wait for all blocks, write the trailer."""
        if self._closed:
            return
        self._closed = True
        try:
            block, self._buf = self._buf, bytearray()
            self._submit(block, final=True)
            while self._pending:
                self._write_oldest()
            self.sink.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        finally:
            self._stop()

    def _stop(self) -> None:
        if self._pool is not None:
            for f in self._pending:
                f.cancel()
            self._pool.shutdown(wait=True)
        self._pending.clear()

    def __enter__(self) -> ParallelGzipWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:  # the input is incomplete: a trailer would make a truncated archive look whole
            self._closed = True
            self._stop()


def compress(data: bytes, level: int | str | None = None, jobs: int | None = None,
             engine: str | None = None, block_size: int | None = None) -> bytes:
    """All of `data` as one gzip member, in memory (for small inputs and tests)."""
    out = io.BytesIO()
    with ParallelGzipWriter(out, level, jobs, engine, block_size) as w:
        w.write(data)
    return out.getvalue()
