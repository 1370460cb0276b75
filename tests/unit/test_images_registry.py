"""Registry adapter: credentials order, redaction, failure classes, and the v2 client against a
fake in-process registry that speaks Basic and Bearer (Artifact Registry style) challenges."""

from __future__ import annotations

import base64
import http.server
import json
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from http_fixtures import Elsewhere, loopback

from imagebot.config import RegistryConfig
from imagebot.errors import RegistryAuthError, RegistryError, TransientError
from imagebot.redaction import redact
from imagebot.registry import (
    GOOGLE_USERNAME,
    Credentials,
    RegistryClient,
    classify_failure,
    docker_config_credentials,
    parse_challenge,
    resolve_credentials,
    retry_seconds,
    with_retries,
)
from imagebot.tags import ImageRef

DIGEST = "sha256:" + "ab" * 32


def test_credentials_repr_hides_the_secret() -> None:
    creds = Credentials("user", "s3cret-value", "env X")
    assert "s3cret-value" not in repr(creds)
    assert creds.redact("failed with s3cret-value") == "failed with ***"
    basic = base64.b64encode(b"user:s3cret-value").decode()
    assert creds.redact(f"Authorization: Basic {basic}") == "Authorization: Basic ***"


def test_redact_removes_url_userinfo() -> None:
    assert (
        redact("https://bob:pw123@index.example/simple", []) == "https://***@index.example/simple"
    )
    # A password holding "@" is hidden whole, not up to its first "@".
    assert redact("https://bob:p@ss@index.example/x", []) == "https://***@index.example/x"


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("unauthorized: authentication required", RegistryAuthError),
        ("denied: requested access to the resource is denied", RegistryAuthError),
        ("received unexpected HTTP status: 503 Service Unavailable", TransientError),
        (
            "Put http://127.0.0.1:5555/v2/x/blobs/uploads/: dial tcp: connect: connection refused",
            TransientError,
        ),
        ("read: connection reset by peer", TransientError),
        ("unexpected EOF", TransientError),
        ("manifest invalid: manifest invalid", RegistryError),
        ("manifest unknown: manifest unknown (HTTP 503 upstream)", RegistryError),
    ],
)
def test_classify_failure(message: str, kind: type) -> None:
    assert classify_failure(message) is kind


def test_retry_seconds_from_env() -> None:
    assert retry_seconds({}) == 60
    assert retry_seconds({"IMAGEBOT_RETRY_SECONDS": "5"}) == 5
    assert retry_seconds({"IMAGEBOT_RETRY_SECONDS": "junk"}) == 60


def test_with_retries_retries_transient_then_gives_up_with_a_hint() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        raise TransientError("HTTP 503 from registry")

    with pytest.raises(RegistryError) as caught:
        with_retries(flaky, seconds=1.2, what="looking up x")
    assert len(calls) >= 2
    assert type(caught.value) is RegistryError
    assert "gave up after 1s" in caught.value.message and caught.value.hint


def test_with_retries_does_not_retry_auth_errors() -> None:
    calls = []

    def refused() -> str:
        calls.append(1)
        raise RegistryAuthError("401")

    with pytest.raises(RegistryAuthError):
        with_retries(refused, seconds=5, what="x")
    assert calls == [1]


def test_parse_challenge() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://europe-north1-docker.pkg.dev/v2/token",'
        'service="europe-north1-docker.pkg.dev",scope="repository:p/r/lab:pull"'
    )
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params["realm"] == "https://europe-north1-docker.pkg.dev/v2/token"
    assert challenge.params["scope"] == "repository:p/r/lab:pull"
    basic = parse_challenge('Basic realm="imagebot-local"')
    assert basic is not None and basic.scheme == "basic"


# --- credentials ------------------------------------------------------------------------------

GOOGLE = RegistryConfig(url="europe-north1-docker.pkg.dev/p/jupyter", auth="auto")
LOCAL = RegistryConfig(url="127.0.0.1:5555/jupyter", auth="auto", insecure=True)


def _docker_config(tmp_path: Path, host: str, user: str, password: str) -> dict[str, str]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {f"https://{host}": {"auth": auth}}})
    )
    return {"DOCKER_CONFIG": str(tmp_path), "PATH": ""}


def test_google_token_env_comes_first_for_artifact_registry(tmp_path: Path) -> None:
    env = _docker_config(tmp_path, GOOGLE.host, "dc", "dcpass")
    env |= {"IMAGEBOT_REGISTRY_TOKEN": "ya29.token", "IMAGEBOT_REGISTRY_USERNAME": "u",
            "IMAGEBOT_REGISTRY_PASSWORD": "p"}  # fmt: skip
    found = resolve_credentials(GOOGLE, env)
    assert (
        found is not None and found.username == GOOGLE_USERNAME and found.password == "ya29.token"
    )


def test_env_then_docker_config_for_other_registries(tmp_path: Path) -> None:
    env = _docker_config(tmp_path, LOCAL.host, "dc", "dcpass")
    env |= {"IMAGEBOT_REGISTRY_TOKEN": "ignored-here"}
    found = resolve_credentials(LOCAL, env)
    assert found is not None and (found.username, found.password) == ("dc", "dcpass")
    env |= {"IMAGEBOT_REGISTRY_USERNAME": "u", "IMAGEBOT_REGISTRY_PASSWORD": "p"}
    found = resolve_credentials(LOCAL, env)
    assert found is not None and (found.username, found.source) == (
        "u",
        "env IMAGEBOT_REGISTRY_USERNAME",
    )


