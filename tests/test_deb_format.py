"""Reading .deb files and unpacking tar streams into an FsRoot, with archives the tests build.

The hostile members (absolute names, `..`, a symlink followed by a file written through it, hard
links leading out, device nodes, setuid files) are made with Python's tarfile, because dpkg-deb
would need real device nodes (root) to pack some of them.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from pebuilder.debian.trim import TRIM, TRIM_ALL
from pebuilder.errors import UnsafeArchiveError
from pebuilder.formats import deb
from pebuilder.formats.tar import extract_into
from pebuilder.fsroot import Budget, FsRoot

MTIME = 1_700_000_000


# -- building archives ------------------------------------------------------------------------------


def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, uid: int = 0, gid: int = 0,
          linkname: str = "", size: int = 0, dev: tuple[int, int] = (0, 0)) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.mtime = MTIME
    ti.linkname = linkname
    ti.size = size
    ti.devmajor, ti.devminor = dev
    return ti


def make_tar(members: list[tuple], compression: str = "") -> bytes:
    """members: (name, kind, extra kwargs, data or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, kind, kw, data in members:
            ti = _info(name, kind, size=len(data) if data is not None else 0, **kw)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    if compression == ".gz":
        return gzip.compress(raw, mtime=0)
    if compression == ".xz":
        return lzma.compress(raw)
    if compression == ".bz2":
        return bz2.compress(raw)
    if compression == ".zst":
        import zstandard

        return zstandard.ZstdCompressor().compress(raw)
    return raw


def make_ar(members: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name:<16}{MTIME:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}".encode() + b"`\n"
        out += data
        if len(data) % 2:
            out += b"\n"
    return bytes(out)


CONTROL = b"""Package: hello-test
Version: 1.0-1
Architecture: arm64
Maintainer: Nobody <nobody@example.invalid>
Installed-Size: 12
Depends: libc6 (>= 2.34)
Description: a test package
 made by pebuilder's tests
"""

D, F, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE

GOOD = [
    ("./", D, {"mode": 0o755}, None),
    ("./usr/", D, {"mode": 0o755}, None),
    ("./usr/bin/", D, {"mode": 0o755}, None),
    ("./usr/bin/hello", F, {"mode": 0o755}, b"#!/bin/sh\necho hello\n"),
    ("./usr/bin/su", F, {"mode": 0o4755}, b"setuid binary"),
    ("./usr/bin/hello-hard", H, {"linkname": "./usr/bin/hello"}, None),
    ("./etc/", D, {"mode": 0o755}, None),
    ("./etc/shadow", F, {"mode": 0o640, "gid": 42}, b"root:*:19000:0:99999:7:::\n"),
    ("./tmp/", D, {"mode": 0o1777}, None),
    ("./dev/", D, {"mode": 0o755}, None),
    ("./dev/console", tarfile.CHRTYPE, {"mode": 0o600, "dev": (5, 1)}, None),
    ("./dev/sda", tarfile.BLKTYPE, {"mode": 0o660, "gid": 6, "dev": (8, 0)}, None),
    ("./run/initctl", tarfile.FIFOTYPE, {"mode": 0o600}, None),
    ("./bin", L, {"linkname": "usr/bin"}, None),
    ("./bin/through-link", F, {"mode": 0o755}, b"written through bin -> usr/bin\n"),
    ("./usr/share/doc/hello-test/", D, {}, None),
    ("./usr/share/doc/hello-test/copyright", F, {}, b"MIT\n"),
    ("./usr/share/doc/hello-test/changelog.Debian.gz", F, {}, b"x"),
    ("./usr/share/man/man1/hello.1.gz", F, {}, b"x"),
    ("./usr/share/locale/de/LC_MESSAGES/hello.mo", F, {}, b"x"),
    ("./usr/share/locale/locale.alias", F, {}, b"x"),
    ("./usr/lib/locale/C.utf8/LC_CTYPE", F, {}, b"x"),
    ("./usr/lib/locale/de_DE.utf8/LC_CTYPE", F, {}, b"x"),
    ("./usr/share/man/man1/hello-hard.1.gz", H, {"linkname": "./usr/share/man/man1/hello.1.gz"}, None),
]


def make_deb(folder: Path, data_members=GOOD, data_comp: str = ".xz", control_comp: str = ".gz",
             name: str = "hello-test_1.0-1_arm64.deb") -> Path:
    control_tar = make_tar([("./", D, {"mode": 0o755}, None), ("./control", F, {}, CONTROL),
                            ("./md5sums", F, {}, b"0123  usr/bin/hello\n")], control_comp)
    path = folder / name
    path.write_bytes(make_ar([("debian-binary", b"2.0\n"), (f"control.tar{control_comp}", control_tar),
                              (f"data.tar{data_comp}", make_tar(data_members, data_comp))]))
    return path


def snapshot(folder: Path) -> dict[str, tuple]:
    """Everything under `folder`: type, mode and content hash, to prove nothing changed there."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            st = p.lstat()
            body = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
            out[str(p.relative_to(folder))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), body,
                                               os.readlink(p) if p.is_symlink() else None)
    return out


@pytest.fixture
def sandbox(tmp_path: Path):
    """A target root next to a decoy folder that must never change."""
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("decoy\n")
    before = snapshot(outside)
    yield root, outside
    assert snapshot(outside) == before, "something outside the target changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "root"], "something appeared beside the target"


# -- tar streams into FsRoot ------------------------------------------------------------------------


def test_extract_into_keeps_owners_modes_devices_and_links(sandbox):
    root, _ = sandbox
    fs = FsRoot(root)
    written = extract_into(io.BytesIO(make_tar(GOOD, ".gz")), fs, Budget(), what="test.tar.gz")
    meta = fs.meta
    # setuid lives in TreeMeta, never on the host file
    assert meta.entries["usr/bin/su"][0] == stat.S_IFREG | 0o4755
    assert not (root / "usr/bin/su").stat().st_mode & 0o6000
    assert meta.entries["etc/shadow"] == [stat.S_IFREG | 0o640, 0, 42]
    assert meta.entries["tmp"][0] == stat.S_IFDIR | 0o1777
    # devices and fifos: recorded, placeholders on disk
    assert meta.specials["dev/console"] == [stat.S_IFCHR | 0o600, 5, 1]
    assert meta.specials["dev/sda"] == [stat.S_IFBLK | 0o660, 8, 0]
    assert meta.specials["run/initctl"][0] == stat.S_IFIFO | 0o600
    for dev in ("dev/console", "dev/sda", "run/initctl"):
        st = (root / dev).lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    # the symlink is a symlink; the file written "through" it landed inside, in usr/bin
    assert os.readlink(root / "bin") == "usr/bin"
    assert (root / "usr/bin/through-link").read_text().startswith("written through")
    assert (root / "usr/bin/hello-hard").stat().st_ino == (root / "usr/bin/hello").stat().st_ino
    assert (root / "usr/bin/hello").stat().st_mtime == MTIME
    assert "bin/through-link" in written and "./" not in written and "." not in written


def test_trim_drops_docs_and_keeps_copyright(sandbox):
    root, _ = sandbox
    fs = FsRoot(root)
    written = extract_into(io.BytesIO(make_tar(GOOD)), fs, Budget(), exclude=TRIM)
    assert (root / "usr/share/doc/hello-test/copyright").is_file()
    assert (root / "usr/lib/locale/C.utf8/LC_CTYPE").is_file()
    assert (root / "usr/share/locale/locale.alias").is_file()
    for gone in ("usr/share/doc/hello-test/changelog.Debian.gz", "usr/share/man/man1/hello.1.gz",
                 "usr/share/man/man1/hello-hard.1.gz", "usr/share/locale/de/LC_MESSAGES/hello.mo",
                 "usr/lib/locale/de_DE.utf8/LC_CTYPE"):
        assert not (root / gone).exists(), gone
        assert gone not in written


def test_trim_predicates():
    assert TRIM("usr/share/man/man8/ls.8.gz") and TRIM("./usr/share/info/dir")
    assert not TRIM("usr/share/man")  # the folder stays, empty
    assert not TRIM("usr/share/doc/bash") and not TRIM("usr/share/doc/bash/copyright")
    assert TRIM_ALL("usr/share/doc/bash/copyright") and TRIM("usr/share/doc/bash/examples/x")
    assert TRIM("usr/share/lintian/overrides/bash") and TRIM("usr/share/i18n/charmaps/UTF-8.gz")
    assert not TRIM("usr/lib/locale/C.utf8/LC_CTYPE") and TRIM("usr/lib/locale/locale-archive")
    assert not TRIM("usr/bin/man") and not TRIM("usr/share/zoneinfo/UTC")
    # iconv modules: rare charsets go, Unicode, the Western code pages and the module lists stay
    assert TRIM("usr/lib/x86_64-linux-gnu/gconv/IBM1390.so") and TRIM("./usr/lib/aarch64-linux-gnu/gconv/EUC-JP.so")
    for kept in ("UTF-16.so", "UTF-32.so", "UNICODE.so", "CP1252.so", "gconv-modules", "gconv-modules.cache",
                 "gconv-modules.d"):
        assert not TRIM(f"usr/lib/x86_64-linux-gnu/gconv/{kept}"), kept
    assert not TRIM("usr/lib/x86_64-linux-gnu/gconv") and not TRIM("usr/lib/x86_64-linux-gnu/libc.so.6")
    assert not TRIM("usr/lib/x86_64-linux-gnu/gconv/gconv-modules.d/gconv-modules-extra.conf")


@pytest.mark.parametrize("name", ["../evil", "./../../evil", "/abs/evil", "usr/../../evil"])
def test_names_leading_out_are_refused(sandbox, name):
    root, outside = sandbox
    data = make_tar([("./usr/", D, {}, None), (name, F, {}, b"pwned\n")])
    with pytest.raises(UnsafeArchiveError, match="evil"):
        extract_into(io.BytesIO(data), FsRoot(root), Budget(), what="evil.tar")
    assert not (outside / "evil").exists() and not (outside.parent / "evil").exists()


@pytest.mark.parametrize("target", ["../outside", "../../../../../../outside", "/outside", "/"])
def test_symlink_escape_then_file_stays_inside(sandbox, target):
    root, outside = sandbox
    data = make_tar([("escape", L, {"linkname": target}, None),
                     ("escape/passwd", F, {}, b"pwned\n"),
                     ("escape/new-file", F, {}, b"pwned\n")])
    fs = FsRoot(root)
    extract_into(io.BytesIO(data), fs, Budget(), what="escape.tar")
    # the link is kept as the image's own business; what went through it is inside the root
    assert os.readlink(root / "escape") == target
    landed = fs.path("escape/new-file")
    assert landed.is_file() and root in landed.parents
    assert not (outside / "new-file").exists()


@pytest.mark.parametrize("link", ["../outside/passwd", "/etc/passwd", "../../../etc/passwd"])
def test_hard_link_leading_out_is_refused(sandbox, link):
    root, _ = sandbox
    data = make_tar([("./etc/", D, {}, None), ("./etc/hard", H, {"linkname": link}, None)])
    with pytest.raises(UnsafeArchiveError):
        extract_into(io.BytesIO(data), FsRoot(root), Budget(), what="hard.tar")
    assert not (root / "etc/hard").exists()


def test_hard_link_through_a_symlink_or_to_nothing_is_refused(sandbox):
    root, _ = sandbox
    for members in (
        [("passwd-link", L, {"linkname": "../outside/passwd"}, None), ("hard", H, {"linkname": "passwd-link"}, None)],
        [("hard", H, {"linkname": "not-there"}, None)],
        [("dev/null", tarfile.CHRTYPE, {"dev": (1, 3)}, None), ("hard", H, {"linkname": "dev/null"}, None)],
    ):
        with pytest.raises(UnsafeArchiveError, match="hard link"):
            extract_into(io.BytesIO(make_tar(members)), FsRoot(root), Budget(), what="hard.tar")
        assert not (root / "hard").exists()
        shutil.rmtree(root)
        root.mkdir()


def test_unknown_member_type_and_budget_are_refused(sandbox):
    root, _ = sandbox
    with pytest.raises(UnsafeArchiveError, match="tar type"):
        extract_into(io.BytesIO(make_tar([("weird", b"Z", {}, None)])), FsRoot(root), Budget(), what="w.tar")
    big = make_tar([("a", F, {}, b"x" * 4000), ("b", F, {}, b"x" * 4000)])
    with pytest.raises(UnsafeArchiveError, match="extraction limit"):
        extract_into(io.BytesIO(big), FsRoot(root), Budget(max_bytes=6000), what="big.tar")
    with pytest.raises(UnsafeArchiveError, match="damaged|not a tar"):
        extract_into(io.BytesIO(make_tar(GOOD, ".xz")[:300]), FsRoot(root), Budget(), what="cut.tar.xz")


def test_existing_folders_keep_their_owner_and_links_are_followed(sandbox):
    """As dpkg does on a merged-/usr base: bin -> usr/bin stays a link, usr/bin keeps its mode."""
    root, _ = sandbox
    fs = FsRoot(root)
    fs.mkdir("usr/bin", 0o755)
    fs.symlink("bin", "usr/bin")
    fs.mkdir("var/tmp", 0o1777)
    data = make_tar([("./bin/", D, {"mode": 0o700, "uid": 5}, None), ("./bin/busybox", F, {"mode": 0o755}, b"x"),
                     ("./var/tmp/", D, {"mode": 0o755}, None)])
    written = extract_into(io.BytesIO(data), fs, Budget())
    assert os.readlink(root / "bin") == "usr/bin"
    assert (root / "usr/bin/busybox").is_file()
    assert fs.meta.entries["usr/bin"][:2] == [stat.S_IFDIR | 0o755, 0]
    assert fs.meta.entries["var/tmp"][0] == stat.S_IFDIR | 0o1777
    assert written == ["bin", "bin/busybox", "var/tmp"]


def test_ten_thousand_members(tmp_path):
    """mmdebstrap's tar has ~10,000 members: one pass, linear time."""
    members = [("./", D, {}, None)]
    for d in range(100):
        members.append((f"./usr/lib/d{d:03}/", D, {}, None))
        members += [(f"./usr/lib/d{d:03}/f{f:03}", F, {}, b"x" * 64) for f in range(99)]
    data = make_tar(members)
    fs = FsRoot(tmp_path / "root")
    start = time.monotonic()
    written = extract_into(io.BytesIO(data), fs, Budget())
    took = time.monotonic() - start
    assert len(written) == 10_000 and (tmp_path / "root/usr/lib/d099/f098").is_file()
    assert took < 60, f"{len(written)} members took {took:.1f} s"
    print(f"10,000 members in {took:.2f} s")


# -- .deb files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("data_comp", [".xz", ".gz", ".zst", ".bz2", ""])
def test_deb_control_and_extract(tmp_path, data_comp):
    path = make_deb(tmp_path, data_comp=data_comp, control_comp=".zst" if data_comp == ".zst" else ".gz")
    fields = deb.control(path)
    assert fields["Package"] == "hello-test" and fields["Architecture"] == "arm64"
    assert fields["Depends"] == "libc6 (>= 2.34)"
    assert set(deb.control_files(path)) == {"control", "md5sums"}
    fs = FsRoot(tmp_path / "root")
    written = deb.extract(path, fs, Budget(), exclude=TRIM)
    assert "usr/bin/hello" in written and "usr/share/man/man1/hello.1.gz" not in written
    assert fs.meta.entries["usr/bin/su"][0] & stat.S_ISUID


def test_not_a_deb(tmp_path):
    junk = tmp_path / "junk.deb"
    junk.write_bytes(b"this is not an ar archive")
    with pytest.raises(deb.DebFormatError, match="junk.deb"):
        deb.control(junk)
    wrong_first = tmp_path / "wrong.deb"
    wrong_first.write_bytes(make_ar([("control.tar.gz", b"")]))
    with pytest.raises(deb.DebFormatError, match="debian-binary"):
        deb.control(wrong_first)
    cut = make_deb(tmp_path, name="cut.deb")
    cut.write_bytes(cut.read_bytes()[:-200])
    with pytest.raises(UnsafeArchiveError):
        deb.extract(cut, FsRoot(tmp_path / "cut-root"), Budget())


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")
@pytest.mark.parametrize("comp", ["xz", "gzip", "zstd", "none"])
def test_reads_what_dpkg_deb_builds(tmp_path, comp):
    """The format as dpkg itself writes it (member padding, compressors), not only as we do."""
    src = tmp_path / "pkg"
    (src / "DEBIAN").mkdir(parents=True)
    (src / "DEBIAN/control").write_bytes(CONTROL.replace(b"Depends: libc6 (>= 2.34)\n", b""))
    (src / "usr/bin").mkdir(parents=True)
    (src / "usr/bin/tool").write_bytes(b"\x7fELF" + b"\0" * 59)
    (src / "usr/bin/tool").chmod(0o4755)
    (src / "usr/bin/tool-link").symlink_to("tool")
    out = tmp_path / "built.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{comp}", "--build", str(src), str(out)],
                   check=True, capture_output=True)
    assert deb.control(out)["Package"] == "hello-test"
    fs = FsRoot(tmp_path / "root")
    written = deb.extract(out, fs, Budget())
    assert written == ["usr", "usr/bin", "usr/bin/tool", "usr/bin/tool-link"]
    assert fs.meta.entries["usr/bin/tool"] == [stat.S_IFREG | 0o4755, 0, 0]
    assert os.readlink(tmp_path / "root/usr/bin/tool-link") == "tool"


def test_exclude_of_a_folder_drops_what_is_beneath(tmp_path):
    data = make_tar([("./opt/", D, {}, None), ("./opt/skip/", D, {}, None), ("./opt/skip/a", F, {}, b"a"),
                     ("./opt/skip/b/", D, {}, None), ("./opt/skip/b/c", F, {}, b"c"), ("./opt/keep", F, {}, b"k")])
    written = extract_into(io.BytesIO(data), FsRoot(tmp_path / "root"), Budget(), exclude=lambda p: p == "opt/skip")
    assert written == ["opt", "opt/keep"] and not (tmp_path / "root/opt/skip").exists()
