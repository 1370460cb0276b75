"""Loopback HTTP servers for the unit tests: one way to serve a handler, and shared handlers."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import ClassVar


@contextmanager
def loopback(
    handler: type[http.server.BaseHTTPRequestHandler], poll_interval: float = 0.5
) -> Iterator[str]:
    """Serve handler on 127.0.0.1 (a free port) in a thread; yields "127.0.0.1:PORT"."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(poll_interval,), daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve_files(
    served: Mapping[str, bytes],
    *,
    failures: dict[str, int] | None = None,
    on_request: Callable[[http.server.BaseHTTPRequestHandler], None] | None = None,
) -> Iterator[str]:
    """Serve `served` (path -> body, read at every request, so a test may change it) on
    loopback, 404 for any other path; a path in `failures` first answers 503 that many times;
    `on_request` sees every request. Yields "127.0.0.1:PORT"."""

    class Files(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if on_request is not None:
                on_request(self)
            if failures and failures.get(self.path, 0):
                failures[self.path] -= 1
                self.send_response(503)
                self.end_headers()
                return
            body = served.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:
            return None

    with loopback(Files) as host:
        yield host


class Elsewhere(http.server.BaseHTTPRequestHandler):
    """Another origin: records the Authorization header of every request, answers 401.
    Tests reset `seen` before they use it."""

    seen: ClassVar[list[str | None]] = []

    def log_message(self, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET
