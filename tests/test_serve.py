"""`pebuilder serve`: ranges, HEAD, traversal attempts, clients that hang up."""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    big = root / "image.iso"
    with open(big, "wb") as f:
        f.write(os.urandom(3 << 20) + b"end")
    (root / "sub/a.txt").write_text("hello\n")
    (tmp_path / "secret.txt").write_text("outside\n")
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    port = _free_port()
    log = tmp_path / "serve.log"
    log_file = open(log, "w")  # noqa: SIM115 - the server writes to it until the fixture ends
    proc = subprocess.Popen([sys.executable, "-m", "pebuilder", "serve", str(root), "--port", str(port)],
                            env=os.environ | {"PYTHONPATH": str(ROOT / "src")}, stderr=log_file)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield root, port, log
    proc.terminate()
    proc.wait(5)
    log_file.close()


def _get(port: int, path: str, method: str = "GET", headers: dict | None = None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.putrequest(method, path, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def test_parallel_ranges_reassemble(served):
    root, port, _ = served
    size = (root / "image.iso").stat().st_size
    step = size // 7 + 1
    ranges = [(i, min(i + step, size) - 1) for i in range(0, size, step)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(lambda r: _get(port, "/image.iso", headers={"Range": f"bytes={r[0]}-{r[1]}"}), ranges))
    for (r, body), (a, b) in zip(parts, ranges, strict=True):
        assert r.status == 206 and r.getheader("Content-Range") == f"bytes {a}-{b}/{size}"
        assert len(body) == b - a + 1
    whole = b"".join(body for _, body in parts)
    assert hashlib.sha256(whole).hexdigest() == hashlib.sha256((root / "image.iso").read_bytes()).hexdigest()
    head, body = _get(port, "/image.iso", "HEAD")
    assert head.status == 200 and body == b"" and head.getheader("Content-Length") == str(size)
    assert head.getheader("Accept-Ranges") == "bytes"
    assert head.getheader("Content-Type") == "application/x-iso9660-image"
    tail, body = _get(port, "/image.iso", headers={"Range": "bytes=-3"})
    assert tail.status == 206 and body == b"end"
    bad, _ = _get(port, "/image.iso", headers={"Range": f"bytes={size + 10}-"})
    assert bad.status == 416


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/sub/..%2f..%2fsecret.txt",
                                  "/sub/%2E%2E/%2E%2E/secret.txt", "/escape.txt", "/..%5csecret.txt",
                                  "//etc/passwd", "/%00"])
def test_traversal_is_refused(served, path):
    _, port, _ = served
    r, body = _get(port, path)
    assert r.status in (403, 404)
    assert b"outside" not in body and b"root:" not in body


def test_read_only_and_logged(served):
    _, port, log = served
    r, _ = _get(port, "/sub/a.txt", "PUT")
    assert r.status == 405
    r, body = _get(port, "/sub/a.txt")
    assert r.status == 200 and body == b"hello\n"
    time.sleep(0.2)
    assert '"GET /sub/a.txt HTTP/1.1" 200' in log.read_text()


def test_client_hanging_up_does_not_stop_server(served):
    _, port, _ = served
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /image.iso HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(1000)
        s.close()
    r, body = _get(port, "/sub/a.txt")
    assert r.status == 200 and body == b"hello\n"


def test_serve_single_file(tmp_path):
    img = tmp_path / "disk.raw"
    img.write_bytes(b"x" * 1000)
    from pebuilder.net.serve import make_server

    srv = make_server(img, "127.0.0.1", 0)
    import threading

    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        port = srv.server_address[1]
        assert _get(port, "/disk.raw")[1] == b"x" * 1000
        assert _get(port, "/")[1] == b"x" * 1000
        assert _get(port, "/other")[0].status == 403
    finally:
        srv.shutdown()
        srv.server_close()


def test_serve_missing_path_is_an_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pebuilder", "serve", str(tmp_path / "nope")],
                          env=os.environ | {"PYTHONPATH": str(ROOT / "src")}, capture_output=True, text=True)
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_pebuilder_downloads_from_its_own_server(served, tmp_path):
    root, port, _ = served
    from pebuilder.net.http import fetch_to

    out = tmp_path / "got.iso"
    assert fetch_to(f"http://127.0.0.1:{port}/image.iso", out) == (root / "image.iso").stat().st_size
    assert out.read_bytes() == (root / "image.iso").read_bytes()
