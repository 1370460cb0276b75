"""Hostile-input rows for the registry and its HTTP client (issue 10, items 15 and 18).

A loopback "registry" and a loopback "elsewhere" (another origin) stand in for a registry that
hands its credentials challenge, or a redirect, to another host. Every row runs through the real
boundary (`imagebot build --push` looks the tag up before any engine is needed) and asserts the
exit code, one `error:` line, no traceback and byte-identical inputs; the rows of item 15 also
assert that no Authorization header reached the other origin.
"""

from __future__ import annotations

import http.server
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest
from http_fixtures import Elsewhere, loopback

from tests.unit.conftest import Hostile, Project, Result, assert_refused

USER, PASSWORD = "ci-bot", "s3cret-registry-password"


class Registry(http.server.BaseHTTPRequestHandler):
    """A registry that sends its Bearer realm, or a redirect, to `Elsewhere`."""

    mode: ClassVar[str] = "realm"
    elsewhere: ClassVar[str] = ""

    def log_message(self, *args: object) -> None:
        return None

    def do_HEAD(self) -> None:
        if self.mode == "redirect":
            self.send_response(307)
            self.send_header("Location", f"{self.elsewhere}{self.path}")
        elif self.headers.get("Authorization") is None and self.mode == "basic-then-redirect":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="registry"')
        elif self.mode == "basic-then-redirect":
            self.send_response(307)
            self.send_header("Location", f"{self.elsewhere}{self.path}")
        elif self.mode == "file-realm":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="file:///etc/passwd"')
        else:
            self.send_response(401)
            challenge = f'Bearer realm="{self.elsewhere}/token",service="registry"'
            self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD


SERVERS: dict[str, str] = {}


@pytest.fixture(autouse=True)
def servers() -> Iterator[None]:
    with (
        loopback(Registry, poll_interval=0.02) as SERVERS["registry"],
        loopback(Elsewhere, poll_interval=0.02) as SERVERS["elsewhere"],
    ):
        Registry.elsewhere = f"http://{SERVERS['elsewhere']}"
        Elsewhere.seen = []
        yield


def _registry(mode: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    """Point imagebot.toml at the loopback registry, in `mode`, with env credentials."""

    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        Registry.mode = mode
        _registry_url(f"{SERVERS['registry']}/jupyter")(project, monkeypatch)

    return setup


def _registry_url(url: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        text = project.config.read_text(encoding="utf-8")
        text = text.replace(
            'url = "registry.example.org/jupyter"\nauth = "basic"',
            f'url = "{url}"\nauth = "basic"\ninsecure = true',
        )
        project.config.write_text(text, encoding="utf-8")
        monkeypatch.setenv("IMAGEBOT_REGISTRY_USERNAME", USER)
        monkeypatch.setenv("IMAGEBOT_REGISTRY_PASSWORD", PASSWORD)
        monkeypatch.setenv("IMAGEBOT_RETRY_SECONDS", "1")

    return setup


def _nothing(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEBOT_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("IMAGEBOT_REGISTRY_PASSWORD", PASSWORD)


BUILD_PUSH = ("build", "--push", "lab")

# Item 15: credentials reach only the registry's own origin, or its bearer realm over https.
CREDENTIAL_ROWS = [
    Hostile("bearer-realm-elsewhere-over-http", _registry("realm"), BUILD_PUSH, 9, "nor https"),
    Hostile("bearer-realm-not-http", _registry("file-realm"), BUILD_PUSH, 9, "nor https"),
    Hostile("redirect-elsewhere", _registry("redirect"), BUILD_PUSH, 9, "registry refused access"),
    Hostile(
        "basic-auth-then-redirect-elsewhere",
        _registry("basic-then-redirect"),
        BUILD_PUSH,
        9,
        "registry refused access",
    ),
]

# Item 18 and the command line: the registry URL and references are refused before any request.
VALUE_ROWS = [
    Hostile(
        "registry-url-with-space", _registry_url("127.0.0.1:5555/jup yter"), BUILD_PUSH, 3, "url"
    ),
    Hostile(
        "registry-url-with-userinfo",
        _registry_url("bob:pw@127.0.0.1:5555/jupyter"),
        BUILD_PUSH,
        3,
        "url",
    ),
    Hostile(
        "push-ref-with-newline",
        _nothing,
        ("push", "registry.example.org/jupyter/lab:x\nRUN id"),
        2,
        "image reference",
    ),
    Hostile(
        "push-ref-upper-case-repository",
        _nothing,
        ("push", "registry.example.org/Jupyter/lab:x"),
        2,
        "image reference",
    ),
]


@pytest.mark.parametrize("case", CREDENTIAL_ROWS, ids=lambda c: c.id)
def test_credentials_stay_on_the_registry_origin(
    case: Hostile,
    locked_project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
) -> None:
    result = assert_refused(case, locked_project, monkeypatch, run_cli)
    assert all(header is None for header in Elsewhere.seen), Elsewhere.seen
    assert PASSWORD not in result.err


@pytest.mark.parametrize("case", VALUE_ROWS, ids=lambda c: c.id)
def test_bad_registry_values_are_refused(
    case: Hostile,
    locked_project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
) -> None:
    assert_refused(case, locked_project, monkeypatch, run_cli)
    assert Elsewhere.seen == []
