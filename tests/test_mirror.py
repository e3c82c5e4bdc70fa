"""Extensions from a Tiny Core mirror on 127.0.0.1: tce-load's resolution, flaky downloads, the cache."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TCZ, make_marker_extension, needs_fixtures, pebuilder
from mirror_server import MirrorServer

from pebuilder.errors import Exit
from pebuilder.formats import cpio, iso
from pebuilder.formats.tcz import resolve
from pebuilder.net.http import DownloadError, Policy
from pebuilder.tinycore.mirror import Mirror, Sources

REPO = "14.x/x86_64/tcz"
KVER = "3.16.6-tinycore64"


def _tcz(folder: Path, name: str, deps: list[str] = ()) -> None:
    src = folder / f".src-{name}"
    (src / "usr/local/share" / name).mkdir(parents=True)
    (src / "usr/local/share" / name / "README").write_text(f"{name}\n")
    subprocess.run(["mksquashfs", str(src), str(folder / f"{name}.tcz"), "-b", "4k", "-no-xattrs", "-all-root",
                    "-noappend", "-quiet", "-no-progress"], check=True, capture_output=True)
    shutil.rmtree(src)
    if deps:
        # tce-load strips spaces and tabs and skips empty lines
        (folder / f"{name}.tcz.dep").write_text("".join(f" {d}\t\n\n" for d in deps))


@pytest.fixture(scope="module")
def mirror_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    repo = root / REPO
    repo.mkdir(parents=True)
    for f in TCZ.iterdir():
        shutil.copyfile(f, repo / f.name)
    _tcz(repo, "top", ["left.tcz", "right"])
    _tcz(repo, "left", ["base.tcz"])
    _tcz(repo, "right", ["base.tcz"])
    _tcz(repo, "base")
    _tcz(repo, "loopa", ["loopb.tcz"])
    _tcz(repo, "loopb", ["loopa.tcz"])
    _tcz(repo, "kmoduser", ["mod-KERNEL.tcz"])
    _tcz(repo, f"mod-{KVER}")
    _tcz(repo, "ncursesw")  # dialog's dependency, absent from the fixtures
    make_marker_extension(repo, "mirrorext", marker="PEBUILDER-MIRROR-EXT-OK")
    (repo / "mirrorext.tcz.dep").write_text("kmaps.tcz\n")
    proc = pebuilder("mirror", "index", repo)
    assert "indexed" in proc.stdout
    return root


@needs_fixtures
def test_mirror_index_files(mirror_root):
    repo = mirror_root / REPO
    info = (repo / "info.lst").read_text().splitlines()
    assert info == sorted(p.name for p in repo.glob("*.tcz")) and "top.tcz" in info
    assert gzip.decompress((repo / "info.lst.gz").read_bytes()).decode().splitlines() == info
    md5db = gzip.decompress((repo / "md5.db.gz").read_bytes()).decode()
    assert (TCZ / "kmaps.tcz.md5.txt").read_text().strip() in md5db
    assert (repo / "dialog.tcz.md5.txt").read_text() == (TCZ / "dialog.tcz.md5.txt").read_text().strip() + "\n"
    assert "/usr/local/bin/dialog" in (repo / "dialog.tcz.list").read_text().splitlines()
    assert (repo / "top.tcz.tree").read_text() == (
        "top.tcz\n   left.tcz\n      base.tcz\n   right.tcz\n      base.tcz\n")
    assert "top.tcz\nleft.tcz\nright.tcz\n\n" in gzip.decompress((repo / "dep.db.gz").read_bytes()).decode()
    sizes = gzip.decompress((repo / "sizelist.gz").read_bytes()).decode()
    assert f"kmaps.tcz {(TCZ / 'kmaps.tcz').stat().st_size}\n" in sizes


def _sources(server: MirrorServer, cache: Path, **policy) -> Sources:
    m = Mirror([server.url], REPO, cache=cache, policy=Policy(**({"retries": 3, "backoff": 0.05} | policy)))
    return Sources([], m, KVER)


@needs_fixtures
def test_resolution_matches_tce_load(mirror_root, tmp_path):
    with MirrorServer(mirror_root) as srv:
        src = _sources(srv, tmp_path / "cache")
        res = resolve(["top.tcz", "loopa.tcz", "kmoduser.tcz"], src.deps_of)
        assert res.order == ["base.tcz", "left.tcz", "right.tcz", "top.tcz", "loopb.tcz", "loopa.tcz",
                             f"mod-{KVER}.tcz", "kmoduser.tcz"]
        assert res.cycles == [["loopa.tcz", "loopb.tcz", "loopa.tcz"]]
        assert not res.missing
        real = resolve(["iproute2.tcz"], src.deps_of)
        assert real.missing == {"libdb.tcz": ["iproute2.tcz", "db.tcz", "libdb.tcz"]}
        assert real.order == ["db.tcz", "iproute2.tcz"]
        # a missing .dep is "no dependencies", fetched once and never a failure
        assert src.deps_of("kmaps.tcz") == []
        assert (f"/{REPO}/kmaps.tcz.dep", None) in srv.requests


@needs_fixtures
def test_deps_command_names_the_chain(mirror_root, tmp_path):
    with MirrorServer(mirror_root) as srv:
        proc = pebuilder("deps", "iproute2", "top", "--mirror", srv.url, "--repo", REPO, check=False,
                         env={"PEBUILDER_CACHE": str(tmp_path / "c")})
    assert proc.returncode == Exit.EXTENSION_MISSING
    assert "libdb.tcz not found (needed by iproute2.tcz -> db.tcz)" in proc.stderr
    assert "load order: db.tcz iproute2.tcz base.tcz left.tcz right.tcz top.tcz" in proc.stdout


@needs_fixtures
@pytest.mark.parametrize("faults", [["delay"], ["500", "500"], ["cut"], ["cut", "500", "cut"]])
def test_transient_faults_are_retried(mirror_root, tmp_path, faults, caplog):
    caplog.set_level("INFO")
    with MirrorServer(mirror_root, delay=2.0) as srv:
        srv.faults[f"/{REPO}/dialog.tcz"] = list(faults)
        src = _sources(srv, tmp_path / "cache", timeout=1.0)
        path = src.paths(["dialog.tcz"])["dialog.tcz"]
        assert path.read_bytes() == (TCZ / "dialog.tcz").read_bytes()
        assert re.search(r"downloaded 1 files, [0-9.]+ KiB in [0-9.]+ s", caplog.text)
        assert "attempt 1 of 4" in caplog.text  # each retry is logged with its reason
        if "cut" in faults:
            ranges = [r for p, r in srv.requests if p.endswith("dialog.tcz") and r]
            assert ranges and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-"


@needs_fixtures
@pytest.mark.parametrize("fault,message", [("500", "giving up after 4 attempts: HTTP 500"),
                                           ("corrupt", "does not match the mirror's")])
def test_permanent_faults_fail_clearly_and_leave_no_file(mirror_root, tmp_path, fault, message):
    with MirrorServer(mirror_root) as srv:
        srv.faults[f"/{REPO}/dialog.tcz"] = [fault] * 10
        src = _sources(srv, tmp_path / "cache")
        with pytest.raises(DownloadError, match=message):
            src.paths(["dialog.tcz"])
    cached = [p for p in (tmp_path / "cache").rglob("dialog.tcz") if p.is_file()]
    assert cached == []
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".dl-")]


def _remaster_cfg(base: Path, iso_path: Path, mirror_url: str, host: str) -> Path:
    cfg = base / "pebuilder.toml"
    cfg.write_text(f"""