def test_docker_config_is_only_read(tmp_path: Path) -> None:
    env = _docker_config(tmp_path, LOCAL.host, "dc", "dcpass")
    before = (tmp_path / "config.json").read_bytes()
    assert docker_config_credentials(LOCAL.host, env) is not None
    assert docker_config_credentials("other.example", env) is None
    assert (tmp_path / "config.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_explicit_mode_without_credentials_names_what_to_set() -> None:
    basic = RegistryConfig(url="127.0.0.1:5555/jupyter", auth="basic")
    with pytest.raises(RegistryAuthError) as caught:
        resolve_credentials(basic, {})
    assert "IMAGEBOT_REGISTRY_USERNAME" in caught.value.hint
    assert "scripts/stack env" in caught.value.hint


def test_auto_without_any_credentials_is_anonymous(tmp_path: Path) -> None:
    assert resolve_credentials(LOCAL, {"DOCKER_CONFIG": str(tmp_path), "PATH": ""}) is None


# --- the client against a fake registry ------------------------------------------------------------


class FakeRegistry(http.server.BaseHTTPRequestHandler):
    """Bearer-token registry: /token needs Basic user:pass; manifests need the token."""

    manifests: ClassVar[dict[str, str]] = {"/v2/p/jupyter/lab/manifests/good": DIGEST}
    status_override: ClassVar[list[int]] = []
    realm: ClassVar[str | None] = None  # a token realm elsewhere instead of /token here
    redirect_to: ClassVar[str | None] = None  # answer manifests with a 307 to this origin

    def log_message(self, *args: object) -> None:
        return None

    def _send(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/token"):
            expected = "Basic " + base64.b64encode(b"user:pass").decode()
            if self.headers.get("Authorization") != expected:
                self._send(401)
                return
            self._send(200, body=json.dumps({"token": "tok-123"}).encode())
            return
        self.do_HEAD()

    def do_HEAD(self) -> None:
        if self.status_override:
            self._send(self.status_override.pop(0))
            return
        if self.redirect_to:
            self._send(307, {"Location": f"{self.redirect_to}{self.path}"})
            return
        if self.headers.get("Authorization") != "Bearer tok-123":
            realm = self.realm or f"http://127.0.0.1:{self.server.server_address[1]}/token"
            challenge = (
                f'Bearer realm="{realm}",service="fake",scope="repository:p/jupyter/lab:pull"'
            )
            self._send(401, {"WWW-Authenticate": challenge})
            return
        digest = self.manifests.get(self.path)
        if digest is None:
            self._send(404)
        else:
            self._send(200, {"Docker-Content-Digest": digest})


@pytest.fixture
def fake_registry() -> Iterator[str]:
    FakeRegistry.status_override = []
    FakeRegistry.realm = FakeRegistry.redirect_to = None
    with loopback(FakeRegistry) as host:
        yield host


def _registry(host: str, password: str = "pass") -> RegistryClient:
    return RegistryClient(host, insecure=True, credentials=Credentials("user", password, "test"),
                    retry_seconds=3)  # fmt: skip


def test_bearer_flow_digest_and_not_found(fake_registry: str) -> None:
    registry = _registry(fake_registry)
    assert registry.digest(ImageRef(f"{fake_registry}/p/jupyter/lab", "good")) == DIGEST
    assert registry.digest(ImageRef(f"{fake_registry}/p/jupyter/lab", "missing")) is None


def test_bearer_flow_with_wrong_password_is_an_auth_error(fake_registry: str) -> None:
    with pytest.raises(RegistryAuthError) as caught:
        _registry(fake_registry, "wrong").digest(ImageRef(f"{fake_registry}/p/jupyter/lab", "good"))
    assert "wrong" not in caught.value.message


def test_5xx_is_retried_until_it_passes(fake_registry: str) -> None:
    FakeRegistry.status_override = [503, 502]
    registry = _registry(fake_registry)
    assert registry.digest(ImageRef(f"{fake_registry}/p/jupyter/lab", "good")) == DIGEST


def test_a_ref_in_another_registry_is_refused(fake_registry: str) -> None:
    with pytest.raises(RegistryError):
        _registry(fake_registry).digest(ImageRef("other.example/p/lab", "x"))


# --- credentials stay on the registry's origin (issue 10, item 15) -----------------------------


@pytest.fixture
def elsewhere() -> Iterator[str]:
    Elsewhere.seen = []
    with loopback(Elsewhere) as host:
        yield f"http://{host}"


def test_basic_credentials_never_go_to_a_plain_http_realm_elsewhere(
    fake_registry: str, elsewhere: str
) -> None:
    FakeRegistry.realm = f"{elsewhere}/token"
    with pytest.raises(
        RegistryAuthError, match="neither the registry's own address nor https"
    ) as caught:
        _registry(fake_registry).digest(ImageRef(f"{fake_registry}/p/jupyter/lab", "good"))
    assert Elsewhere.seen == []
    assert "pass" not in caught.value.message


def test_an_https_realm_elsewhere_may_receive_them(fake_registry: str) -> None:
    registry = _registry(fake_registry)
    assert registry.may_receive_credentials("https://auth.example/token")
    assert registry.may_receive_credentials(f"http://{fake_registry}/token")
    assert not registry.may_receive_credentials("http://auth.example/token")


def test_authorization_does_not_follow_a_redirect_elsewhere(
    fake_registry: str, elsewhere: str
) -> None:
    registry = _registry(fake_registry)
    ref = ImageRef(f"{fake_registry}/p/jupyter/lab", "good")
    assert registry.digest(ref) == DIGEST  # a token is held now
    FakeRegistry.redirect_to = elsewhere
    with pytest.raises(RegistryAuthError):
        registry.digest(ref)
    assert Elsewhere.seen == [None]
