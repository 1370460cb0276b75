"""Loopback HTTP servers for the unit tests: one way to serve a handler, and shared handlers."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
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
