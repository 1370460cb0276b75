"""The registry client's writes (image assembly): blob uploads, manifests by tag and digest,
against an in-process v2 registry with Basic auth."""

from __future__ import annotations

import base64
import hashlib
import http.server
from collections.abc import Iterator
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from http_fixtures import loopback

from imagebot.errors import RegistryError
from imagebot.registry import Credentials, RegistryClient

AUTH = "Basic " + base64.b64encode(b"user:pass").decode()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class V2(http.server.BaseHTTPRequestHandler):
    blobs: ClassVar[dict[str, bytes]] = {}
    manifests: ClassVar[dict[str, bytes]] = {}
    upload_auth: ClassVar[list[str | None]] = []
    corrupt: ClassVar[set[str]] = set()

    def log_message(self, *args: object) -> None:
        return None

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == AUTH:
            return True
        self._reply(401, b"", {"WWW-Authenticate": 'Basic realm="r"'})
        return False

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_HEAD(self) -> None:
        if self._authorized():
            digest = self.path.rsplit("/", 1)[-1]
            self._reply(200 if digest in self.blobs else 404)

    def do_GET(self) -> None:
        if not self._authorized():
            return
        kind, reference = self.path.split("/")[-2:]
        store = self.blobs if kind == "blobs" else self.manifests
        if reference not in store:
            self._reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')
            return
        body = store[reference]
        self._reply(200, body + (b"x" if reference in self.corrupt else b""))

    def do_POST(self) -> None:
        if self._authorized():
            self._reply(202, b"", {"Location": "/upload/1?state=a"})

    def do_PUT(self) -> None:
        body = self._body()
        if self.path.startswith("/upload/"):
            type(self).upload_auth.append(self.headers.get("Authorization"))
            digest = parse_qs(urlsplit(self.path).query)["digest"][0]
            if sha(body) != digest:
                self._reply(400, b'{"errors":[{"code":"DIGEST_INVALID","message":"bad"}]}')
                return
            self.blobs[digest] = body
            self._reply(201)
            return
        if self._authorized():
            reference = self.path.rsplit("/", 1)[-1]
            self.manifests[reference] = body
            self.manifests[sha(body)] = body
            self._reply(201)


@pytest.fixture
def registry() -> Iterator[RegistryClient]:
    V2.blobs, V2.manifests, V2.upload_auth, V2.corrupt = {}, {}, [], set()
    with loopback(V2) as host:
        yield RegistryClient(host, True, Credentials("user", "pass", "test"), retry_seconds=0)


def test_a_blob_is_uploaded_once(registry: RegistryClient) -> None:
    data = b"layer bytes"
    assert registry.upload_blob("j/lab", sha(data), data) is True
    assert V2.blobs[sha(data)] == data
    assert registry.has_blob("j/lab", sha(data))
    assert registry.upload_blob("j/lab", sha(data), data) is False  # already there: nothing sent
    assert V2.upload_auth == [AUTH]  # the upload URL is on the registry's own origin


def test_a_blob_read_back_is_checked_against_its_digest(registry: RegistryClient) -> None:
    registry.upload_blob("j/lab", sha(b"cfg"), b"cfg")
    assert registry.get_blob("j/lab", sha(b"cfg")) == b"cfg"
    V2.corrupt.add(sha(b"cfg"))
    with pytest.raises(RegistryError, match="corrupt"):
        registry.get_blob("j/lab", sha(b"cfg"))


def test_a_wrong_digest_is_an_error_with_the_registry_s_reason(registry: RegistryClient) -> None:
    with pytest.raises(RegistryError, match="DIGEST_INVALID"):
        registry.upload_blob("j/lab", sha(b"other"), b"data")


def test_manifests_by_tag_and_by_digest(registry: RegistryClient) -> None:
    body = b'{"schemaVersion":2}'
    digest = registry.put_manifest("j/lab", "packages", body, "application/json")
    assert digest == sha(body)
    assert registry.get_manifest("j/lab", "packages") == (digest, body)
    assert registry.get_manifest("j/lab", digest) == (digest, body)
    assert registry.get_manifest("j/lab", "nosuch") is None
