"""A caching HTTP proxy to the host's Debian mirror, on loopback, for guests that reach only loopback.

/debian/... is served from the host's configured mirror and /debian-security/... from its security
archive (as apt-cacher-ng lays them out), each file fetched once per test session into a cache
folder; the guest reaches it through QEMU's guestfwd. Counts what it served, so a test can tell a
resumed install from one that started from nothing.
"""

from __future__ import annotations

import http.server
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

from pebuilder.debian import lock


def upstreams(suite: str = "bookworm") -> dict[str, str]:
    srcs = lock.sources_for(suite, None)
    main = next(s.uri for s in srcs if not s.suite.endswith("-security"))
    security = next((s.uri for s in srcs if s.suite.endswith("-security")), main + "-security")
    return {"debian": main.rstrip("/"), "debian-security": security.rstrip("/")}


class AptProxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cache: Path):
        self.cache = cache
        self.up = upstreams()
        self.served: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(1 for p in self.served if p.startswith(prefix))


class _Handler(http.server.BaseHTTPRequestHandler):
    server: AptProxy

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        top, _, rest = self.path.lstrip("/").partition("/")
        base = self.server.up.get(top)
        if base is None or ".." in rest.split("/") or not rest:
            self.send_error(404)
            return
        local = self.server.cache / top / rest
        if not local.is_file():
            try:
                with urllib.request.urlopen(f"{base}/{rest}", timeout=60) as r:
                    data = r.read()
            except urllib.error.HTTPError as exc:
                self.send_error(exc.code)
                return
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".{local.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, local)
        with self.server.lock:
            self.server.served.append(self.path)
        size = local.stat().st_size
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with open(local, "rb") as f:
            while chunk := f.read(1 << 20):
                self.wfile.write(chunk)

    def log_message(self, *args: object) -> None:
        pass
