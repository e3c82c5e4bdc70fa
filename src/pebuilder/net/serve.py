"""`pebuilder serve`: a read-only HTTP server for a folder or one image file.

Built for what the seed's `python -m SimpleHTTPServer` lacked: Range requests (resumable downloads
and parallel segments), HEAD, correct lengths and types, many clients at once, no path escapes
(`..`, encoded or not, and symlinks out of the folder), a client hanging up never stops it,
loopback unless told otherwise, one log line per request.

Anything a client sends is untrusted: whatever it provokes ends as a status code and one
(sanitised) log line, never a traceback; idle connections are dropped after a timeout; the
folder listing escapes every name.
"""

from __future__ import annotations

import contextlib
import errno
import html
import logging
import mimetypes
import os
import re
import socket
import stat
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("pebuilder.serve")
TYPES = {".iso": "application/x-iso9660-image", ".tcz": "application/octet-stream",
         ".gz": "application/gzip", ".raw": "application/octet-stream", ".qcow2": "application/octet-stream",
         ".txt": "text/plain; charset=utf-8", ".lst": "text/plain; charset=utf-8", ".dep": "text/plain; charset=utf-8"}

# nginx and Apache refuse request lines past 8 KiB; the standard library only past 64 KiB.
MAX_REQUEST_LINE = 8192
# Seconds a connection may stay silent (no byte received, or none of ours accepted) before it is dropped:
# each idle keep-alive client holds a thread.
IDLE_TIMEOUT = 30.0
# How much of a request line the log keeps: a client must not be able to write 64 KiB lines into it.
LOG_REQUEST_MAX = 300
# Unsent bytes the kernel may hold for a connection (TCP_NOTSENT_LOWAT). Without a bound it queues up to the
# send buffer (4 MiB here) and reports the socket writable only once a third of that has drained: a client
# reading steadily at 50 KB/s would look idle for 30 s and be cut. Bytes in flight are not limited by this.
NOTSENT_LOWAT = 128 * 1024
# A request line and its headers must be complete this many seconds after the connection (or the previous
# response) is ready for them: a client trickling a byte every 29 s would otherwise hold a thread forever.
HEAD_DEADLINE = 60.0
# Connections served at once; one more gets a 503 with Retry-After and is closed (each holds a thread).
MAX_CONNECTIONS = 128
# Lingering close: how long and how much we read and drop from a client after our last byte.
LINGER_SECONDS = 1.0
LINGER_BYTES = 256 * 1024
# Bigger than any file: a Range number with more digits than this is "infinity", never parsed by int()
# (which refuses more than 4300 digits, and a header may hold 64 KiB of them).
_MAX_DIGITS = 20

_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_FORBIDDEN_ERRNOS = {errno.EACCES, errno.EPERM}
_MISSING_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL}


def _printable(text: str, limit: int = LOG_REQUEST_MAX) -> str:
    """A client's text made safe for our log: no terminal escapes or fake log lines, no quote to break the
    format, bounded length."""
    out = "".join(c if " " <= c <= "~" and c not in '"\\' else f"\\x{ord(c):02x}" for c in text[:limit])
    return out + (f"...[{len(text)} chars]" if len(text) > limit else "")


def _display(name: str) -> str:
    """A file name as text: names that are not UTF-8 (kept as surrogates by os.fsdecode) show U+FFFD
    instead of failing to encode."""
    return os.fsencode(name).decode("utf-8", "replace")


def _href(name: str) -> str:
    """A file name as a URL path segment: from its bytes, so non-UTF-8 names round-trip to the same file."""
    return urllib.parse.quote(os.fsencode(name), safe="")


def _number(digits: str) -> int:
    """A Range number, capped instead of parsed when absurdly long (see _MAX_DIGITS)."""
    digits = digits.lstrip("0") or "0"
    return 10 ** _MAX_DIGITS if len(digits) > _MAX_DIGITS else int(digits)


