"""The initrd compressors: parallel gzip (one member, exact, deterministic, bounded memory), the
named levels, and the messages for levels a compressor does not have."""

from __future__ import annotations

import gzip
import io
import lzma
import random
import shutil
import struct
import subprocess
import tracemalloc
import zlib
from pathlib import Path

import pytest

from pebuilder.errors import ConfigError, ToolMissingError
from pebuilder.formats import compress, cpio, pgzip

ENGINES = [pytest.param("libdeflate", marks=pytest.mark.skipif(pgzip.default_engine() != "libdeflate",
                                                               reason="the 'deflate' package is not installed")),
           "zlib"]
SMALL_BLOCK = 64 * 1024  # many blocks from little data, so every join is exercised


def sample(size: int, seed: int = 1) -> bytes:
    """Initrd-like data: text, runs of zeros and incompressible stretches (stored blocks)."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_/.") for _ in range(rng.randint(2, 12)))
             for _ in range(400)]
    out = bytearray()
    while len(out) < size:
        kind = rng.random()
        if kind < 0.7:
            out += b" ".join(rng.choice(words) for _ in range(rng.randint(50, 3000))) + b"\n"
        elif kind < 0.85:
            out += b"\0" * rng.randint(1, 20000)
        else:
            out += rng.randbytes(rng.randint(1, 40000))
    return bytes(out[:size])


def members(data: bytes) -> list[bytes]:
    """Split a gzip file into its members' decompressed contents, checking each trailer."""
    found = []
    rest = data
    while rest:
        assert rest[:3] == b"\x1f\x8b\x08", "not a gzip member"
        d = zlib.decompressobj(31)
        body = d.decompress(rest) + d.flush()
        assert d.eof, "member is truncated"
        found.append(body)
        rest = d.unused_data
    return found


def gzip_t(data: bytes, tmp_path: Path) -> None:
    if shutil.which("gzip") is None:
        return
    f = tmp_path / "check.gz"
    f.write_bytes(data)
    proc = subprocess.run(["gzip", "-t", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --- parallel gzip ---------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("level", ["fast", "default", "best", *range(1, 13)])
def test_round_trip_every_level(engine, level, tmp_path):
    data = sample(600_000, seed=7)
    out = pgzip.compress(data, level, jobs=2, engine=engine, block_size=SMALL_BLOCK)
    assert members(out) == [data]
    assert gzip.decompress(out) == data
    gzip_t(out, tmp_path)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("size", [0, 1, SMALL_BLOCK - 1, SMALL_BLOCK, SMALL_BLOCK + 1, 3 * SMALL_BLOCK])
def test_edge_sizes(engine, size):
    data = sample(size, seed=size)
    out = pgzip.compress(data, "default", jobs=2, engine=engine, block_size=SMALL_BLOCK)
    assert members(out) == [data]


@pytest.mark.parametrize("engine", ENGINES)
def test_same_bytes_whatever_the_jobs_and_writes(engine):
    data = sample(1_500_000, seed=3)
    outs = {pgzip.compress(data, "default", jobs=j, engine=engine, block_size=SMALL_BLOCK) for j in (1, 2, 4)}
    rng = random.Random(5)
    buf = io.BytesIO()
    with pgzip.ParallelGzipWriter(buf, "default", jobs=3, engine=engine, block_size=SMALL_BLOCK) as w:
        pos = 0
        while pos < len(data):  # odd write sizes, from single bytes to several blocks
            n = rng.choice([1, 7, 4096, SMALL_BLOCK - 3, 3 * SMALL_BLOCK + 11])
            w.write(data[pos:pos + n])
            pos += n
    outs.add(buf.getvalue())
    assert len(outs) == 1


def test_header_is_deterministic():
    out = pgzip.compress(b"hello\n" * 1000)
    magic, method, flags, mtime = struct.unpack("<HBBI", out[:8])
    assert (magic, method, flags, mtime) == (0x8B1F, 8, 0, 0)  # no name, no mtime
    assert struct.unpack("<II", out[-8:]) == (zlib.crc32(b"hello\n" * 1000), 6000)


def test_libdeflate_blocks_join_at_every_bit_offset():
    """A block can end at any bit of its last byte; the join must be right for all eight."""
    if pgzip.default_engine() != "libdeflate":
        pytest.skip("the 'deflate' package is not installed")
    import deflate

    rng = random.Random(11)
    seen: set[int] = set()
    for i in range(400):
        data = sample(rng.randint(100, 5000), seed=i)
        comp = deflate.deflate_compress(data, rng.choice([1, 6, 12]))
        _, end = pgzip._final_block_bits(comp, data)
        spare = len(comp) * 8 - end
        if spare in seen:
            continue
        seen.add(spare)
        joined = bytes(pgzip._unfinalize(bytearray(comp), data)) + bytes(deflate.deflate_compress(data, 6))
        assert zlib.decompress(joined, -15) == data + data
        if len(seen) == 8:
            break
    assert seen == set(range(8))


def test_a_corrupt_block_is_refused():
    if pgzip.default_engine() != "libdeflate":
        pytest.skip("the 'deflate' package is not installed")
    import deflate

    data = sample(50_000)
    comp = deflate.deflate_compress(data, 6)
    with pytest.raises(pgzip.CompressionError, match="did not decode back"):
        pgzip._final_block_bits(comp, data[:-1] + b"?")


def test_bounded_memory():
    """64 MB through the compressor: Python-side memory stays a few blocks, not the input."""
    pieces = [sample(1 << 20, seed=s) for s in range(4)]
    sink = _Discard()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        with pgzip.ParallelGzipWriter(sink, "default", jobs=2) as w:
            for i in range(64):
                w.write(pieces[i % 4])
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert sink.size > 0
    assert peak < 32 << 20, f"peak {peak >> 20} MiB while compressing 64 MiB"


class _Discard:
    def __init__(self):
        self.size = 0

    def write(self, data) -> int:
        self.size += len(data)
        return len(data)


def test_default_engine_is_libdeflate_here():
    """The project depends on `deflate`: a fallback to zlib would quietly make initrds bigger."""
    assert pgzip.default_engine() == "libdeflate"


# --- the cpio stream inside ------------------------------------------------------------------------

def _tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "bin/busybox").write_bytes(sample(2_500_000, seed=21))
    (root / "etc/hostname").write_text("box\n")
    (root / "bin/sh").symlink_to("busybox")
    for i in range(50):
        (root / "etc" / f"f{i}").write_bytes(sample(i * 997, seed=i))
    return root


@pytest.mark.parametrize("level", ["fast", "default", "best", 9])
def test_initrd_is_one_member_holding_the_exact_cpio_stream(level, tmp_path):
    """One gzip member, so no cut can fall inside a cpio archive; its content is the exact stream
    that an uncompressed pack writes, ending with the TRAILER!!! entry and its padding."""
    root = _tree(tmp_path / "root")
    meta = cpio.TreeMeta()
    cpio.pack(root, meta, tmp_path / "plain.cpio", compression="none")
    cpio.pack(root, meta, tmp_path / "initrd.gz", compression="gzip", level=level)
    plain = (tmp_path / "plain.cpio").read_bytes()
    packed = (tmp_path / "initrd.gz").read_bytes()
    assert members(packed) == [plain]
    trailer = plain.rfind(b"TRAILER!!!")
    assert trailer > 0 and plain[trailer + 10:].strip(b"\0") == b"" and len(plain) % 512 == 0
    assert [e.name for e in cpio.list_entries(tmp_path / "initrd.gz")] == \
           [e.name for e in cpio.list_entries(tmp_path / "plain.cpio")]
    gzip_t(packed, tmp_path)


# --- levels ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,level,words", [
    ("gzip", 0, ["gzip level 0 is out of range", "1-9", "10-12", "fast, default, best, seed"]),
    ("gzip", 13, ["gzip level 13 is out of range", "1-9"]),
    ("gzip", "quick", ["unknown gzip level 'quick'"]),
    ("xz", 10, ["xz level 10 is out of range", "0-9"]),
    ("xz", "seed", ["'seed'", "gzip only", "xz takes 0-9"]),
    ("zstd", 23, ["zstd level 23 is out of range", "1-19", "20-22", "--ultra"]),
    ("zstd", 0, ["zstd level 0 is out of range"]),
    ("gzip", 2.5, ["must be a number or a name"]),
    ("gzip", True, ["must be a number or a name"]),
    ("lz4", 1, ["unknown compression 'lz4'", "gzip, xz, zstd, none"]),
])
def test_bad_levels_are_named(kind, level, words):
    with pytest.raises(ConfigError) as err:
        compress.check_level(kind, level)
    for w in words:
        assert w in str(err.value)
    with pytest.raises(ConfigError):
        compress.open_compressor(io.BytesIO(), kind, level)


