"""The one HTTP client (imagebot.http) and the one retry policy (imagebot.retry), against two
loopback servers on different ports (two origins): status mapping, transient faults, and
credentials that never follow a redirect to another origin."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from imagebot import http as client
from imagebot.errors import PackageIndexError, RegistryAuthError, TransientError
from imagebot.retry import retry_transient


@dataclass
class Origin:
    url: str
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, auth
    routes: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)


def _serve(origin_factory: type[http.server.BaseHTTPRequestHandler]) -> http.server.HTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), origin_factory)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return server


def _handler(origin: Origin) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def _answer(self) -> None:
            origin.seen.append((self.command, self.path, self.headers.get("Authorization")))
            status, headers = origin.routes.get(self.path, (200, {}))
            body = json.dumps({"method": self.command, "path": self.path}).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _answer

    return Handler


@pytest.fixture
def origins() -> Iterator[tuple[Origin, Origin]]:
    first, second = Origin(""), Origin("")
    servers = [_serve(_handler(first)), _serve(_handler(second))]
    first.url = f"http://127.0.0.1:{servers[0].server_address[1]}"
    second.url = f"http://127.0.0.1:{servers[1].server_address[1]}"
    yield first, second
    for server in servers:
        server.shutdown()
        server.server_close()


AUTH = {"Authorization": "Basic dXNlcjpzM2NyZXQ="}


def test_a_redirect_to_another_origin_drops_the_credentials(origins: tuple[Origin, Origin]) -> None:
    home, other = origins
    home.routes["/v2/x"] = (307, {"Location": f"{other.url}/blob"})
    response = client.send("GET", f"{home.url}/v2/x", failure=PackageIndexError, headers=AUTH)
    assert response.status == 200 and response.url == f"{other.url}/blob"
    assert home.seen == [("GET", "/v2/x", AUTH["Authorization"])]
    assert other.seen == [("GET", "/blob", None)]


def test_a_redirect_on_the_same_origin_keeps_them_and_head_stays_head(
    origins: tuple[Origin, Origin],
) -> None:
    home, _ = origins
    home.routes["/old"] = (301, {"Location": "/new"})
    response = client.send("HEAD", f"{home.url}/old", failure=PackageIndexError, headers=AUTH)
    assert response.status == 200 and response.body == b""
    assert home.seen == [
        ("HEAD", "/old", AUTH["Authorization"]),
        ("HEAD", "/new", AUTH["Authorization"]),
    ]


def test_a_redirect_to_another_scheme_is_refused(origins: tuple[Origin, Origin]) -> None:
    home, _ = origins
    home.routes["/x"] = (302, {"Location": "file:///etc/passwd"})
    with pytest.raises(PackageIndexError, match="only http and https"):
        client.send("GET", f"{home.url}/x", failure=PackageIndexError)


def test_a_redirect_loop_is_an_error_not_a_hang(origins: tuple[Origin, Origin]) -> None:
    home, _ = origins
    home.routes["/a"] = (302, {"Location": "/b"})
    home.routes["/b"] = (302, {"Location": "/a"})
    with pytest.raises(PackageIndexError, match="redirect was not followed"):
        client.send("GET", f"{home.url}/a", failure=PackageIndexError)
    assert len(home.seen) <= 2 * client.MAX_REDIRECTS


def test_only_http_urls_are_fetched() -> None:
    with pytest.raises(RegistryAuthError, match="only http and https"):
        client.send("GET", "file:///etc/passwd", failure=RegistryAuthError)


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_server_faults_are_transient(origins: tuple[Origin, Origin], status: int) -> None:
    home, _ = origins
    home.routes["/x"] = (status, {})
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        client.send("GET", f"{home.url}/x", failure=PackageIndexError)


@pytest.mark.parametrize("status", [401, 403, 404])
def test_client_errors_are_answers(origins: tuple[Origin, Origin], status: int) -> None:
    home, _ = origins
    home.routes["/x"] = (status, {"WWW-Authenticate": 'Basic realm="r"'})
    response = client.send("GET", f"{home.url}/x", failure=PackageIndexError)
    assert response.status == status
    assert response.headers["www-authenticate"] == 'Basic realm="r"'


def test_a_refused_connection_is_transient_and_shows_no_userinfo() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError) as caught:
        client.send("GET", f"http://127.0.0.1:{port}/x?sig=t0ken", failure=PackageIndexError)
    assert caught.value.message.startswith(f"cannot reach http://127.0.0.1:{port}/x")
    assert "t0ken" not in caught.value.message


def test_display_url_hides_userinfo_and_query() -> None:
    assert client.display_url("https://u:p@h.example:8443/a/b?X-Sig=s#f") == (
        "https://h.example:8443/a/b"
    )


def test_origin_fills_in_default_ports() -> None:
    assert client.same_origin("https://h.example/a", "https://H.example:443/b")
    assert not client.same_origin("https://h.example/a", "http://h.example/a")
    assert not client.same_origin("http://127.0.0.1:5555/", "http://127.0.0.1:5556/")


# --- the retry policy -------------------------------------------------------------------------


def test_the_policy_retries_transient_faults_only() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("HTTP 503")
        return "ok"

    lines: list[str] = []
    assert retry_transient(flaky, what="x", attempts=4, backoff=0, on_retry=lines.append) == "ok"
    assert len(calls) == 3 and len(lines) == 2 and "HTTP 503" in lines[0]

    def refused() -> str:
        calls.append(1)
        raise RegistryAuthError("HTTP 401")

    calls.clear()
    with pytest.raises(RegistryAuthError):
        retry_transient(refused, what="x", attempts=4, backoff=0)
    assert calls == [1]


def test_the_policy_gives_up_with_the_last_transient_error() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise TransientError(f"attempt {len(calls)}")

    with pytest.raises(TransientError, match="attempt 4"):
        retry_transient(down, what="x", attempts=4, backoff=0)
    assert len(calls) == 4
