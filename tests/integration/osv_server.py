"""A small OSV-compatible API on loopback, serving a directory of OSV records (test only).

It answers what imagebot's OsvApi sends, the way https://api.osv.dev does:

- `POST /v1/querybatch` with `{"queries": [{"package": {"ecosystem", "name"}, "version",
  "page_token"?}]}` -> `{"results": [{"vulns": [{"id", "modified"}], "next_page_token"?}]}`,
  one result per query, in order; `{}` for a query that matches nothing;
- `GET /v1/vulns/{id}` -> the whole record as JSON, 404 for an unknown id.

A record matches a query when the version is in its `versions` list for that package: OSV's own
enumeration of the affected versions, so the server does not share imagebot's range logic.
`page_size` makes it paginate; `fail_next` makes the next requests answer with an error status
(a transient 503, say) before any work is done.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_PEP503 = re.compile(r"[-_.]+")


def _normalize(name: str) -> str:
    return _PEP503.sub("-", name).lower()


class OsvDatabase:
    """The records of a `vulns/<project>/<ID>.yaml` tree, read per project on first use."""

    def __init__(self, root: Path) -> None:
        base = root / "vulns" if (root / "vulns").is_dir() else root
        self.projects: dict[str, list[Path]] = {}
        for path in base.iterdir():
            if path.is_dir() and not path.name.startswith("."):
                self.projects.setdefault(_normalize(path.name), []).append(path)
        self.records: dict[str, dict[str, Any]] = {}
        self._by_project: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def project(self, name: str) -> list[dict[str, Any]]:
        from ruamel.yaml import YAML

        key = _normalize(name)
        with self._lock:
            if key not in self._by_project:
                loaded = []
                for directory in self.projects.get(key, []):
                    for path in sorted(directory.glob("*.yaml")):
                        raw = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
                        raw = json.loads(json.dumps(raw, default=_timestamp))
                        self.records[raw["id"]] = raw
                        loaded.append(raw)
                self._by_project[key] = loaded
            return self._by_project[key]

    def matching(self, ecosystem: str, name: str, version: str) -> list[dict[str, Any]]:
        matches = []
        for raw in self.project(name):
            if raw.get("withdrawn"):
                continue
            for affected in raw.get("affected") or []:
                package = affected.get("package") or {}
                same = (package.get("ecosystem"), _normalize(package.get("name", ""))) == (
                    ecosystem,
                    _normalize(name),
                )
                if same and version in [str(v) for v in affected.get("versions") or []]:
                    matches.append(raw)
                    break
        return sorted(matches, key=lambda raw: raw["id"])


def _timestamp(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z")


class OsvServer:
    def __init__(self, root: Path, page_size: int = 1000) -> None:
        self.database = OsvDatabase(root)
        self.page_size = page_size
        self.requests: list[tuple[str, str]] = []
        self.queries: list[dict[str, Any]] = []  # every querybatch query, in order
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, status: int, count: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def take_failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def querybatch(self, body: dict[str, Any]) -> dict[str, Any]:
        results = []
        with self._lock:
            self.queries.extend(body["queries"])
        for query in body["queries"]:
            package = query["package"]
            found = self.database.matching(package["ecosystem"], package["name"], query["version"])
            start = int(query.get("page_token") or 0)
            page = found[start : start + self.page_size]
            result: dict[str, Any] = {}
            if page:
                result["vulns"] = [{"id": r["id"], "modified": r.get("modified", "")} for r in page]
            if start + self.page_size < len(found):
                result["next_page_token"] = str(start + self.page_size)
            results.append(result)
        return {"results": results}

    def serve(self) -> None:
        self._http.serve_forever(poll_interval=0.05)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def _handler(server: OsvServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            server.record("POST", self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self._failed():
                return
            if self.path != "/v1/querybatch":
                self._send(404, {"code": 5, "message": "Not Found"})
                return
            self._send(200, server.querybatch(json.loads(body)))

        def do_GET(self) -> None:
            server.record("GET", self.path)
            if self._failed():
                return
            ident = self.path.removeprefix("/v1/vulns/")
            raw = server.database.records.get(ident)
            if not self.path.startswith("/v1/vulns/") or raw is None:
                self._send(404, {"code": 5, "message": "Bug not found."})
                return
            self._send(200, raw)

        def _failed(self) -> bool:
            status = server.take_failure()
            if status is None:
                return False
            self._send(status, {"code": 14, "message": "unavailable"})
            return True

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def osv_server(root: Path, page_size: int = 1000) -> Iterator[OsvServer]:
    """An OsvServer serving `root` on a free loopback port for the duration of the block."""
    server = OsvServer(root, page_size)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(timeout=5)
