"""ADAPTER: registry credentials and a small OCI distribution (v2) client.

Credentials come, in order, from a Google access token (Artifact Registry and gcr.io hosts),
username/password environment variables, then the user's docker config, which is only ever
read. `open_registry(config, env)` returns a `RegistryClient` whose `digest(ref)` answers "is
this tag there, and what is its digest" with Bearer or Basic auth, over `imagebot.http`.
Transient faults (5xx, connection refused/reset) are retried by the one retry policy within
IMAGEBOT_RETRY_SECONDS; 401/403 and "manifest unknown" fail at once.

Credentials go only to the registry's own origin, or to the token realm its Bearer challenge
names when that realm is https; no redirect carries them to another origin (`imagebot.http`).
Secrets never appear in messages: every error text passes through `Credentials.redact`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from imagebot import http
from imagebot.errors import RegistryAuthError, RegistryError, TransientError
from imagebot.redaction import redact
from imagebot.retry import retry_transient
from imagebot.tags import ImageRef

if TYPE_CHECKING:
    from imagebot.config import Config, RegistryConfig

T = TypeVar("T")

GOOGLE_USERNAME = "oauth2accesstoken"
RETRY_SECONDS_ENV = "IMAGEBOT_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 60.0
REQUEST_TIMEOUT = 15.0
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


@dataclass(frozen=True)
class Credentials:
    """Registry credentials and where they came from. repr() never shows the secret."""

    username: str
    password: str = field(repr=False)
    source: str  # e.g. "env IMAGEBOT_REGISTRY_USERNAME", "gcloud", "docker config"

    def auth_config(self) -> dict[str, str]:
        """The dict docker-py's push(auth_config=...) takes."""
        return {"username": self.username, "password": self.password}

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def redact(self, text: str) -> str:
        return redact(text, self.secrets())

    def secrets(self) -> tuple[str, ...]:
        raw = f"{self.username}:{self.password}".encode()
        return tuple(s for s in (self.password, base64.b64encode(raw).decode()) if s)


def retry_seconds(env: Mapping[str, str]) -> float:
    """Upper bound on the time spent retrying transient faults (IMAGEBOT_RETRY_SECONDS)."""
    raw = env.get(RETRY_SECONDS_ENV, "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_RETRY_SECONDS
    except ValueError:
        return DEFAULT_RETRY_SECONDS


def is_google_host(host: str) -> bool:
    return host.endswith(".pkg.dev") or host == "gcr.io" or host.endswith(".gcr.io")


# --- credentials ----------------------------------------------------------------------------


def google_credentials(token_env: str, env: Mapping[str, str]) -> Credentials | None:
    """A Google access token: the given token variable, then ADC (google.auth), then gcloud."""
    token = env.get(token_env, "")
    if token:
        return Credentials(GOOGLE_USERNAME, token, f"env {token_env}")
    try:
        import google.auth  # type: ignore[import-not-found, unused-ignore]
        import google.auth.transport.requests  # type: ignore[import-not-found, unused-ignore]

        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        creds.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call, unused-ignore]
        if creds.token:
            return Credentials(GOOGLE_USERNAME, str(creds.token), "application default credentials")
    except Exception:  # not installed, or no ADC configured: try gcloud next
        pass
    try:
        result = subprocess.run(
            ["gcloud", "auth", "print-access-token"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    token = result.stdout.strip()
    if result.returncode == 0 and token:
        return Credentials(GOOGLE_USERNAME, token, "gcloud auth print-access-token")
    return None


def env_credentials(registry: RegistryConfig, env: Mapping[str, str]) -> Credentials | None:
    username = env.get(registry.username_env, "")
    password = env.get(registry.password_env, "")
    if username and password:
        return Credentials(username, password, f"env {registry.username_env}")
    return None


def docker_config_path(env: Mapping[str, str]) -> Path:
    base = env.get("DOCKER_CONFIG") or str(Path(env.get("HOME", str(Path.home()))) / ".docker")
    return Path(base) / "config.json"


def docker_config_credentials(host: str, env: Mapping[str, str]) -> Credentials | None:
    """Read (never write) the user's docker config: inline auths, credHelpers, credsStore."""
    path = docker_config_path(env)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    helper = (data.get("credHelpers") or {}).get(host) or data.get("credsStore")
    if helper:
        found = _credential_helper(str(helper), host)
        if found:
            return found
    for key, entry in (data.get("auths") or {}).items():
        if _strip_scheme(key) != host or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
            if username and password:
                return Credentials(username, password, f"docker config {path}")
        if entry.get("identitytoken"):
            return Credentials("<token>", str(entry["identitytoken"]), f"docker config {path}")
    return None


def _strip_scheme(key: str) -> str:
    return re.sub(r"^https?://", "", key).split("/", 1)[0]


def _credential_helper(helper: str, host: str) -> Credentials | None:
    try:
        result = subprocess.run(
            [f"docker-credential-{helper}", "get"],
            input=host,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        data = json.loads(result.stdout) if result.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    username, secret = data.get("Username", ""), data.get("Secret", "")
    if username and secret:
        return Credentials(username, secret, f"docker-credential-{helper}")
    return None


def resolve_credentials(registry: RegistryConfig, env: Mapping[str, str]) -> Credentials | None:
    """Credentials for the configured registry, following `registry.auth`.

    auth = "auto" walks the whole chain: Google token (only for Google hosts), env
    username/password, docker config. An explicit mode uses only its own source, and fails
    with a hint when that source has nothing.
    """
    host = registry.host
    sources: dict[str, Callable[[], Credentials | None]] = {
        "google": lambda: google_credentials(registry.token_env, env),
        "basic": lambda: env_credentials(registry, env),
        "docker-config": lambda: docker_config_credentials(host, env),
    }
    if registry.auth != "auto":
        found = sources[registry.auth]()
        if found is None:
            raise RegistryAuthError(
                f"no credentials for {host} (registry.auth = {registry.auth!r})",
                _missing_hint(registry),
            )
        return found
    order = ["google", "basic", "docker-config"] if is_google_host(host) else ["basic"]
    if not is_google_host(host):
        order.append("docker-config")
    for name in order:
        found = sources[name]()
        if found is not None:
            return found
    return None


def _missing_hint(registry: RegistryConfig) -> str:
    if registry.auth == "google":
        return f"run `gcloud auth login`, use application default credentials, or set {registry.token_env}"
    if registry.auth == "basic":
        return f"set {registry.username_env} and {registry.password_env} (locally: eval $(scripts/stack env))"
    return f"run `docker login {registry.host}`"


# --- retries --------------------------------------------------------------------------------


_TRANSIENT_TEXT = re.compile(
    r"connection refused|connection reset|broken pipe|\beof\b|timed? ?out|"
    r"temporar|unavailable|bad gateway|gateway|\b50[0234]\b|too many requests|\b429\b|"
    r"i/o timeout|no route to host|restarting|server closed",
    re.IGNORECASE,
)
_AUTH_TEXT = re.compile(
    r"unauthorized|authentication required|denied|forbidden|\b401\b|\b403\b|no basic auth",
    re.IGNORECASE,
)
_NOT_FOUND_TEXT = re.compile(r"manifest unknown|name unknown|blob unknown", re.IGNORECASE)


def classify_failure(
    message: str,
) -> type[RegistryError] | type[RegistryAuthError] | type[TransientError]:
    """PURE: which error class a registry failure message (a docker push/pull) belongs to."""
    if _AUTH_TEXT.search(message):
        return RegistryAuthError
    if _NOT_FOUND_TEXT.search(message):
        return RegistryError
    if _TRANSIENT_TEXT.search(message):
        return TransientError
    return RegistryError


def with_retries(
    action: Callable[[], T],
    *,
    seconds: float,
    what: str,
    on_retry: Callable[[str], None] | None = None,
) -> T:
    """Run action under the retry policy for <= seconds; then a RegistryError with a hint."""
    try:
        return retry_transient(action, what=what, seconds=seconds, on_retry=on_retry)
    except TransientError as exc:
        raise RegistryError(
            f"{what}: gave up after {seconds:.0f}s: {exc.message}",
            "check that the registry is up and reachable, then run the command again",
        ) from None


# --- the v2 client --------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" | "bearer"
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """PURE: parse a WWW-Authenticate header (`Bearer realm="...",service="...",scope="..."`)."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return Challenge(scheme.lower(), params)


@dataclass
class RegistryClient:
    """A v2 registry endpoint with credentials; `digest(ref)` looks a reference up."""

    host: str
    insecure: bool
    credentials: Credentials | None
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    on_retry: Callable[[str], None] | None = None
    _bearer_tokens: dict[str, str] = field(default_factory=dict, repr=False)
    _use_basic: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.host}"

    def digest(self, ref: ImageRef) -> str | None:
        """The manifest digest of ref in the registry, or None when it does not exist.

        Raises RegistryAuthError on 401/403, RegistryError when unreachable after retries.
        """
        if ref.registry != self.host:
            raise RegistryError(
                f"{ref} is not in registry {self.host}",
                "pass a reference under the configured registry.url",
            )
        reference = ref.digest or ref.tag or "latest"
        path = f"/v2/{ref.repository}/manifests/{reference}"
        return with_retries(
            lambda: self._head_manifest(path, ref.repository),
            seconds=self.retry_seconds,
            what=f"looking up {ref}",
            on_retry=self.on_retry,
        )

    def _head_manifest(self, path: str, repository: str) -> str | None:
        response = self._request("HEAD", path, repository)
        if response.status == 404:
            return None
        if response.status == 200:
            digest = response.headers.get("docker-content-digest")
            if digest:
                return digest
            # Some registries omit the header on HEAD: hash the manifest body instead.
            response = self._request("GET", path, repository)
            if response.status == 200:
                return response.headers.get("docker-content-digest") or (
                    "sha256:" + hashlib.sha256(response.body).hexdigest()
                )
        raise self._status_error(response.status, path)

    def _status_error(
        self, status: int, path: str, body: bytes = b""
    ) -> RegistryError | RegistryAuthError:
        where = http.display_url(path if "://" in path else f"{self.base_url}{path}")
        if status in (401, 403):
            who = f" as {self.credentials.username}" if self.credentials else " anonymously"
            source = f" (credentials from {self.credentials.source})" if self.credentials else ""
            return RegistryAuthError(
                f"registry refused access{who}{source}: HTTP {status} for {where}",
                "check the registry credentials and that the account may read this repository",
            )
        detail = _error_detail(body)
        return RegistryError(f"unexpected HTTP {status} from {where}{detail}", "check registry.url")

    def _request(
        self,
        method: str,
        path: str,
        repository: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> http.Response:
        """One request; on a 401 challenge, authenticate (Basic or Bearer) and send it again.

        `path` is the registry path, or an absolute upload URL the registry handed out; the
        credentials go with it only when it is on the registry's own origin.
        """
        url = path if "://" in path else self.base_url + path
        sent = {"Accept": MANIFEST_TYPES, **(headers or {})}
        own = http.same_origin(url, self.base_url)
        credentials = self.credentials
        if own and (token := self._bearer_tokens.get(repository)):
            sent["Authorization"] = f"Bearer {token}"
        elif own and credentials is not None and self._use_basic:
            sent["Authorization"] = credentials.basic_header()
        response = self._send(method, url, sent, data)
        if response.status != 401 or not own:
            return response
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            return response
        if challenge.scheme == "basic":
            if credentials is None or "Authorization" in sent:
                return response
            self._use_basic = True
            sent["Authorization"] = credentials.basic_header()
        else:
            # A token for pulls answers 401 to a push: ask again with the scope it names.
            token = self._bearer_token(challenge, repository)
            if sent.get("Authorization") == f"Bearer {token}":
                return response
            self._bearer_tokens[repository] = token
            sent["Authorization"] = f"Bearer {token}"
        return self._send(method, url, sent, data)

    # --- reading and writing manifests and blobs (image assembly) ---------------------------

    def get_manifest(self, repository: str, reference: str) -> tuple[str, bytes] | None:
        """(digest, body) of a manifest, or None when the registry does not have it."""
        path = f"/v2/{repository}/manifests/{reference}"

        def get() -> tuple[str, bytes] | None:
            response = self._request("GET", path, repository)
            if response.status == 404:
                return None
            if response.status != 200:
                raise self._status_error(response.status, path)
            return "sha256:" + hashlib.sha256(response.body).hexdigest(), response.body

        return self._retried(get, f"reading {self.host}/{repository}:{reference}")

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """Store a manifest under a tag (or its own digest); returns its digest."""
        path = f"/v2/{repository}/manifests/{reference}"

        def put() -> str:
            response = self._request(
                "PUT", path, repository, data=body, headers={"Content-Type": media_type}
            )
            if response.status not in (200, 201, 202):
                raise self._status_error(response.status, path, response.body)
            return "sha256:" + hashlib.sha256(body).hexdigest()

        return self._retried(put, f"storing the manifest {self.host}/{repository}:{reference}")

    def has_blob(self, repository: str, digest: str) -> bool:
        path = f"/v2/{repository}/blobs/{digest}"

        def head() -> bool:
            response = self._request("HEAD", path, repository)
            if response.status in (200, 404):
                return response.status == 200
            raise self._status_error(response.status, path)

        return self._retried(head, f"looking up blob {digest[:19]} in {repository}")

    def get_blob(self, repository: str, digest: str) -> bytes:
        """A (small) blob's bytes, checked against its digest."""
        path = f"/v2/{repository}/blobs/{digest}"

        def get() -> bytes:
            response = self._request("GET", path, repository)
            if response.status != 200:
                raise self._status_error(response.status, path)
            if "sha256:" + hashlib.sha256(response.body).hexdigest() != digest:
                raise RegistryError(f"blob {digest} from {self.host}/{repository} is corrupt")
            return response.body

        return self._retried(get, f"reading blob {digest[:19]} from {repository}")

    def upload_blob(self, repository: str, digest: str, data: bytes) -> bool:
        """Upload a blob unless the registry has it; True when bytes were sent."""
        if self.has_blob(repository, digest):
            return False
        start = f"/v2/{repository}/blobs/uploads/"

        def upload() -> None:
            from urllib.parse import urljoin

            response = self._request("POST", start, repository, data=b"")
            location = response.headers.get("location", "")
            if response.status != 202 or not location:
                raise self._status_error(response.status, start, response.body)
            url = urljoin(self.base_url + start, location)
            url += ("&" if "?" in url else "?") + f"digest={digest}"
            headers = {"Content-Type": "application/octet-stream"}
            done = self._request("PUT", url, repository, data=data, headers=headers)
            if done.status not in (201, 204):
                raise self._status_error(done.status, start, done.body)

        self._retried(upload, f"uploading blob {digest[:19]} to {repository}")
        return True

    def _retried(self, action: Callable[[], T], what: str) -> T:
        return with_retries(action, seconds=self.retry_seconds, what=what, on_retry=self.on_retry)

    def may_receive_credentials(self, url: str) -> bool:
        """Credentials go to the registry's own origin, or to another origin over https only."""
        return http.same_origin(url, self.base_url) or http.origin(url)[0] == "https"

    def _bearer_token(self, challenge: Challenge, repository: str) -> str:
        from urllib.parse import urlencode

        realm = challenge.params.get("realm", "")
        if not realm:
            raise RegistryError(
                f"{self.host}: Bearer challenge without realm", "check registry.url"
            )
        shown = http.display_url(realm)
        if self.credentials is not None and not self.may_receive_credentials(realm):
            raise RegistryAuthError(
                f"{self.host} asks for credentials at {shown}, which is neither the registry's "
                "own address nor https; imagebot sends credentials only to one of those",
                "serve the registry's token realm over https (or on the registry's own address)",
            )
        query = {"scope": challenge.params.get("scope") or f"repository:{repository}:pull"}
        if service := challenge.params.get("service"):
            query["service"] = service
        headers = {"Authorization": self.credentials.basic_header()} if self.credentials else {}
        separator = "&" if "?" in realm else "?"
        response = self._send("GET", f"{realm}{separator}{urlencode(query)}", headers)
        if response.status in (401, 403):
            raise self._status_error(response.status, "/token")
        if response.status != 200:
            raise RegistryError(f"token endpoint {shown} answered HTTP {response.status}")
        try:
            data = json.loads(response.body)
        except ValueError:
            raise RegistryError(f"token endpoint {shown} sent invalid JSON") from None
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not token:
            raise RegistryError(f"token endpoint {shown} sent no token")
        return str(token)

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], data: bytes | None = None
    ) -> http.Response:
        """One request through the one HTTP client; every error message is redacted."""
        # Uploads may be large: give them time in proportion (at least 10 MB/s).
        timeout = REQUEST_TIMEOUT + (len(data) / 10e6 if data else 0.0)
        try:
            return http.send(
                method, url, failure=RegistryError, headers=headers, data=data, timeout=timeout
            )
        except TransientError as exc:
            raise TransientError(self._redact(exc.message)) from None
        except RegistryError as exc:
            raise RegistryError(self._redact(exc.message), "check registry.url") from None

    def _redact(self, text: str) -> str:
        return self.credentials.redact(text) if self.credentials else redact(text)


def _error_detail(body: bytes) -> str:
    """PURE: the first error code/message of a registry's JSON error body, for messages."""
    try:
        errors = json.loads(body)["errors"]
        first = errors[0]
        return f": {first.get('code', '')} {str(first.get('message', ''))[:200]}".rstrip()
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""


def open_registry(
    config: Config,
    env: Mapping[str, str] | None = None,
    *,
    retry_for: float | None = None,
    on_retry: Callable[[str], None] | None = None,
) -> RegistryClient:
    """The configured registry with resolved credentials (env defaults to os.environ)."""
    env = os.environ if env is None else env
    return RegistryClient(
        host=config.registry.host,
        insecure=config.registry.insecure,
        credentials=resolve_credentials(config.registry, env),
        retry_seconds=retry_seconds(env) if retry_for is None else retry_for,
        on_retry=on_retry,
    )
