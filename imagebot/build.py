"""Orchestration of `imagebot build` and `imagebot push`: returns result dataclasses, no printing.

Per image: resolve the base image's digest and compute the content tag; skip when the registry
already has it (unless forced). A rendered image (a Dockerfile with a `system` stage) is built
in two parts when the registry is at hand: BuildKit builds the system stage (inline cache,
`--cache-from <repo>:system`), which is pushed; then `imagebot.assemble` lays the locked
Python packages on it at the registry, a deterministic layer per package or group, reusing
every layer the last assembly made, and pulls the result into the engine under the content
tag. Any other image, or any image without a registry, is built from its Dockerfile as is
(`--cache-from <repo>:cache`). With push, the content tag and the cache tag are pushed and the
digest read back from the registry. Progress goes to a `Reporter` supplied by the command layer.
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

    from imagebot.base_image import BaseImage
    from imagebot.config import Config, ImageConfig
    from imagebot.engine import BuildRequest
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
    return [
        _build_one(config, name, options, env, reporter, registry, lookup, session)
        for name in names
    ]


def _build_one(
    config: Config,
    name: str,
    options: BuildOptions,
    env: Mapping[str, str],
    reporter: Reporter,
    registry: RegistryClient | None,
    lookup: RegistryClient | None,
    session: _EngineSession,
) -> ImageOutcome:
    """Build (and with options.push, push) one image, unless the registry has its tag already.
    `lookup` is the registry with the short retry budget of a lookup."""
    from imagebot.base_image import resolve

    start = time.monotonic()
    base = resolve(config, name, env)
    if base.digest is None:
        reporter.note(
            f"cannot resolve the base image {base.reference or '(unknown)'} to a digest; "
            "the content tag leaves it out"
        )
    ref = image_ref(config, name, base.digest)
    existing = None
    if not options.force:
        existing = _lookup(
            registry if options.push else lookup, ref, strict=options.push, reporter=reporter
        )
    if existing:
        reporter.note(f"{ref} is already in the registry; nothing to build (--force rebuilds)")
        return ImageOutcome(name, ref.with_digest(existing), False, False, time.monotonic() - start)
    build = _Build(config, config.image(name), ref, base, options, session, reporter)
    with reporter.stage(f"build {ref}"):
        if registry is not None and build.assembled():
            build.assembled_image(registry)
        else:
            if build.assembled():
                reporter.note("no registry to assemble at: building the Dockerfile as is")
            cache = _lookup(lookup, cache_ref(ref), strict=False, reporter=QuietReporter())
            build.whole_dockerfile(bool(cache))
    pushed_ref = ref
    if options.push and registry is not None:
        with reporter.stage(f"push {ref}"):
            pushed_ref = _push_and_verify(session, registry, ref, reporter)
    return ImageOutcome(name, pushed_ref, True, options.push, time.monotonic() - start)


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
    targets = [resolve_ref(config, text, env) for text in texts or list(config.images)]
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


class _Build:
    """One image's build: the whole Dockerfile, or the system stage plus assembled packages."""

    def __init__(
        self,
        config: Config,
        image: ImageConfig,
        ref: ImageRef,
        base: BaseImage,
        options: BuildOptions,
        session: _EngineSession,
        reporter: Reporter,
    ) -> None:
        self.config, self.image, self.ref, self.base = config, image, ref, base
        self.options, self.session, self.reporter = options, session, reporter

    def assembled(self) -> bool:
        from imagebot.assemble import is_assembled
        from imagebot.files import read_text

        return is_assembled(read_text(self.config.root / self.image.dockerfile))

    def labels(self) -> dict[str, str]:
        from imagebot.base_image import BASE_DIGEST_LABEL
        from imagebot.gitops import source_revision

        revision = source_revision(self.config.root, self.session.env)
        labels = oci_labels(self.config, self.ref.tag or "", revision, datetime.now(UTC))
        if self.base.digest:
            labels[BASE_DIGEST_LABEL] = self.base.digest
        return labels

    def request(
        self, tags: Sequence[ImageRef], cache_from: ImageRef | None, **extra: object
    ) -> BuildRequest:
        from imagebot.engine import BuildRequest, build_network

        build_args = dict(self.image.build_args)
        if self.base.pinned:
            build_args["BASE_IMAGE"] = self.base.pinned  # exactly the base the tag was made of
        ca_bundle = ca_bundle_path(self.options, self.session.env)
        return BuildRequest(
            context=(self.config.root / self.image.context).resolve(),
            dockerfile=(self.config.root / self.image.dockerfile).resolve(),
            tags=tuple(str(t) for t in tags),
            build_args=build_args,
            cache_from=(str(cache_from),) if cache_from else (),
            secrets={CA_SECRET_ID: ca_bundle} if ca_bundle else {},
            network=build_network(self.image.build_args),
            no_cache=self.options.no_cache,
            **extra,  # type: ignore[arg-type]
        )

    def run(self, request: BuildRequest, with_registry: bool) -> None:
        from imagebot.engine import run_build
        from imagebot.registry import resolve_credentials

        self.session.ensure_engine()
        registry = self.config.registry
        credentials = resolve_credentials(registry, self.session.env) if with_registry else None
        auths = {registry.host: credentials} if credentials else {}
        run_build(
            request,
            cli=self.session.cli,
            env=self.session.env,
            auths=auths,
            on_line=self.reporter.line,
        )

    def whole_dockerfile(self, use_cache_from: bool) -> None:
        cache_from = cache_ref(self.ref) if use_cache_from else None
        tags = (self.ref, cache_ref(self.ref))
        self.run(self.request(tags, cache_from, labels=self.labels()), use_cache_from)

    def assembled_image(self, registry: RegistryClient) -> None:
        """Build and push the system stage; lay the packages on it (imagebot.assemble)."""
        from imagebot.assemble import SYSTEM_TAG, assemble
        from imagebot.engine import build_network, push_image
        from imagebot.render import SYSTEM_STAGE, VENV

        system = ImageRef(self.ref.name, SYSTEM_TAG)
        known = _lookup(registry, system, strict=False, reporter=QuietReporter())
        self.run(
            self.request((system,), system if known else None, target=SYSTEM_STAGE), bool(known)
        )
        push_image(
            self.session.client,
            system,
            registry.credentials,
            retry_seconds=registry.retry_seconds,
            on_line=self.reporter.line,
            on_retry=self.reporter.note,
        )
        digest = registry.digest(system)
        if digest is None:
            raise RegistryError(f"the registry lost {system} right after its push", "push again")
        assemble(
            client=self.session.client,
            registry=registry,
            credentials=registry.credentials,
            config=self.config,
            image_name=self.image.name,
            ref=self.ref,
            system=system.with_digest(digest),
            installed_on=f"{self.base.digest or self.base.reference} {VENV}",
            labels=self.labels(),
            ca_bundle=ca_bundle_path(self.options, self.session.env),
            network=build_network(self.image.build_args),
            reporter=self.reporter,
            reuse=not self.options.no_cache,
        )


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