def parse_range(value: str, size: int) -> tuple[int, list[tuple[int, int]]] | None:
    """A Range header for a file of `size` bytes: how many ranges it asks for, and the satisfiable ones as
    inclusive (start, end).

    None means malformed: RFC 9110 says to ignore the header then (a 200 with everything). No satisfiable
    range means 416. Ranges with last < first are invalid and count as unsatisfiable; a suffix range of
    0 bytes is unsatisfiable; an empty file satisfies nothing.
    """
    unit, sep, spec = value.strip().partition("=")
    if not sep or unit.lower() != "bytes":
        return None
    asked = 0
    ranges: list[tuple[int, int]] = []
    for item in spec.split(","):
        item = item.strip(" \t")
        if not item:
            continue  # empty list elements are allowed (RFC 9110 5.6.1)
        m = _RANGE_SPEC.fullmatch(item)
        if not m or not (m[1] or m[2]):
            return None
        asked += 1
        if m[1]:
            start = _number(m[1])
            end = _number(m[2]) if m[2] else size - 1
            if start < size and start <= end:
                ranges.append((start, min(end, size - 1)))
        else:
            suffix = _number(m[2])
            if suffix and size:
                ranges.append((max(0, size - suffix), size - 1))
    return (asked, ranges) if asked else None


