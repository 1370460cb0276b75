"""`imagebot index serve`: a static HTTP server for a built index (OUT).

A bucket serves index.html only; this server additionally picks index.json for clients whose
Accept header asks for application/vnd.pypi.simple.v1+json (pip and uv do). It serves files
inside OUT only (a symbolic link out of OUT is 404), lists no directory (a directory without
index.html is 404) and answers a malformed path (`%00`) with 400, never with a traceback.
Standard library only.
"""

from __future__ import annotations

from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from imagebot.errors import PackageIndexError
from imagebot.index_pages import JSON_CONTENT_TYPE, SIMPLE_DIR


class IndexRequestHandler(SimpleHTTPRequestHandler):
    """Static files of one index directory (`directory=`), with PEP 691 negotiation."""

    negotiated_json = False
    quiet = False

    def send_head(self) -> Any:
        try:
            return self._send_head()
        except (OSError, ValueError):
            self.send_error(HTTPStatus.BAD_REQUEST, "malformed path")
            return None

    def _send_head(self) -> Any:
        route = self.path.split("?", 1)[0].split("#", 1)[0]
        local = Path(self.translate_path(route))
        if "\x00" in str(local):
            self.send_error(HTTPStatus.BAD_REQUEST, "malformed path")
            return None
        root = Path(self.directory).resolve()
        real = local.resolve()
        if real != root and root not in real.parents:
            self.send_error(HTTPStatus.NOT_FOUND, "not in the index")
            return None
        if real.is_dir() and route.endswith("/"):
            accept = self.headers.get("Accept", "")
            if JSON_CONTENT_TYPE in accept and (real / "index.json").is_file():
                self.path = route + "index.json"
                self.negotiated_json = True
            elif not (real / "index.html").is_file():
                self.send_error(HTTPStatus.NOT_FOUND, "no index page here")
                return None
        return super().send_head()

    def list_directory(self, path: Any) -> Any:
        self.send_error(HTTPStatus.NOT_FOUND, "no index page here")
        return None

    def guess_type(self, path: Any) -> str:
        if self.negotiated_json:
            return JSON_CONTENT_TYPE
        return super().guess_type(path)

    def end_headers(self) -> None:
        self.send_header("Vary", "Accept")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)


class QuietIndexRequestHandler(IndexRequestHandler):
    quiet = True


def make_server(
    out: Path, host: str = "127.0.0.1", port: int = 5556, quiet: bool = False
) -> ThreadingHTTPServer:
    """A threaded server for OUT; call `serve_forever()` on it."""
    if not (out / SIMPLE_DIR).is_dir():
        raise PackageIndexError(
            f"{out} has no {SIMPLE_DIR}/ directory, so it is not a built index",
            "build it first: imagebot index build OUT",
        )
    handler_class = QuietIndexRequestHandler if quiet else IndexRequestHandler
    handler = partial(handler_class, directory=str(out.resolve()))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except (OSError, OverflowError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise PackageIndexError(
            f"cannot listen on {host}:{port}: {reason}",
            "choose another --port, or stop what is using it",
        ) from None