@pytest.mark.parametrize("kind,level", [("gzip", 1), ("gzip", 12), ("gzip", "Best"), ("gzip", "seed"),
                                        ("gzip", "9"), ("xz", 0), ("xz", "best"), ("zstd", 22),
                                        ("zstd", "fast"), ("none", 99), ("none", "anything"), ("gzip", None)])
def test_good_levels_pass(kind, level):
    compress.check_level(kind, level)


def test_level_names():
    assert compress.LEVEL_NAMES == ("fast", "default", "best", "seed")


def _through(kind: str, level, data: bytes, jobs: int | None = None) -> bytes:
    buf = io.BytesIO()
    z = compress.open_compressor(buf, kind, level, jobs=jobs)
    z.write(data)
    z.close()
    return buf.getvalue()


@pytest.mark.parametrize("level", ["fast", "default", "best", None, 3])
def test_xz_levels_round_trip(level):
    data = sample(300_000)
    out = _through("xz", level, data)
    assert lzma.decompress(out) == data


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd not installed")
@pytest.mark.parametrize("level", ["fast", "default", 20, None])
def test_zstd_levels_round_trip_same_bytes_for_any_jobs(level, tmp_path):
    data = sample(300_000)
    outs = set()
    for jobs in (1, 2):
        f = tmp_path / f"out{jobs}.zst"
        with open(f, "wb") as sink:
            z = compress.open_compressor(sink, "zstd", level, jobs=jobs)
            z.write(data)
            z.close()
        outs.add(f.read_bytes())
        back = subprocess.run(["zstd", "-dc", str(f)], capture_output=True, check=True).stdout
        assert back == data
    assert len(outs) == 1


def test_gzip_default_level_is_the_named_default():
    data = sample(200_000)
    assert _through("gzip", None, data) == _through("gzip", "default", data)
    assert _through("gzip", "best", data, jobs=1) == _through("gzip", 12, data, jobs=2)


@pytest.mark.skipif(shutil.which("advdef") is None, reason="advdef (advancecomp) not installed")
def test_seed_level_is_gzip2_then_advdef(tmp_path):
    data = sample(150_000)
    with open(tmp_path / "initrd.gz", "wb") as sink:
        z = compress.open_compressor(sink, "gzip", "seed")
        z.write(data)
        z.close()
    out = (tmp_path / "initrd.gz").read_bytes()
    assert members(out) == [data]
    # The same as doing it by hand.
    ref = tmp_path / "ref.gz"
    ref.write_bytes(subprocess.run(["gzip", "-2", "-n", "-c"], input=data, capture_output=True, check=True).stdout)
    subprocess.run(["advdef", "-z4", "-q", str(ref)], check=True)
    assert out == ref.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["initrd.gz", "ref.gz"]  # spool removed


def test_seed_level_without_advdef_says_what_to_install(monkeypatch):
    monkeypatch.setattr(compress, "which", lambda name: None)
    with pytest.raises(ToolMissingError, match="apt-get install advancecomp"):
        compress.open_compressor(io.BytesIO(), "gzip", "seed")
