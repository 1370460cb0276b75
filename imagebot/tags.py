"""Image references and content tags.

`ImageRef` and `tag_from_inputs` are pure; `build_inputs` reads the files a build consumes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from imagebot import validate
from imagebot.errors import ConfigError, UsageError
from imagebot.files import Unreadable, read_text

if TYPE_CHECKING:
    from imagebot.config import Config

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ImageRef:
    """`name[:tag][@digest]`, where name includes the registry host and path.

    `name` is everything before the tag, e.g. `europe-north1-docker.pkg.dev/p/jupyter/jupyterlab`
    or `127.0.0.1:5555/jupyter/jupyterlab`.
    """

    name: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        original = text
        text = text.strip()
        digest = None
        if "@" in text:
            text, digest = text.split("@", 1)
            if not _DIGEST.match(digest):
                raise UsageError(
                    f"image reference {original!r} has a malformed digest {digest!r}",
                    "a digest is sha256: followed by 64 lowercase hex characters",
                )
        tag = None
        last = text.rsplit("/", 1)[-1]
        if ":" in last:
            text, tag = text.rsplit(":", 1)
            if not _TAG.match(tag):
                raise UsageError(
                    f"image reference {original!r} has an invalid tag {tag!r}",
                    "tags are up to 128 of A-Z a-z 0-9 _ . - and do not start with . or -",
                )
        ref = cls(text, tag, digest)
        try:
            validate.image_reference(str(ref))
        except validate.InvalidValue as exc:
            raise UsageError(exc.message, exc.hint) from None
        return ref

    @property
    def registry(self) -> str:
        """The registry host, or docker.io for short names."""
        first = self.name.split("/", 1)[0]
        if "/" in self.name and ("." in first or ":" in first or first == "localhost"):
            return first
        return "docker.io"

    @property
    def repository(self) -> str:
        """The path inside the registry (no host)."""
        if self.registry == "docker.io" and not self.name.startswith("docker.io/"):
            path = self.name
            return path if "/" in path else f"library/{path}"
        return self.name.split("/", 1)[1]

    def with_tag(self, tag: str | None) -> ImageRef:
        return replace(self, tag=tag)

    def with_digest(self, digest: str | None) -> ImageRef:
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


# --- content tags ---------------------------------------------------------------------------
#
# A tag is a hash of everything that goes into the build, so the same inputs always give the
# same tag on any machine (shallow CI clones included) and an existing tag means "already
# built". Inputs: the Dockerfile bytes, the build args, each requirement set file and its lock,
# and every context file the Dockerfile COPYs, ADDs or bind-mounts.

TAG_LENGTH = 16
CONTEXT_EXCLUDES = frozenset({".git", ".local", "__pycache__", ".mypy_cache", ".ruff_cache"})

_INSTRUCTION = re.compile(r"^\s*([A-Za-z]+)\s+(.*)$", re.DOTALL)
_ARG = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[-+][^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class BuildInput:
    """One named input of a build: a path relative to the context (or a pseudo-name) and bytes."""

    name: str
    data: bytes


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        if match := _INSTRUCTION.match(pending):
            instructions.append((match.group(1).upper(), match.group(2).strip()))
        pending = ""
    if pending and (match := _INSTRUCTION.match(pending)):
        instructions.append((match.group(1).upper(), match.group(2).strip()))
    return instructions


def _substitute(text: str, variables: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    return _VARIABLE.sub(sub, text)


def _split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """`--from=x --chown=y a b c` -> ({'from': 'x', 'chown': 'y'}, ['a', 'b', 'c'])."""
    import json
    import shlex

    flags: dict[str, str] = {}
    words = shlex.split(args, posix=True) if not args.lstrip().startswith("[") else []
    if args.lstrip().startswith("["):
        try:
            words = [str(w) for w in json.loads(args)]
        except ValueError:
            words = args.split()
    rest: list[str] = []
    for word in words:
        if word.startswith("--") and not rest:
            key, _, value = word[2:].partition("=")
            flags[key] = value
        else:
            rest.append(word)
    return flags, rest


def _mount_sources(run_args: str) -> list[str]:
    """Context paths of `RUN --mount=type=bind,...` without from= (source defaults to '.')."""
    sources: list[str] = []
    for match in re.finditer(r"--mount=(\S+)", run_args):
        options = {
            key: value for key, _, value in (p.partition("=") for p in match.group(1).split(","))
        }
        if options.get("type", "bind") == "bind" and "from" not in options:
            sources.append(options.get("source", options.get("src", ".")))
    return sources


def context_sources(dockerfile_text: str, build_args: Mapping[str, str]) -> list[str]:
    """Every context path the Dockerfile reads: COPY/ADD sources and bind-mount sources.

    ARG defaults and build args are substituted; stage copies (--from) and ADD URLs are not
    context files and are skipped.
    """
    variables: dict[str, str] = {}
    sources: list[str] = []
    for instruction, args in dockerfile_instructions(dockerfile_text):
        if instruction == "ARG":
            for word in args.split():
                if match := _ARG.match(word):
                    name, default = match.group(1), match.group(2)
                    if name in build_args:
                        variables[name] = build_args[name]
                    elif default is not None:
                        variables[name] = default.strip("\"'")
        elif instruction in ("COPY", "ADD"):
            flags, words = _split_flags(args)
            if "from" in flags or len(words) < 2:
                continue
            for source in words[:-1]:
                if "://" not in source and not source.startswith("git@"):
                    sources.append(_substitute(source, variables))
        elif instruction == "RUN":
            sources.extend(_substitute(s, variables) for s in _mount_sources(args))
    return sources


def _expand_source(context: Path, source: str) -> list[Path]:
    """The files a COPY source names: a file, a directory (recursively) or a glob."""
    relative = source.lstrip("/") or "."
    if any(ch in relative for ch in "*?["):
        matches = sorted(context.glob(relative))
    else:
        matches = [context / relative]
    files: list[Path] = []
    for match in matches:
        if match.is_dir():
            files.extend(
                p
                for p in sorted(match.rglob("*"))
                if p.is_file() and not CONTEXT_EXCLUDES.intersection(p.relative_to(context).parts)
            )
        elif match.is_file():
            files.append(match)
    return files


def context_inputs(context: Path, sources: Sequence[str]) -> list[BuildInput]:
    """Read the files behind COPY/ADD/mount sources; a missing source becomes a marked input."""
    inputs: dict[str, BuildInput] = {}
    for source in sources:
        files = _expand_source(context, source)
        if not files:
            # The build will fail on it anyway; hash the name so the tag is still defined.
            inputs[f"missing:{source}"] = BuildInput(f"missing:{source}", b"")
        for path in files:
            name = path.relative_to(context).as_posix()
            mode = b"x" if os.access(path, os.X_OK) else b"-"
            inputs[name] = BuildInput(name, mode + path.read_bytes())
    return [inputs[name] for name in sorted(inputs)]


def tag_from_inputs(inputs: Sequence[BuildInput], build_args: Mapping[str, str]) -> str:
    """PURE: the content tag of a set of named inputs and build args."""
    digest = hashlib.sha256()
    digest.update(b"imagebot-content-tag-v1\n")
    for key in sorted(build_args):
        digest.update(f"arg {key}={build_args[key]}\n".encode())
    for item in sorted(inputs, key=lambda i: i.name):
        digest.update(f"file {item.name} {hashlib.sha256(item.data).hexdigest()}\n".encode())
    return digest.hexdigest()[:TAG_LENGTH]


def build_inputs(config: Config, image_name: str) -> list[BuildInput]:
    """Every input of an image's build, read from disk (Dockerfile, sets, locks, context)."""
    image = config.image(image_name)
    context = (config.root / image.context).resolve()
    dockerfile = config.root / image.dockerfile
    try:
        text = read_text(dockerfile)
    except Unreadable as exc:
        raise ConfigError(
            f"images.{image_name}.dockerfile: {image.dockerfile} "
            + ("does not exist" if exc.missing else exc.reason),
            "run `imagebot render` for rendered images, or fix the path in imagebot.toml",
        ) from None
    inputs = [BuildInput("Dockerfile", text.encode())]
    for set_name in image.sets:
        for suffix in (".toml", ".lock"):
            path = config.requirements_dir / f"{set_name}{suffix}"
            data = path.read_bytes() if path.is_file() else b"<missing>"
            inputs.append(BuildInput(f"set:{set_name}{suffix}", data))
    inputs.extend(context_inputs(context, context_sources(text, image.build_args)))
    return inputs


def content_tag(config: Config, image_name: str, base_digest: str | None = None) -> str:
    """The content tag of an image: equal inputs give equal tags on every machine.

    `base_digest` is the base image's digest resolved at build time (`imagebot.base_image`),
    so a new base under the same tag is a new content tag.
    """
    image = config.image(image_name)
    inputs = build_inputs(config, image_name)
    if base_digest is not None:
        inputs.append(BuildInput("base-image-digest", base_digest.encode()))
    return tag_from_inputs(inputs, image.build_args)


def image_ref(config: Config, image_name: str, base_digest: str | None = None) -> ImageRef:
    """`<registry.url>/<image name>:<content tag>`."""
    tag = content_tag(config, image_name, base_digest)
    return ImageRef(f"{config.registry.url}/{image_name}", tag)
