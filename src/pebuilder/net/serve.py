"""`pebuilder serve`: a read-only HTTP server for a folder or one image file.

Built for what the seed's `python -m SimpleHTTPServer` lacked: Range requests (resumable downloads
and parallel segments), HEAD, correct lengths and types, many clients at once, no path escapes
(`..`, encoded or not, and symlinks out of the folder), a client hanging up never stops it,
loopback unless told otherwise, one log line per request.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import posixpath
import re
import sys
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger("pebuilder.serve")
TYPES = {".iso": "application/x-iso9660-image", ".tcz": "application/octet-stream",
         ".gz": "application/gzip", ".raw": "application/octet-stream", ".qcow2": "application/octet-stream",
         ".txt": "text/plain; charset=utf-8", ".lst": "text/plain; charset=utf-8", ".dep": "text/plain; charset=utf-8"}


class Handler(BaseHTTPRequestHandler):
    server_version = "pebuilder-serve"
    root: Path
    single: Path | None = None
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle + delayed ACK add ~40 ms
    # to every small file.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        print(f"{self.client_address[0]} \"{self.requestline}\" {args[1] if len(args) > 1 else ''}",
              file=sys.stderr, flush=True)

    def _target(self) -> Path | None:
        raw = urllib.parse.urlsplit(self.path).path
        path = urllib.parse.unquote(raw)
        if "\0" in path or "\\" in path:
            return None
        norm = posixpath.normpath(path)
        parts = [p for p in norm.split("/") if p]
        if any(p == ".." for p in path.split("/")) or any(p == ".." for p in parts):
            return None
        if self.single is not None:
            return self.single if parts in ([], [self.single.name]) else None
        target = self.root.joinpath(*parts)
        real = Path(os.path.realpath(target))
        root = Path(os.path.realpath(self.root))
        if real != root and root not in real.parents:
            return None
        return target

    def _send_error(self, code: HTTPStatus) -> None:
        body = f"{code.value} {code.phrase}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _refuse(self) -> None:
        self._send_error(HTTPStatus.METHOD_NOT_ALLOWED)

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

    def _serve(self, body: bool) -> None:
        target = self._target()
        if target is None:
            self._send_error(HTTPStatus.FORBIDDEN)
            return
        if target.is_dir():
            index = target / "index.html"
            if index.is_file():
                target = index
            else:
                self._listing(target, body)
                return
        if not target.is_file():
            self._send_error(HTTPStatus.NOT_FOUND)
            return
        size = target.stat().st_size
        start, end = 0, size - 1
        status = HTTPStatus.OK
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                self._send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                return
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start = max(0, size - int(m.group(2)))
            if start >= size or start > end:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = HTTPStatus.PARTIAL_CONTENT
        length = end - start + 1 if size else 0
        self.send_response(status)
        ctype = TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Last-Modified", self.date_time_string(int(target.stat().st_mtime)))
        self.end_headers()
        if not body or not length:
            return
        with open(target, "rb") as f:
            f.seek(start)
            remaining = length
            try:
                while remaining:
                    chunk = f.read(min(1 << 20, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def _listing(self, folder: Path, body: bool) -> None:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
        html = "".join(f'<a href="{urllib.parse.quote(n)}">{n}</a>\n' for n in names)
        data = f"<!doctype html><pre>\n{html}</pre>\n".encode()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-transfer is normal for downloads; keep serving.
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def make_server(path: Path, bind: str = "127.0.0.1", port: int = 8080) -> Server:
    path = path.resolve()
    handler = type("BoundHandler", (Handler,), {"root": path.parent if path.is_file() else path,
                                                 "single": path if path.is_file() else None})
    return Server((bind, port), handler)


def serve(path: Path, bind: str, port: int) -> None:
    server = make_server(path, bind, port)
    host, real_port = server.server_address[:2]
    print(f"serving {path} on http://{host}:{real_port}/ (read-only; Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()



