"""`pebuilder serve`: ranges, HEAD, traversal attempts, clients that hang up."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import http.client
import os
import re
import select
import socket
import subprocess
import sys
import threading
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


# --- hostile clients (untrusted-input issue, part 6) ---

@contextlib.contextmanager
def _in_process(path, timeout: float | None, **limits):
    """A server in this process, to pass make_server's idle timeout and limits; yields its port."""
    from pebuilder.net.serve import make_server

    srv = make_server(path, "127.0.0.1", 0, timeout=timeout, **limits)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def _no_traceback(log) -> None:
    time.sleep(0.2)
    text = log.read_text()
    assert "Traceback" not in text and "internal error" not in text, text
    assert max(map(len, text.splitlines())) < 500  # a client cannot write 10 KiB lines into the log


def test_listing_escapes_names(served):
    root, port, log = served
    evil = "<img src=x onerror=alert(1)>.txt"
    (root / evil).write_text("evil\n")
    (root / 'q"&.txt').write_text("quote\n")
    r, body = _get(port, "/")
    assert r.status == 200 and r.getheader("Content-Type") == "text/html; charset=utf-8"
    assert r.getheader("Content-Security-Policy") == "default-src 'none'"
    assert b"<img" not in body and b'q"&' not in body
    assert b"&lt;img src=x onerror=alert(1)&gt;.txt</a>" in body and b"q&quot;&amp;.txt</a>" in body
    assert b"<title>Index of /</title>" in body
    href = b'href="%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt"'
    assert href in body
    r, got = _get(port, "/" + href[6:-1].decode())  # the link leads to the file
    assert r.status == 200 and got == b"evil\n"
    assert re.search(rb'href="image\.iso">image\.iso</a> +3145731\n', body)  # sizes listed
    assert b'href="sub/">sub/</a>' in body and b'href="../"' not in body  # no parent above the root
    _no_traceback(log)


def test_listing_of_non_utf8_names(served):
    root, port, log = served
    with open(os.path.join(os.fsencode(root), b"caf\xe9.txt"), "wb") as f:
        f.write(b"latin-1 name\n")
    r, body = _get(port, "/")
    assert r.status == 200 and b'href="caf%E9.txt">caf\xef\xbf\xbd.txt</a>' in body
    r, got = _get(port, "/caf%E9.txt")
    assert r.status == 200 and got == b"latin-1 name\n"
    _no_traceback(log)


def test_long_paths_get_a_status_not_a_traceback(served):
    root, port, log = served
    cases = [("/" + "a" * 300, 404),  # one name past NAME_MAX: ENAMETOOLONG
             ("/" + "/".join(["b" * 200] * 30), 404),  # under 8 KiB but past PATH_MAX
             ("/" + "c" * 300 + "/x", 404),
             ("/" + "d" * 10240, 414),  # past our 8 KiB request line limit
             ("/" + "e" * 100_000, 414)]  # past the standard library's 64 KiB
    for path, status in cases:
        r, _ = _get(port, path)
        assert r.status == status, path[:20]
        r, body = _get(port, "/sub/a.txt")
        assert r.status == 200 and body == b"hello\n"
    # a 404 for a long name keeps the connection usable
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/" + "f" * 300)
    r = c.getresponse()
    assert r.status == 404 and r.read() == b"404 Not Found\n"
    c.request("GET", "/sub/a.txt")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"hello\n"
    c.close()
    _no_traceback(log)


def test_log_line_is_sanitised(served):
    _, port, log = served
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b'GET /\x1b[31mred"\x07 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    assert s.recv(100).startswith(b"HTTP/1.1 404")
    s.close()
    time.sleep(0.2)
    text = log.read_text()
    assert "\x1b" not in text and "\x07" not in text
    assert '"GET /\\x1b[31mred\\x22\\x07 HTTP/1.1" 404' in text


def test_idle_connections_are_dropped(tmp_path):
    (tmp_path / "a.txt").write_text("hello\n")
    with _in_process(tmp_path, timeout=1.0) as port:
        requests = [b"",  # connects and says nothing
                    b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",  # keep-alive, then silence
                    b"GET /a.txt HTTP/1.1\r\nHost: x\r\n"]  # headers never finished
        for request in requests:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(request)
            t0 = time.monotonic()
            received = b""
            while chunk := s.recv(65536):
                received += chunk
            elapsed = time.monotonic() - t0
            s.close()
            assert 0.8 < elapsed < 3, (request, elapsed)
            if request.endswith(b"\r\n\r\n"):
                assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"\r\n\r\nhello\n")
            else:
                assert received == b""


