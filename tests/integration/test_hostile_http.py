"""Hostile cases that need the real stack (issue 10, items 9 and 15).

Credentials: the htpasswd registry on 127.0.0.1:5555 accepts the stack's credentials, so a
refusal behind a loopback front (another origin) proves they were not forwarded there. Signals:
SIGTERM in the middle of `imagebot build` removes the docker config that holds the token.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from paths import REPO_ROOT

from imagebot.errors import RegistryAuthError
from imagebot.registry import Credentials, RegistryClient
from imagebot.tags import ImageRef

from .conftest import REGISTRY, SMALL_CONFIG, Run, Stack


class Front(http.server.BaseHTTPRequestHandler):
    """A loopback front: redirects everything to the real registry, or names a plain-http
    token realm on a third origin; records the Authorization headers that reach it."""

    target: ClassVar[str] = ""
    realm: ClassVar[str | None] = None
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def log_message(self, *args: object) -> None:
        return None

    def do_HEAD(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/token"):
            self.send_response(200)
        elif self.realm:
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{self.realm}",service="front"')
        else:
            self.send_response(307)
            self.send_header("Location", f"{self.target}{self.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD


@pytest.fixture
def front() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    Front.target, Front.realm, Front.seen = f"http://{REGISTRY}", None, []
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _pushed(small_pushed: Run) -> ImageRef:
    [outcome] = json.loads(small_pushed.stdout)
    return ImageRef.parse(outcome["ref"])


def _client(host: str, stack: Stack) -> RegistryClient:
    credentials = Credentials(stack.username, stack.password, "test")
    return RegistryClient(host, insecure=True, credentials=credentials, retry_seconds=3)


def test_credentials_do_not_follow_a_redirect_to_the_real_registry(
    stack: Stack, small_pushed: Run, front: str
) -> None:
    ref = _pushed(small_pushed)
    assert _client(REGISTRY, stack).digest(ref)  # the credentials work on the registry itself
    behind_front = ImageRef(ref.name.replace(REGISTRY, front, 1), ref.tag)
    with pytest.raises(RegistryAuthError) as caught:
        _client(front, stack).digest(behind_front)
    assert "HTTP 401" in caught.value.message and stack.password not in caught.value.message
    # The front (the registry's own origin here) got Basic after the challenge; 5555 did not.
    assert any(auth and auth.startswith("Basic ") for _, auth in Front.seen)


def test_credentials_never_go_to_a_plain_http_realm_on_another_port(
    stack: Stack, front: str
) -> None:
    realm_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
    threading.Thread(target=realm_server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        Front.realm = f"http://127.0.0.1:{realm_server.server_address[1]}/token"
        with pytest.raises(RegistryAuthError, match="nor https"):
            _client(front, stack).digest(ImageRef(f"{front}/itest/x", "t"))
    finally:
        realm_server.shutdown()
        realm_server.server_close()
    assert all(path != "/token" and auth is None for path, auth in Front.seen), Front.seen


def test_sigterm_during_build_removes_the_docker_config(
    stack: Stack, small_pushed: Run, tmp_path: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = stack.env(
        TMPDIR=str(tmp),
        FIXTURE_STAMP=f"sigterm-{time.time_ns()}",
        PAYLOAD_MB="300",
        DOCKER_CONFIG=str(tmp_path / "docker-config"),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "imagebot", "-c", str(SMALL_CONFIG), "build", "small"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp.glob("imagebot-docker-config-*")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the build never made its docker config"
            time.sleep(0.02)
        configs = list(tmp.glob("imagebot-docker-config-*"))
        assert os.stat(configs[0]).st_mode & 0o777 == 0o700
        time.sleep(0.5)  # the docker CLI is running now
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert not list(tmp.glob("imagebot-docker-config-*"))
