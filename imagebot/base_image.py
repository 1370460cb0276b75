"""ADAPTER: which base image a build starts from, resolved to a digest at build time.

The base's digest is an input of the content tag and an OCI label, so a new base pushed under
the same tag (a Debian security update in python:3.11-slim-bookworm) makes a new tag, and the
next release rebuilds. An image that exists only in the local engine (built there, never
pulled: the local stack's debootstrapped base) is identified by its image ID. Otherwise the
registry that serves the base is asked (one HEAD of its manifest, anonymous unless it is
imagebot's own registry), then the engine's pulled copy. When nothing answers, the tag leaves
the digest out and the build says so; the build itself then needs the base anyway. One lookup
per base and process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imagebot import validate
from imagebot.errors import ConfigError, EngineError, RegistryAuthError, RegistryError, UsageError
from imagebot.tags import ImageRef, dockerfile_instructions, image_ref

if TYPE_CHECKING:
    from imagebot.config import Config

LOOKUP_SECONDS = 5.0
BASE_DIGEST_LABEL = "org.opencontainers.image.base.digest"


@dataclass(frozen=True)
class BaseImage:
    reference: str  # as configured, e.g. docker.io/library/python:3.11-slim-bookworm
    digest: str | None  # sha256:... (a manifest digest, or the local image ID); None: unknown
    pinned: str | None  # reference@digest to build from, when the digest came from a registry


_RESOLVED: dict[tuple[str, str], BaseImage] = {}


def base_reference(config: Config, image_name: str) -> str | None:
    """BASE_IMAGE from the build args, else the configured base, else the Dockerfile's default."""
    image = config.image(image_name)
    if reference := image.build_args.get("BASE_IMAGE") or image.base:
        return reference
    try:
        text = (config.root / image.dockerfile).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for instruction, args in dockerfile_instructions(text):
        if instruction == "ARG" and args.startswith("BASE_IMAGE="):
            return args.split("=", 1)[1].strip().strip("\"'") or None
        if instruction == "FROM":
            word = args.split()[0]
            return None if "$" in word else word
    return None


def resolve(config: Config, image_name: str, env: Mapping[str, str] | None = None) -> BaseImage:
    """The base image of `image_name` and its digest now (None when nothing answers)."""
    env = os.environ if env is None else env
    reference = base_reference(config, image_name)
    if not reference:
        return BaseImage("", None, None)
    if reference == config.image(image_name).build_args.get("BASE_IMAGE"):
        try:
            validate.image_reference(reference)
        except validate.InvalidValue as exc:
            raise ConfigError(
                f"{config.path.name}: images.{image_name}.build_args.BASE_IMAGE: {exc.message}",
                exc.hint,
            ) from None
    key = (reference, config.registry.host)
    if key not in _RESOLVED:
        _RESOLVED[key] = _lookup(config, reference, env)
    return _RESOLVED[key]


def content_ref(config: Config, image_name: str, env: Mapping[str, str] | None = None) -> ImageRef:
    """The content-tag ref of a configured image, its base's digest included."""
    return image_ref(config, image_name, base_digest=resolve(config, image_name, env).digest)


def _lookup(config: Config, reference: str, env: Mapping[str, str]) -> BaseImage:
    try:
        ref = ImageRef.parse(reference)
    except UsageError:  # e.g. a reference with a variable in it: BuildKit resolves it, not us
        return BaseImage(reference, None, None)
    local = _local_image(reference, env)
    if local is not None and not local[1]:
        return BaseImage(reference, local[0], None)  # built here, never pulled: its ID
    digest = _registry_digest(config, ref, env)
    if digest is not None:
        return BaseImage(reference, digest, f"{ref.name}@{digest}")
    if local is not None:
        return BaseImage(reference, local[1][0].split("@", 1)[1], None)
    return BaseImage(reference, None, None)


def _local_image(reference: str, env: Mapping[str, str]) -> tuple[str, list[str]] | None:
    """(image ID, repo digests) of the engine's image, or None when it has none."""
    import docker.errors

    from imagebot.engine import docker_client

    try:
        attrs = docker_client(env).images.get(reference).attrs
    except docker.errors.ImageNotFound:
        return None
    except (docker.errors.APIError, EngineError):
        return None
    return str(attrs["Id"]), [str(d) for d in attrs.get("RepoDigests") or ()]


def _registry_digest(config: Config, ref: ImageRef, env: Mapping[str, str]) -> str | None:
    from imagebot.registry import RegistryClient, open_registry

    try:
        if ref.registry == config.registry.host:
            client = open_registry(config, env, retry_for=LOOKUP_SECONDS)
        else:
            # One attempt: an unreachable registry falls back to the engine's copy.
            host = "registry-1.docker.io" if ref.registry == "docker.io" else ref.registry
            client = RegistryClient(host, False, None, retry_seconds=0.0)
            ref = ImageRef(f"{host}/{ref.repository}", ref.tag, ref.digest)
        return client.digest(ref)
    except (RegistryError, RegistryAuthError):
        return None