def test_a_trickled_request_head_is_cut_at_the_deadline(tmp_path):
    """A byte every half second never trips the 1 s idle timeout; the 2 s head deadline cuts it."""
    (tmp_path / "a.txt").write_text("hello\n")
    with _in_process(tmp_path, timeout=1.0, head_deadline=2.0) as port:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        t0 = time.monotonic()
        cut = None
        for byte in b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
            try:
                s.send(bytes([byte]))
            except OSError:
                cut = time.monotonic() - t0
                break
            if select.select([s], [], [], 0.5)[0]:
                assert s.recv(65536) == b""  # no response, only the end of the connection
                cut = time.monotonic() - t0
                break
        s.close()
        assert cut is not None and 1.5 < cut < 5, cut
        # The server is still there for a well-behaved client.
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/a.txt")
        assert c.getresponse().read() == b"hello\n"
        c.close()
    # The watchdog ends with its server.
    deadline = time.monotonic() + 5
    while any(t.name == "pebuilder-serve-heads" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "pebuilder-serve-heads" for t in threading.enumerate())


def test_connections_past_the_cap_get_503_and_the_server_recovers(tmp_path):
    (tmp_path / "a.txt").write_text("hello\n")
    with _in_process(tmp_path, timeout=5.0, max_connections=2) as port:
        holders = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", port), timeout=10)
        answer = b""
        while chunk := extra.recv(65536):
            answer += chunk
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 5\r\n" in answer, answer
        assert answer.endswith(b"too many connections, retry shortly\n")
        for h in holders:
            h.close()
        deadline = time.monotonic() + 10  # the handlers see the hang-ups and free their places
        while True:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/a.txt")
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status == 200 and body == b"hello\n"


