"""Orchestration of `imagebot build` and `imagebot push`: returns result dataclasses, no printing.

Per image: compute the content tag; skip when the registry already has it (unless forced);
otherwise build with BuildKit, inline cache and `--cache-from` the last pushed build
(`<repo>:cache`); with push, push the content tag and the cache tag, then read the digest back
from the registry. Progress goes to a `Reporter` supplied by the command layer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from imagebot.errors import RegistryAuthError, RegistryError
from imagebot.tags import ImageRef, image_ref

if TYPE_CHECKING:
    from docker import DockerClient

    from imagebot.config import Config, ImageConfig
    from imagebot.registry import RegistryClient

CACHE_TAG = "cache"
CA_BUNDLE_ENV = "IMAGEBOT_CA_BUNDLE"
DEFAULT_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_SECRET_ID = "ca-certificates"
# Looking a tag up only to decide whether to build must not stall a local build for a minute.
LOOKUP_RETRY_SECONDS = 5.0


class Reporter(Protocol):
    def stage(self, title: str) -> AbstractContextManager[None]: ...

    def line(self, text: str) -> None: ...

    def note(self, text: str) -> None: ...


class QuietReporter:
    """A Reporter that drops everything (library callers, tests)."""

    @contextmanager
    def stage(self, title: str) -> Iterator[None]:
        yield

    def line(self, text: str) -> None:
        return None

    def note(self, text: str) -> None:
        return None


@dataclass(frozen=True)
class BuildOptions:
    force: bool = False
    push: bool = False
    no_cache: bool = False
    ca_bundle: Path | None = None  # None: $IMAGEBOT_CA_BUNDLE, else the system bundle


@dataclass(frozen=True)
class ImageOutcome:
    image: str  # config image name ("" for a bare ref)
    ref: ImageRef  # with digest when it is known to be in the registry
    built: bool
    pushed: bool
    seconds: float
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "image": self.image,
            "ref": str(self.ref.with_digest(None)),
            "digest": self.ref.digest,
            "built": self.built,
            "pushed": self.pushed,
            "seconds": round(self.seconds, 1),
        }


def cache_ref(ref: ImageRef) -> ImageRef:
    """The moving tag pushed alongside every build; the next build's `--cache-from`."""
    return ImageRef(ref.name, CACHE_TAG)


def oci_labels(config: Config, tag: str, revision: str, created: datetime) -> dict[str, str]:
    """PURE: the OCI annotations recorded on every image."""
    return {
        "org.opencontainers.image.created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": config.source,
        "org.opencontainers.image.version": tag,
    }


def ca_bundle_path(options: BuildOptions, env: Mapping[str, str]) -> Path | None:
    path = options.ca_bundle or Path(env.get(CA_BUNDLE_ENV) or DEFAULT_CA_BUNDLE)
    return path if path.is_file() else None


def _lookup(
    registry: RegistryClient | None, ref: ImageRef, *, strict: bool, reporter: Reporter
) -> str | None:
    """The digest of ref, or None; when not strict, registry trouble is a note, not a failure."""
    if registry is None:
        return None
    try:
        return registry.digest(ref)
    except (RegistryError, RegistryAuthError) as exc:
        if strict:
            raise
        reporter.note(f"cannot check {ref} in the registry ({exc.message}); building anyway")
        return None


def _open_for_build(
    config: Config, env: Mapping[str, str], options: BuildOptions, reporter: Reporter
) -> RegistryClient | None:
    """The registry; without --push a build does not need it (no skip, no --cache-from)."""
    from imagebot.registry import open_registry

    try:
        return open_registry(config, env, on_retry=reporter.note)
    except RegistryAuthError as exc:
        if options.push:
            raise
        reporter.note(f"no registry credentials ({exc.message}); building without the registry")
        return None


def build_images(
    config: Config,
    names: Sequence[str],
    options: BuildOptions,
    *,
    env: Mapping[str, str] | None = None,
    reporter: Reporter | None = None,
) -> list[ImageOutcome]:
    """Build (and with options.push, push) each named image; see the module docstring."""
    env = os.environ if env is None else env
    reporter = reporter or QuietReporter()
    names = list(names) or list(config.images)
    for name in names:
        config.image(name)  # fail on an unknown name before doing any work
    registry = _open_for_build(config, env, options, reporter)
    lookup = registry and replace(
        registry, retry_seconds=min(registry.retry_seconds, LOOKUP_RETRY_SECONDS)
    )
    session = _EngineSession(env)
    outcomes = []
    for name in names:
        start = time.monotonic()
        ref = image_ref(config, name)
        existing = None
        if not options.force:
            existing = _lookup(
                registry if options.push else lookup, ref, strict=options.push, reporter=reporter
            )
        if existing:
            reporter.note(f"{ref} is already in the registry; nothing to build (--force rebuilds)")
            outcomes.append(
                ImageOutcome(
                    name, ref.with_digest(existing), False, False, time.monotonic() - start
                )
            )
            continue
        cache_from = _lookup(lookup, cache_ref(ref), strict=False, reporter=QuietReporter())
        with reporter.stage(f"build {ref}"):
            _build_one(
                config, config.image(name), ref, options, session, bool(cache_from), reporter
            )
        pushed_ref = ref
        if options.push and registry is not None:
            with reporter.stage(f"push {ref}"):
                pushed_ref = _push_and_verify(session, registry, ref, reporter)
        outcomes.append(
            ImageOutcome(name, pushed_ref, True, options.push, time.monotonic() - start)
        )
    return outcomes