[template]
iso = "{iso_path}"
[work]
dir = "work"
[extensions]
mirrors = ["{mirror_url}"]
repo = "14.x/x86_64/tcz"
initrd = ["mirrorext"]
onboot = ["top", "dialog"]
[boot]
codes = ["console=ttyS0", "host={host}"]
timeout = 1
[output.iso]
path = "out.iso"
""")
    return cfg


@needs_fixtures
def test_killed_download_leaves_cache_clean_then_rerun_works(mirror_root, tmp_path, template_iso):
    cache = tmp_path / "cache"
    with MirrorServer(mirror_root) as srv:
        srv.faults[f"/{REPO}/mirrorext.tcz"] = ["stall"]
        cfg = _remaster_cfg(tmp_path, template_iso, srv.url, "pbkill")
        env = {"PEBUILDER_CACHE": str(cache), "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.Popen([sys.executable, "-m", "pebuilder", "build", str(cfg)], env=os.environ | env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not any(p.endswith("mirrorext.tcz") for p, _ in srv.requests) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not [p for p in cache.rglob("mirrorext.tcz") if ".dl-" not in str(p) and p.is_file()]
        pebuilder("build", cfg, env={"PEBUILDER_CACHE": str(cache)})
        got = [p for p in cache.rglob("mirrorext.tcz") if ".dl-" not in str(p) and p.is_file()]
        assert len(got) == 1 and got[0].read_bytes() == (mirror_root / REPO / "mirrorext.tcz").read_bytes()


@pytest.fixture(scope="module")
def mirrored_build(mirror_root, tmp_path_factory, template_iso):
    base = tmp_path_factory.mktemp("mirrored")
    cache = base / "cache"
    with MirrorServer(mirror_root) as srv:
        cfg = _remaster_cfg(base, template_iso, srv.url, "pbmirror")
        pebuilder("build", cfg, env={"PEBUILDER_CACHE": str(cache)})
        first = srv.tcz_requests()
        srv.requests.clear()
        (base / "work2").mkdir()
        cfg.write_text(cfg.read_text().replace('dir = "work"', 'dir = "work2"'))
        pebuilder("build", cfg, env={"PEBUILDER_CACHE": str(cache)})
        second = srv.tcz_requests()
        url = srv.url
    return base, first, second, url


@needs_fixtures
def test_second_build_fetches_no_tcz(mirrored_build):
    _, first, second, _ = mirrored_build
    assert sorted(Path(p).name for p in first) == sorted(
        ["mirrorext.tcz", "kmaps.tcz", "top.tcz", "left.tcz", "right.tcz", "base.tcz", "dialog.tcz", "ncursesw.tcz"])
    assert second == []


@needs_fixtures
def test_mirrored_build_contents(mirrored_build, tmp_path):
    base, _, _, url = mirrored_build
    out = base / "out.iso"
    files = set(iso.list_files(out))
    # onboot closure beside the initrd, with .dep files so Tiny Core resolves them at boot
    for n in ("top", "left", "right", "base", "dialog", "ncursesw"):
        assert f"/cde/optional/{n}.tcz" in files and f"/cde/optional/{n}.tcz.md5.txt" in files
    assert "/cde/optional/top.tcz.dep" in files
    # what is in the initrd is not copied again
    assert "/cde/optional/kmaps.tcz" not in files and "/cde/optional/mirrorext.tcz" not in files
    got = iso.extract_files(out, ["boot/corepure64.gz", "cde/onboot.lst"], tmp_path)
    assert got["cde/onboot.lst"].read_text() == "top.tcz\ndialog.tcz\n"
    initrd = got["boot/corepure64.gz"]
    names = {e.name for e in cpio.list_entries(initrd)}
    assert {"usr/local/tce.installed/kmaps", "usr/local/tce.installed/mirrorext"} <= names
    assert cpio.read_member(initrd, "opt/tcemirror") == (url.rstrip("/") + "/\n").encode()


@needs_fixtures
@pytest.mark.boot
def test_mirrored_build_boots(mirrored_build):
    base, _, _, _ = mirrored_build
    proc = pebuilder("boot", base / "out.iso", "--expect", "Setting hostname to pbmirror",
                     "--expect", "PEBUILDER-MIRROR-EXT-OK", "--timeout", "170", check=False)
    assert proc.returncode == 0, proc.stderr


@needs_fixtures
def test_offline_build_uses_cache_and_names_what_is_missing(mirrored_build, tmp_path, template_iso):
    base, _, _, url = mirrored_build
    cfg = _remaster_cfg(tmp_path, template_iso, url, "pboffline")
    ok = pebuilder("build", cfg, "--offline", env={"PEBUILDER_CACHE": str(base / "cache")}, check=False)
    assert ok.returncode == 0, ok.stderr
    cfg.write_text(cfg.read_text().replace('initrd = ["mirrorext"]', 'initrd = ["squashfs-tools"]'))
    bad = pebuilder("build", cfg, "--offline", env={"PEBUILDER_CACHE": str(base / "cache")}, check=False)
    assert bad.returncode == Exit.DOWNLOAD
    assert "offline: squashfs-tools.tcz.md5.txt is not in the cache" in bad.stderr


@needs_fixtures
def test_missing_dependency_from_mirror_is_an_error_with_chain(mirror_root, tmp_path, template_iso):
    with MirrorServer(mirror_root) as srv:
        cfg = _remaster_cfg(tmp_path, template_iso, srv.url, "pbmissing")
        cfg.write_text(cfg.read_text().replace('initrd = ["mirrorext"]', 'initrd = ["iproute2"]'))
        proc = pebuilder("build", cfg, env={"PEBUILDER_CACHE": str(tmp_path / "c")}, check=False)
    assert proc.returncode == Exit.EXTENSION_MISSING
    assert "dependency libdb.tcz (needed by iproute2.tcz -> db.tcz) is not in" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_https_is_verified_against_the_system_store(tmp_path):
    """A mirror with a certificate no system CA signed is refused with a clear message."""
    import http.server
    import ssl
    import threading

    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    (tmp_path / "f.txt").write_text("x")
    handler = type("H", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(tmp_path)))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        from pebuilder.net.http import fetch_bytes

        with pytest.raises(DownloadError, match="TLS certificate not trusted"):
            fetch_bytes(f"https://127.0.0.1:{srv.server_address[1]}/f.txt", Policy(retries=0))
    finally:
        srv.shutdown()