def test_serve_refuses_a_zero_connection_cap(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pebuilder", "serve", str(tmp_path), "--max-connections", "0"],
                         env=os.environ | {"PYTHONPATH": str(ROOT / "src")}, capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 1 and "--max-connections 0" in res.stderr and "Traceback" not in res.stderr


def test_slow_but_steady_download_is_not_cut(tmp_path):
    data = os.urandom(4 << 20)  # more than the kernel queues at once (see NOTSENT_LOWAT)
    (tmp_path / "big.bin").write_bytes(data)
    rate = 1.5e6  # bytes a second: over 2 s in all, with the idle timeout at 0.5 s
    with _in_process(tmp_path, timeout=0.5) as port:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        t0 = time.monotonic()
        received = b""
        while chunk := s.recv(16384):
            received += chunk
            ahead = len(received) / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        s.close()
    assert time.monotonic() - t0 > 2
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and len(body) == len(data) and body == data


@pytest.fixture
def ten(served):
    root, port, log = served
    (root / "ten.bin").write_bytes(b"0123456789")
    (root / "empty.bin").write_bytes(b"")
    return port, log


def test_multi_range_gets_the_whole_file(ten):
    port, log = ten
    for value in ["bytes=0-1,5-9", "bytes=0-1, 5-", "bytes=0-1,50-60", "bytes=-2,0-0", "bytes=0-9,0-9,0-9"]:
        r, body = _get(port, "/ten.bin", headers={"Range": value})
        assert (r.status, body, r.getheader("Content-Range")) == (200, b"0123456789", None), value
        assert r.getheader("Content-Length") == "10"
    _no_traceback(log)


def test_malformed_range_is_ignored(ten):
    port, log = ten
    for value in ["bytes=abc", "bytes=-", "bytes=1-2-3", "chars=0-1", "bytes 0-1", "bytes=", "bytes=,", "bytes=0x1-2",
                  "bytes=1-2;x", "bytes=0-1,x", "bytes=+1-2", "=0-1", "bytes=\xb2-"]:
        r, body = _get(port, "/ten.bin", headers={"Range": value})
        assert (r.status, body, r.getheader("Content-Range")) == (200, b"0123456789", None), value
    _no_traceback(log)


def test_unsatisfiable_range_gets_416(ten):
    port, log = ten
    for value in ["bytes=10-", "bytes=100-200", "bytes=-0", "bytes=5-3", "bytes=10-,20-30",
                  "bytes=" + "9" * 5000 + "-"]:
        r, body = _get(port, "/ten.bin", headers={"Range": value})
        assert (r.status, r.getheader("Content-Range"), body) == (416, "bytes */10", b""), value[:20]
    r, body = _get(port, "/empty.bin", headers={"Range": "bytes=0-"})
    assert (r.status, r.getheader("Content-Range"), body) == (416, "bytes */0", b"")
    r, body = _get(port, "/empty.bin")
    assert (r.status, r.getheader("Content-Length"), body) == (200, "0", b"")
    _no_traceback(log)


def test_single_range(ten):
    port, log = ten
    for value, content_range, expected in [
            ("bytes=2-4", "bytes 2-4/10", b"234"), ("bytes=2-4,", "bytes 2-4/10", b"234"),
            ("Bytes=8-", "bytes 8-9/10", b"89"), ("bytes=7-100", "bytes 7-9/10", b"789"),
            ("bytes= 3-3 ", "bytes 3-3/10", b"3"), ("bytes=000003-0004", "bytes 3-4/10", b"34"),
            ("bytes=0-" + "9" * 5000, "bytes 0-9/10", b"0123456789"),
            ("bytes=-" + "9" * 5000, "bytes 0-9/10", b"0123456789")]:
        r, body = _get(port, "/ten.bin", headers={"Range": value})
        assert (r.status, r.getheader("Content-Range"), body) == (206, content_range, expected), value[:20]
    _no_traceback(log)


def test_if_range_and_repeated_range(ten):
    port, _ = ten
    head, _ = _get(port, "/ten.bin", "HEAD")
    stamp = head.getheader("Last-Modified")
    r, body = _get(port, "/ten.bin", headers={"Range": "bytes=2-3", "If-Range": stamp})
    assert r.status == 206 and body == b"23"
    # the file changed since the client's copy: it needs all of it, not a piece to glue on a stale start
    r, body = _get(port, "/ten.bin", headers={"Range": "bytes=2-3", "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert r.status == 200 and body == b"0123456789"
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.putrequest("GET", "/ten.bin")
    c.putheader("Range", "bytes=0-1")
    c.putheader("Range", "bytes=2-3")
    c.endheaders()
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"0123456789"
    c.close()


def test_folder_without_slash_redirects(served):
    root, port, log = served
    (root / "sub/deeper").mkdir()
    for path, location in [("/sub", "/sub/"), ("/sub?x=1&y=%20", "/sub/?x=1&y=%20"),
                           ("/sub/deeper", "/sub/deeper/"), ("/sub/./deeper", "/sub/deeper/"),
                           ("/%2F%2Fsub", "/sub/"), ("/sub%2Fdeeper", "/sub/deeper/"),
                           ("http://evil.example/sub", "/sub/")]:
        r, body = _get(port, path)
        assert (r.status, r.getheader("Location"), body) == (301, location, b""), path
    r, body = _get(port, "/sub", "HEAD")
    assert r.status == 301 and r.getheader("Location") == "/sub/" and body == b""
    r, body = _get(port, "/sub/")
    assert r.status == 200 and b'<a href="a.txt">a.txt</a>' in body and b'<a href="../">../</a>' in body
    assert b'<a href="deeper/">deeper/</a>' in body and b"<title>Index of /sub/</title>" in body
    r, body = _get(port, "/sub/a.txt")  # files are not redirected
    assert r.status == 200 and body == b"hello\n"
    _no_traceback(log)


def test_refused_request_body_is_not_read_as_a_request(served):
    _, port, _ = served
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    smuggled = b"GET /sub/a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    s.sendall(b"POST /sub/a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
    received = b""
    while chunk := s.recv(65536):
        received += chunk
    s.close()
    assert received.startswith(b"HTTP/1.1 405") and b"\r\nConnection: close\r\n" in received
    assert received.count(b"HTTP/1.1") == 1 and b"hello" not in received