class Handler(BaseHTTPRequestHandler):
    server_version = "pebuilder-serve"
    root: Path
    single: Path | None = None
    # Per socket operation (StreamRequestHandler.setup): an idle keep-alive client, or one that stops
    # reading, is dropped after this many seconds; a slow download that keeps moving is not.
    timeout: float | None = IDLE_TIMEOUT  # type: ignore[misc]  # a class setting, as StreamRequestHandler has it
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle + delayed ACK add ~40 ms
    # to every small file.
    disable_nagle_algorithm = True
    # Per request: send "Connection: close" with the response and hang up after it.
    _close = False
    # Per request: whether the status line went out (a 500 is only possible before).
    _started = False

    def setup(self) -> None:
        """The standard setup (which applies `timeout` to the socket), plus NOTSENT_LOWAT so that the
        timeout measures a stalled client, not a slow one."""
        super().setup()
        if self.timeout is not None and hasattr(socket, "TCP_NOTSENT_LOWAT"):
            # Without it (not Linux, an old kernel) a very slow client may be cut after `timeout`.
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, NOTSENT_LOWAT)

    # --- logging: one line per response, nothing else from a client's input ---

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The one log line of a request, its request line sanitised (it is the client's text)."""
        line = self.requestline or str(getattr(self, "raw_requestline", b""), "iso-8859-1").rstrip("\r\n")
        self._log(f'"{_printable(line)}" {int(code) if isinstance(code, HTTPStatus) else code}')

    def log_error(self, format: str, *args: object) -> None:  # noqa: A002
        """Silent: every error response is already logged by log_request; the standard library would add
        a second line (and, for an idle timeout, one carrying the previous request's line)."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Anything else the standard library wants to say, sanitised like the access line."""
        self._log(_printable(format % args))

    def _log(self, text: str) -> None:
        # One write per line: print() writes the text and the newline separately, and threads interleave.
        sys.stderr.write(f"{self.client_address[0]} {text}\n")
        sys.stderr.flush()

    # --- request framing ---

    def handle_one_request(self) -> None:
        """One request, its head due within HEAD_DEADLINE (the idle timeout alone restarts at every byte)."""
        watch = getattr(self.server, "watch_head", None)
        if watch:
            watch(self.connection)
        super().handle_one_request()

    def parse_request(self) -> bool:
        """The standard parsing, plus 414 for request lines past MAX_REQUEST_LINE.

        Checked after the headers are read so none are left unread when we hang up.
        """
        self._close = False
        self._started = False
        parsed = super().parse_request()  # reads the headers
        done = getattr(self.server, "head_done", None)
        if done:
            done(self.connection)
        if not parsed:
            return False
        if len(getattr(self, "raw_requestline", b"")) > MAX_REQUEST_LINE:
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        if self.headers.get("Transfer-Encoding") or self.headers.get("Content-Length", "0").strip() not in ("", "0"):
            # We never read request bodies; what is left would be parsed as the next request.
            self._close = True
        return True

    def send_response(self, code: int, message: str | None = None) -> None:
        self._started = True
        super().send_response(code, message)

    def end_headers(self) -> None:
        if self._close:
            self.send_header("Connection", "close")  # also sets close_connection
            self._close = False
        super().end_headers()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's errors (400, 414, 431, 501, 505) in our plain-text shape; the connection
        is closed after them, as the standard library does, since the stream may be out of step."""
        self._send_error(HTTPStatus(code), close=True)

    def _send_error(self, code: HTTPStatus, close: bool = False) -> None:
        body = f"{code.value} {code.phrase}\n".encode()
        self._close = self._close or close
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # --- methods ---

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._respond(body=True)

    def _refuse(self) -> None:
        self._send_error(HTTPStatus.METHOD_NOT_ALLOWED)  # closes if a body follows

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

    def _respond(self, body: bool) -> None:
        """Serve one GET or HEAD. Client hang-ups and stalls just end the connection; anything else is a
        bug of ours: one log line (the traceback with --verbose), and a 500 if the status is not out yet."""
        try:
            self._serve(body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:
            log.debug("internal error serving %r", self.path, exc_info=True)
            self._log(f"internal error: {type(exc).__name__}: {_printable(str(exc))}")
            if self._started:
                self.close_connection = True
                return
            try:
                self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, close=True)
            except OSError:
                self.close_connection = True

    def _target(self) -> tuple[Path, list[str], bool, str] | None:
        """Map the request target to (file, its path segments, whether it ended in "/", raw query).

        None when refused: NUL, backslash, any ".." segment (decoded or not), a symlink out of the folder,
        anything but the file in single-file mode. Percent-decoding works on bytes, so a segment is
        exactly the file name's bytes (non-UTF-8 names are reachable from the listing).
        """
        raw, _, query = self.path.partition("?")
        raw = raw.partition("#")[0]
        m = _ABSOLUTE_FORM.match(raw)  # "GET http://host/x" (RFC 9112 absolute-form)
        if m:
            raw = raw[m.end():] or "/"
        # The request line was decoded as Latin-1, so this gives back the client's bytes.
        path = urllib.parse.unquote_to_bytes(raw.encode("iso-8859-1"))
        if b"\0" in path or b"\\" in path:
            return None
        segments = path.split(b"/")
        if b".." in segments:
            return None
        parts = [os.fsdecode(s) for s in segments if s not in (b"", b".")]
        slash = path.endswith(b"/")
        if self.single is not None:
            return (self.single, parts, slash, query) if parts in ([], [self.single.name]) else None
        target = self.root.joinpath(*parts)
        real = Path(os.path.realpath(target))
        root = Path(os.path.realpath(self.root))
        if real != root and root not in real.parents:
            return None
        return target, parts, slash, query

    def _serve(self, body: bool) -> None:
        found = self._target()
        if found is None:
            self._send_error(HTTPStatus.FORBIDDEN)
            return
        target, parts, slash, query = found
        try:
            opened = self._open(target, parts, slash)
        except OSError as exc:
            # ENAMETOOLONG for a 300-character name, ENOENT, EACCES...: a status, not a traceback.
            if exc.errno in _FORBIDDEN_ERRNOS:
                self._send_error(HTTPStatus.FORBIDDEN)
            elif exc.errno in _MISSING_ERRNOS:
                self._send_error(HTTPStatus.NOT_FOUND)
            else:
                raise
            return
        if opened is None:
            self._redirect_to_folder(parts, query)
        elif isinstance(opened, bytes):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", opened, body,
                       {"Content-Security-Policy": "default-src 'none'"})
        else:
            with opened[1] as f:
                self._send_file(f, opened[0], body)

    def _open(self, target: Path, parts: list[str], slash: bool) -> tuple[Path, BinaryIO] | bytes | None:
        """All the file-system work of a request, before any byte goes out, so its OSErrors become a status:
        the opened file, a folder listing, or None for a folder asked without its trailing slash."""
        if stat.S_ISDIR(target.stat().st_mode):
            if parts and not slash:
                return None
            index = target / "index.html"
            if not index.is_file():
                return self._listing(target, parts)
            target = index
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block us
        return target, os.fdopen(fd, "rb")

    def _redirect_to_folder(self, parts: list[str], query: str) -> None:
        """`/sub` → `/sub/`, so the listing's relative links resolve inside it. The location is rebuilt from
        the checked segments (never the raw target: `//host/x` would be an open redirect)."""
        location = "/" + "".join(_href(p) + "/" for p in parts)
        if query:
            location += "?" + urllib.parse.quote(query.encode("iso-8859-1"), safe="!$%&'()*+,/:;=?@~")
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_file(self, f: BinaryIO, target: Path, body: bool) -> None:
        st = os.fstat(f.fileno())  # of what we opened: no race with a stat() before the open
        if not stat.S_ISREG(st.st_mode):
            self._send_error(HTTPStatus.NOT_FOUND)
            return
        size = st.st_size
        last_modified = self.date_time_string(int(st.st_mtime))
        start, length, status = 0, size, HTTPStatus.OK
        asked, satisfiable = self._ranges(size, last_modified) or (0, [])
        if asked and not satisfiable:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if asked == 1:
            # A request for several ranges gets the whole file (200): RFC 9110 lets a server ignore Range,
            # and it spares us multipart/byteranges and the overlapping-ranges amplification it invites.
            (start, end), = satisfiable
            length, status = end - start + 1, HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        ctype = TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
        self.send_header("Last-Modified", last_modified)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not body or not length:
            return
        # sendfile() waits for the socket at most `timeout` per step (see NOTSENT_LOWAT), so only a stall
        # cuts a download; sendall() would apply the timeout to the whole write (Python >= 3.5).
        sent = self.connection.sendfile(f, start, length)
        if sent < length:  # the file shrank under us: the length we announced is a lie, end the stream
            self.close_connection = True

    def _ranges(self, size: int, last_modified: str) -> tuple[int, list[tuple[int, int]]] | None:
        """The Range header parsed (see parse_range), or None to ignore it: absent, repeated, malformed, or
        with an If-Range that is not our Last-Modified (the file changed: a resumed download needs it all)."""
        values = self.headers.get_all("Range") or []
        if len(values) != 1:
            return None
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range.strip() != last_modified:
            return None
        return parse_range(values[0], size)

    def _listing(self, folder: Path, parts: list[str]) -> bytes:
        """A plain listing with sizes; every name escaped for HTML and quoted (from its bytes) for links."""
        entries = []
        with os.scandir(folder) as it:
            for e in it:
                try:
                    is_dir = e.is_dir()
                    size = "-" if is_dir else str(e.stat().st_size)
                except OSError:  # a dangling symlink, or vanished meanwhile
                    is_dir, size = False, "-"
                entries.append((os.fsencode(e.name), e.name, is_dir, size))
        entries.sort()
        where = html.escape("/" + "".join(_display(p) + "/" for p in parts))
        rows = ['<a href="../">../</a>'] if parts else []
        for _, name, is_dir, size in entries:
            text = _display(name) + ("/" if is_dir else "")
            href = _href(name) + ("/" if is_dir else "")
            rows.append(f'<a href="{html.escape(href)}">{html.escape(text)}</a>{" " * max(1, 50 - len(text))}{size}')
        page = (f'<!doctype html>\n<html><head><meta charset="utf-8"><title>Index of {where}</title></head>\n'
                f"<body><h1>Index of {where}</h1>\n<pre>\n" + "\n".join(rows) + "\n</pre></body></html>\n")
        return page.encode("utf-8")

    def _send(self, status: HTTPStatus, ctype: str, data: bytes, body: bool,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    max_connections = MAX_CONNECTIONS
    head_deadline = HEAD_DEADLINE

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._active = 0
        self._heads: dict[socket.socket, float] = {}
        self._watchdog: threading.Thread | None = None
        self._closed = threading.Event()

    # --- bounds on what clients can hold: threads (a cap) and time to send a request head (a deadline) ---

    def process_request(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        with self._lock:
            full = self._active >= self.max_connections
            if not full:
                self._active += 1
        if full:
            self._refuse_busy(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            with self._lock:
                self._active -= 1
            raise

    def process_request_thread(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._active -= 1
                self._heads.pop(request, None)

    def _refuse_busy(self, request: socket.socket, client_address: tuple) -> None:
        """503 without a thread: one non-blocking send (it fits any socket buffer), then close."""
        body = b"503 Service Unavailable: too many connections, retry shortly\n"
        head = (f"HTTP/1.1 503 Service Unavailable\r\nServer: {Handler.server_version}\r\nRetry-After: 5\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        with contextlib.suppress(OSError):
            request.setblocking(False)
            request.send(head + body)
            request.shutdown(socket.SHUT_WR)
            request.recv(LINGER_BYTES)  # what already arrived, so that close sends FIN rather than RST
        sys.stderr.write(f"{client_address[0]} refused: {self.max_connections} connections open 503\n")
        sys.stderr.flush()
        self.close_request(request)  # no lingering: this runs in the thread that accepts connections

    def watch_head(self, conn: socket.socket) -> None:
        with self._lock:
            self._heads[conn] = time.monotonic() + self.head_deadline
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._cut_slow_heads, daemon=True,
                                                  name="pebuilder-serve-heads")
                self._watchdog.start()

    def head_done(self, conn: socket.socket) -> None:
        with self._lock:
            self._heads.pop(conn, None)

    def server_close(self) -> None:
        self._closed.set()
        super().server_close()

    def _cut_slow_heads(self) -> None:
        """Shut down connections whose request head is overdue; their handler then reads end-of-file."""
        while not self._closed.wait(min(1.0, self.head_deadline / 4)):
            now = time.monotonic()
            with self._lock:
                late = [c for c, due in self._heads.items() if due < now]
                for c in late:
                    del self._heads[c]
            for c in late:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: tuple) -> None:
        """Last resort, past the handler's own net: a client hanging up mid-transfer is normal for
        downloads; anything else gets one line (the traceback only with --verbose), and we keep serving."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        log.debug("error serving %s", client_address[0], exc_info=True)
        sys.stderr.write(f"{client_address[0]} internal error: {type(exc).__name__}: {_printable(str(exc))}\n")
        sys.stderr.flush()

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        """Lingering close, as Apache and nginx do: send our FIN, then read and drop what the client still
        sends, for a bounded time. Closing with unread bytes makes the kernel send RST, which can destroy
        our last response (a 405 to a POST with a body, a 414) before the client reads it."""
        if isinstance(request, socket.socket):
            try:
                request.shutdown(socket.SHUT_WR)
                request.settimeout(LINGER_SECONDS)
                deadline, drained = time.monotonic() + LINGER_SECONDS, 0
                while drained < LINGER_BYTES and time.monotonic() < deadline:
                    chunk = request.recv(65536)
                    if not chunk:
                        break
                    drained += len(chunk)
            except OSError:
                pass
        self.close_request(request)


def make_server(path: Path, bind: str = "127.0.0.1", port: int = 8080, timeout: float | None = IDLE_TIMEOUT,
                max_connections: int = MAX_CONNECTIONS, head_deadline: float = HEAD_DEADLINE) -> Server:
    """A server for a folder or one file; `timeout` is the idle limit per connection (None: never)."""
    path = path.resolve()
    handler = type("BoundHandler", (Handler,), {"root": path.parent if path.is_file() else path,
                                                 "single": path if path.is_file() else None,
                                                 "timeout": timeout})
    server = Server((bind, port), handler)
    server.max_connections = max_connections
    server.head_deadline = head_deadline
    return server


def serve(path: Path, bind: str, port: int, timeout: float | None = IDLE_TIMEOUT,
          max_connections: int = MAX_CONNECTIONS) -> None:
    server = make_server(path, bind, port, timeout, max_connections)
    host, real_port = str(server.server_address[0]), server.server_address[1]
    print(f"serving {path} on http://{host}:{real_port}/ (read-only; Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
