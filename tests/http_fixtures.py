"""Loopback HTTP handlers shared by the unit tests that check where credentials go."""

from __future__ import annotations

import http.server
from typing import ClassVar


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
