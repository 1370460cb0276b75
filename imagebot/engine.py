"""ADAPTER: the Docker engine.

Builds go through BuildKit via the docker CLI (docker-py cannot drive BuildKit:
docker/docker-py#2230). Everything else (inspect, tag, push, run) goes through the Docker SDK,
imported lazily so that commands which never touch the engine stay fast.

docker-py's push does not raise when the registry rejects it: errors arrive in-band as
`error`/`errorDetail` items (docker/docker-py#3161). `push_image` turns them into exceptions,
retries the transient ones and fails at once on 401/403.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagebot.errors import (
    ConfigError,
    EngineError,
    ImagebotError,
    RegistryAuthError,
    RegistryError,
    TransientError,
)
from imagebot.redaction import redact
from imagebot.registry import Credentials, classify_failure, with_retries
from imagebot.tags import ImageRef

if TYPE_CHECKING:
    from docker import DockerClient

    from imagebot.config import Config

DOCKER_CLI_ENV = "IMAGEBOT_DOCKER"
# Debian's docker.io 20.10 CLI has BuildKit built in; newer CLIs need the buildx plugin.
CLI_CANDIDATES = ("/usr/bin/docker", "docker")
ERROR_TAIL_LINES = 25
LineSink = Callable[[str], None]


def _ignore(_: str) -> None:
    return None


# --- the engine -----------------------------------------------------------------------------


def engine_hint(env: Mapping[str, str]) -> str:
    where = env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return f"start the engine (locally: scripts/stack up) or fix DOCKER_HOST (now {where})"


def docker_client(env: Mapping[str, str] | None = None) -> DockerClient:
    """A connected Docker SDK client; EngineError when no engine answers."""
    env = os.environ if env is None else env
    try:
        import docker
        import docker.errors
    except ImportError:  # pragma: no cover - docker is a hard dependency
        raise EngineError(
            "the docker Python package is not installed", "pip install docker"
        ) from None
    try:
        client = docker.from_env(environment=dict(env), timeout=120)
        client.ping()
    except Exception as exc:
        where = env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise EngineError(
            f"no Docker engine answers at {where}: {_first_line(exc)}", engine_hint(env)
        ) from None
    return client


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def find_buildkit_cli(env: Mapping[str, str] | None = None) -> str:
    """A docker CLI that can build with BuildKit: $IMAGEBOT_DOCKER, else the first that works.

    CLIs from 23.0 on delegate `docker build` to the buildx plugin, so they qualify only when
    `docker buildx version` succeeds; Debian's 20.10 CLI has BuildKit built in.
    """
    env = os.environ if env is None else env
    if override := env.get(DOCKER_CLI_ENV):
        return override
    tried: list[str] = []
    for candidate in CLI_CANDIDATES:
        path = (
            candidate if os.path.isabs(candidate) else shutil.which(candidate, path=env.get("PATH"))
        )
        if not path or not os.access(path, os.X_OK) or path in tried:
            continue
        tried.append(path)
        if _cli_has_buildkit(path):
            return path
    raise EngineError(
        f"no BuildKit-capable docker CLI found (tried: {', '.join(tried) or 'none on PATH'})",
        f"install Debian's docker.io (20.10) or the buildx plugin, or set {DOCKER_CLI_ENV}",
    )


def _cli_has_buildkit(path: str) -> bool:
    try:
        version = subprocess.run(
            [path, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False
    major = re.match(r"(\d+)\.", version)
    if major and int(major.group(1)) < 23:
        return True
    try:
        buildx = subprocess.run(
            [path, "buildx", "version"], capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return buildx.returncode == 0


# --- builds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    dockerfile: Path
    tags: tuple[str, ...]
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    cache_from: tuple[str, ...] = ()
    secrets: Mapping[str, Path] = field(default_factory=dict)  # BuildKit secret id -> file
    network: str | None = None
    no_cache: bool = False
    target: str | None = None  # a stage of the Dockerfile; None: the last


_LOOPBACK = re.compile(r"://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)")


def build_network(build_args: Mapping[str, str]) -> str | None:
    """PURE: a build arg pointing at a loopback URL (the local index) needs the host network."""
    return "host" if any(_LOOPBACK.search(v) for v in build_args.values()) else None


def check_build_args(build_args: Mapping[str, str], secrets: Sequence[str]) -> None:
    """Refuse build args that carry credentials: build args are visible in `docker history`."""
    for key, value in build_args.items():
        if re.search(r"://[^/\s@]+:[^/\s@]+@", value) or any(s and s in value for s in secrets):
            raise ConfigError(
                f"build arg {key} contains credentials",
                "build args end up in the image history; pass credentials as a BuildKit secret",
            )


def build_command(cli: str, request: BuildRequest) -> list[str]:
    """PURE: the `docker build` argv for a request."""
    argv = [cli, "build", "--progress", "plain", "-f", str(request.dockerfile)]
    for tag in request.tags:
        argv += ["-t", tag]
    for key in sorted(request.build_args):
        argv += ["--build-arg", f"{key}={request.build_args[key]}"]
    argv += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    for key in sorted(request.labels):
        argv += ["--label", f"{key}={request.labels[key]}"]
    for ref in request.cache_from:
        argv += ["--cache-from", ref]
    for secret_id in sorted(request.secrets):
        argv += ["--secret", f"id={secret_id},src={request.secrets[secret_id]}"]
    if request.network:
        argv += ["--network", request.network]
    if request.no_cache:
        argv.append("--no-cache")
    if request.target:
        argv += ["--target", request.target]
    argv.append(str(request.context))
    return argv


@contextmanager
def throwaway_docker_config(auths: Mapping[str, Credentials]) -> Iterator[str]:
    """A temporary DOCKER_CONFIG holding only the given registry auths; removed afterwards.

    The CLI needs credentials to pull `--cache-from` images, and the user's own docker config
    must never be written to. The directory is 0700 and the file 0600; both go on every way out
    of the block, an interrupt or a SIGTERM raised through it included.
    """
    directory = tempfile.mkdtemp(prefix="imagebot-docker-config-")
    try:
        os.chmod(directory, 0o700)
        entries = {
            host: {"auth": base64.b64encode(f"{c.username}:{c.password}".encode()).decode()}
            for host, c in auths.items()
        }
        path = Path(directory) / "config.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"auths": entries}, handle)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_build(
    request: BuildRequest,
    *,
    cli: str,
    env: Mapping[str, str],
    auths: Mapping[str, Credentials] | None = None,
    on_line: LineSink = _ignore,
) -> None:
    """Run the BuildKit build, streaming each output line to on_line. EngineError on failure."""
    secrets = [s for c in (auths or {}).values() for s in c.secrets()]
    check_build_args(request.build_args, secrets)
    argv = build_command(cli, request)
    tail: deque[str] = deque(maxlen=ERROR_TAIL_LINES)
    with throwaway_docker_config(auths or {}) as docker_config:
        build_env = {**env, "DOCKER_BUILDKIT": "1", "DOCKER_CONFIG": docker_config}
        try:
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=build_env,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            raise EngineError(f"cannot run {cli}: {exc}", f"set {DOCKER_CLI_ENV}") from None
        try:
            for raw in process.stdout or ():
                line = redact(raw.rstrip("\n"), secrets)
                tail.append(line)
                on_line(line)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): stop the build before its credentials go away.
            process.terminate()
            process.wait()
            raise
        code = process.wait()
    if code != 0:
        details = "\n".join(tail)
        if "Cannot connect to the Docker daemon" in details:
            raise EngineError(f"no Docker engine answers: {tail[-1]}", engine_hint(env))
        raise EngineError(
            f"docker build of {request.tags[0] if request.tags else request.dockerfile} failed "
            f"(exit {code}):\n{details}",
            "read the failing step above; fix the Dockerfile or the requirement that broke it",
        )


# --- images ---------------------------------------------------------------------------------


def local_image_id(client: DockerClient, ref: str) -> str | None:
    import docker.errors

    try:
        return str(client.images.get(ref).id)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot inspect {ref}: {_first_line(exc)}", "check the engine") from None


def resolve_ref(
    config: Config, text: str, env: Mapping[str, str] | None = None
) -> tuple[str, ImageRef]:
    """An image name from config (-> its content ref, base digest included) or a full
    reference (UsageError if bad)."""
    from imagebot import validate
    from imagebot.base_image import content_ref
    from imagebot.errors import UsageError

    if text in config.images:
        return text, content_ref(config, text, env)
    try:
        validate.image_reference(text)
    except validate.InvalidValue as exc:
        raise UsageError(f"image reference: {exc.message}", exc.hint) from None
    ref = ImageRef.parse(text)
    name = ref.name.rsplit("/", 1)[-1]
    return (name if name in config.images else ""), ref


@dataclass(frozen=True)
class LocalImage:
    image: str  # config image name, "" when the ref names no configured image
    ref: ImageRef
    client: DockerClient

    @property
    def engine_ref(self) -> str:
        """How the engine names it: name@digest when pinned (the engine has no name:tag@digest)."""
        return f"{self.ref.name}@{self.ref.digest}" if self.ref.digest else str(self.ref)


def local_image(config: Config, text: str, env: Mapping[str, str] | None = None) -> LocalImage:
    """Resolve a name or ref to an image in the local engine, pulling it when it is missing."""
    from imagebot.registry import resolve_credentials

    env = os.environ if env is None else env
    name, ref = resolve_ref(config, text, env)
    client = docker_client(env)
    pinned = f"{ref.name}@{ref.digest}" if ref.digest else str(ref)
    if local_image_id(client, pinned) is None:
        credentials = (
            resolve_credentials(config.registry, env)
            if ref.registry == config.registry.host
            else None
        )
        pull_image(client, ref, credentials)
    return LocalImage(name, ref, client)


def tag_image(client: DockerClient, source: str, target: ImageRef) -> None:
    import docker.errors

    try:
        client.api.tag(source, target.name, target.tag)
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot tag {source} as {target}: {_first_line(exc)}") from None


def _push_once(
    client: DockerClient, ref: ImageRef, credentials: Credentials | None, on_line: LineSink
) -> None:
    """One push attempt; in-band errors become classified exceptions (secrets redacted)."""
    import docker.errors
    import requests.exceptions

    secrets = list(credentials.secrets()) if credentials else []
    auth = credentials.auth_config() if credentials else None
    try:
        stream = client.api.push(ref.name, tag=ref.tag, auth_config=auth, stream=True, decode=True)
        for item in stream:
            if not isinstance(item, dict):
                continue
            if (message := _in_band_error(item)) is not None:
                raise _push_failure(ref, redact(message, secrets))
            status = item.get("status")
            if status and not item.get("progressDetail"):  # skip byte-count progress ticks
                on_line(f"{item.get('id', '')} {status}".strip())
    except docker.errors.APIError as exc:
        raise _push_failure(ref, redact(_first_line(exc), secrets)) from None
    except requests.exceptions.ConnectionError as exc:
        raise _lost_engine("pushing", ref, exc, secrets) from None


def _in_band_error(item: Mapping[str, Any]) -> str | None:
    """The error a push or pull stream reports in-band (docker-py does not raise it)."""
    if "error" not in item and "errorDetail" not in item:
        return None
    detail = item.get("errorDetail") or {}
    return str(item.get("error") or detail.get("message") or item)


def _lost_engine(action: str, ref: ImageRef, exc: BaseException, secrets: list[str]) -> EngineError:
    return EngineError(
        f"lost the Docker engine while {action} {ref}: {redact(_first_line(exc), secrets)}",
        "check that the engine is still running (locally: scripts/stack status)",
    )


def _push_failure(ref: ImageRef, message: str) -> ImagebotError:
    kind = classify_failure(message)
    if kind is RegistryAuthError:
        return RegistryAuthError(
            f"registry refused the push of {ref}: {message}",
            "check the registry credentials and that the account may push to this repository",
        )
    if "does not exist" in message or "No such image" in message:
        return EngineError(f"cannot push {ref}: {message}", "build it first: imagebot build")
    if kind is TransientError:
        return TransientError(f"push of {ref} failed: {message}")
    return RegistryError(f"push of {ref} failed: {message}", "see the registry's message above")


def push_image(
    client: DockerClient,
    ref: ImageRef,
    credentials: Credentials | None,
    *,
    retry_seconds: float,
    on_line: LineSink = _ignore,
    on_retry: LineSink = _ignore,
) -> None:
    """Push ref (which must exist locally), retrying transient faults for <= retry_seconds."""
    with_retries(
        lambda: _push_once(client, ref, credentials, on_line),
        seconds=retry_seconds,
        what=f"pushing {ref}",
        on_retry=on_retry,
    )


def pull_image(client: DockerClient, ref: ImageRef, credentials: Credentials | None) -> None:
    """Pull ref into the engine; in-band errors become exceptions (no retries: callers decide)."""
    import docker.errors
    import requests.exceptions

    secrets = list(credentials.secrets()) if credentials else []
    auth = credentials.auth_config() if credentials else None
    reference = ref.digest or ref.tag or "latest"
    try:
        for item in client.api.pull(
            ref.name, tag=reference, auth_config=auth, stream=True, decode=True
        ):
            if isinstance(item, dict) and (message := _in_band_error(item)) is not None:
                raise _pull_failure(ref, redact(message, secrets))
    except docker.errors.APIError as exc:
        raise _pull_failure(ref, redact(_first_line(exc), secrets)) from None
    except requests.exceptions.ConnectionError as exc:
        raise _lost_engine("pulling", ref, exc, secrets) from None


def _pull_failure(ref: ImageRef, message: str) -> ImagebotError:
    if classify_failure(message) is RegistryAuthError:
        return RegistryAuthError(
            f"registry refused the pull of {ref}: {message}", "check credentials"
        )
    if "not found" in message or "manifest unknown" in message:
        return RegistryError(f"{ref} does not exist: {message}", "check the image name and tag")
    return RegistryError(f"cannot pull {ref}: {message}", "check that the registry is reachable")


# --- containers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    output: str


def run_container(
    client: DockerClient,
    image: str,
    command: Sequence[str],
    *,
    timeout: float,
    environment: Mapping[str, str] | None = None,
    files: Mapping[str, bytes] | None = None,
    network: str | None = "none",
    user: str | None = None,
) -> RunResult:
    """Run command in a fresh container of image; stdout+stderr and the exit code.

    `files` are copied into the container (path -> bytes) before it starts, so a generated
    script can run without a bind mount. The container is always removed.
    """
    import docker.errors
    import requests.exceptions

    container = _created_container(client, image, command, environment, network, user)
    try:
        _copy_and_start(container, files)
        try:
            status = container.wait(timeout=timeout)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            container.kill()
            output = container.logs().decode(errors="replace")
            raise EngineError(
                f"{image}: `{' '.join(command)}` did not finish within {timeout:.0f}s",
                f"last output: {output[-500:]}",
            ) from None
        output = container.logs().decode(errors="replace")
        return RunResult(int(status.get("StatusCode", 1)), output)
    finally:
        with suppress(docker.errors.APIError):
            container.remove(force=True)


def run_and_collect(
    client: DockerClient,
    image: str,
    command: Sequence[str],
    collect: str,
    *,
    timeout: float,
    environment: Mapping[str, str] | None = None,
    files: Mapping[str, bytes] | None = None,
    network: str | None = "none",
    user: str | None = None,
) -> tuple[RunResult, bytes]:
    """Like run_container, then the tar archive of `collect` as the container left it
    (b"" when the command failed). The container is always removed."""
    import docker.errors

    container = _created_container(client, image, command, environment, network, user)
    try:
        _copy_and_start(container, files)
        status = container.wait(timeout=timeout)
        output = container.logs().decode(errors="replace")
        result = RunResult(int(status.get("StatusCode", 1)), output)
        if result.exit_code != 0:
            return result, b""
        stream, _ = container.get_archive(collect)
        return result, b"".join(stream)
    except docker.errors.APIError as exc:
        raise EngineError(f"{image}: {_first_line(exc)}", "check the engine") from None
    finally:
        with suppress(docker.errors.APIError):
            container.remove(force=True)


def _created_container(
    client: DockerClient,
    image: str,
    command: Sequence[str],
    environment: Mapping[str, str] | None,
    network: str | None,
    user: str | None,
) -> Any:
    """A created, not yet started, container of image that will run command."""
    import docker.errors

    try:
        return client.containers.create(
            image,
            list(command),
            environment=dict(environment or {}),
            network_mode=network,
            user=user,
            detach=True,
        )
    except docker.errors.ImageNotFound:
        raise EngineError(f"image {image} is not in the engine", "build or pull it first") from None
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot create a container of {image}: {_first_line(exc)}") from None


def _copy_and_start(container: Any, files: Mapping[str, bytes] | None) -> None:
    """Copy `files` (path -> bytes) into the container, then start it."""
    for path, data in (files or {}).items():
        container.put_archive(os.path.dirname(path) or "/", _tar_one(path, data))
    container.start()


def _tar_one(path: str, data: bytes) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(os.path.basename(path))
        info.size = len(data)
        info.mode = 0o755
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