def push_refs(
    config: Config,
    texts: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    reporter: Reporter | None = None,
) -> list[ImageOutcome]:
    """Push already-built images (names from config, or refs) and read their digests back."""
    from imagebot.engine import resolve_ref
    from imagebot.registry import open_registry

    env = os.environ if env is None else env
    reporter = reporter or QuietReporter()
    # Every reference is checked before the registry or the engine is touched.
    targets = [resolve_ref(config, text) for text in texts or list(config.images)]
    registry = open_registry(config, env, on_retry=reporter.note)
    session = _EngineSession(env)
    outcomes = []
    for name, ref in targets:
        start = time.monotonic()
        with reporter.stage(f"push {ref}"):
            pushed = _push_and_verify(session, registry, ref, reporter)
        outcomes.append(ImageOutcome(name, pushed, False, True, time.monotonic() - start))
    return outcomes


class _EngineSession:
    """The engine client and BuildKit CLI, found once and only when first needed."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self._client: DockerClient | None = None
        self._cli: str | None = None

    @property
    def client(self) -> DockerClient:
        if self._client is None:
            from imagebot.engine import docker_client

            self._client = docker_client(self.env)
        return self._client

    def ensure_engine(self) -> None:
        """Fail with a clear "no engine" error before the CLI fails with its own."""
        _ = self.client

    @property
    def cli(self) -> str:
        if self._cli is None:
            from imagebot.engine import find_buildkit_cli

            self._cli = find_buildkit_cli(self.env)
        return self._cli


def _build_one(
    config: Config,
    image: ImageConfig,
    ref: ImageRef,
    options: BuildOptions,
    session: _EngineSession,
    use_cache_from: bool,
    reporter: Reporter,
) -> None:
    from imagebot.engine import BuildRequest, build_network, run_build
    from imagebot.gitops import source_revision
    from imagebot.registry import resolve_credentials

    session.ensure_engine()
    ca_bundle = ca_bundle_path(options, session.env)
    request = BuildRequest(
        context=(config.root / image.context).resolve(),
        dockerfile=(config.root / image.dockerfile).resolve(),
        tags=(str(ref), str(cache_ref(ref))),
        build_args=dict(image.build_args),
        labels=oci_labels(
            config, ref.tag or "", source_revision(config.root, session.env), datetime.now(UTC)
        ),
        cache_from=(str(cache_ref(ref)),) if use_cache_from else (),
        secrets={CA_SECRET_ID: ca_bundle} if ca_bundle else {},
        network=build_network(image.build_args),
        no_cache=options.no_cache,
    )
    credentials = resolve_credentials(config.registry, session.env) if use_cache_from else None
    auths = {config.registry.host: credentials} if credentials else {}
    run_build(request, cli=session.cli, env=session.env, auths=auths, on_line=reporter.line)


def _push_and_verify(
    session: _EngineSession, registry: RegistryClient, ref: ImageRef, reporter: Reporter
) -> ImageRef:
    """Push ref and its cache tag; return ref with the digest the registry reports."""
    from imagebot.engine import local_image_id, push_image, tag_image

    image_id = local_image_id(session.client, str(ref))
    if image_id is None:
        from imagebot.errors import EngineError

        raise EngineError(f"{ref} is not in the local engine", "build it first: imagebot build")
    for target in (ref, cache_ref(ref)):
        if target != ref:
            tag_image(session.client, image_id, target)
        push_image(
            session.client,
            target,
            registry.credentials,
            retry_seconds=registry.retry_seconds,
            on_line=reporter.line,
            on_retry=reporter.note,
        )
    digest = registry.digest(ref)
    if digest is None:
        raise RegistryError(
            f"the engine reported {ref} pushed, but the registry does not have it",
            "check the registry's storage and logs, then push again",
        )
    return ref.with_digest(digest)
