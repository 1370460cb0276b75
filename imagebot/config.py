"""imagebot.toml -> frozen dataclasses, validated all at once.

`load_config(path, profile, env)` is the only entry point. The environment is injected so that
tests never depend on the caller's shell: string values may use `${VAR}` or `${VAR:-default}`,
which is how the pipeline maps secret variables and service connections onto config.

A profile (`[profiles.NAME]`) is a partial config deep-merged over the top level. The local
stack uses `--profile local`, so the production settings are never edited to run locally.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagebot.errors import ConfigError, Problem, ProblemsError

CONFIG_FILE = "imagebot.toml"
AUTH_MODES = ("auto", "google", "basic", "docker-config")
R_SOURCES = ("debian", "cran")


class ConfigProblems(ProblemsError):
    exit_code = ConfigError.exit_code


@dataclass(frozen=True)
class RegistryConfig:
    url: str  # host[:port]/path, no scheme; images live at <url>/<image name>
    auth: str = "auto"
    username_env: str = "IMAGEBOT_REGISTRY_USERNAME"
    password_env: str = "IMAGEBOT_REGISTRY_PASSWORD"
    token_env: str = "IMAGEBOT_REGISTRY_TOKEN"
    insecure: bool = False  # plain http (the local stack's loopback registry)

    @property
    def host(self) -> str:
        return self.url.split("/", 1)[0]


@dataclass(frozen=True)
class ImageConfig:
    name: str
    dockerfile: Path  # relative to the config's root
    context: Path
    base: str | None
    sets: tuple[str, ...]  # requirement sets, in layer order; locked, checked by the smoke test
    python: str  # target Python "X.Y" of the base image; the lock resolves for it
    platform: str  # uv --python-platform of the base image, e.g. x86_64-manylinux_2_36
    r_repo: str | None  # CRAN-like repository for sets with r_source = "cran"
    build_args: Mapping[str, str] = field(default_factory=dict)
    render: bool = True  # false: a hand-written Dockerfile installs the sets' locks itself

    @property
    def rendered(self) -> bool:
        """True when imagebot writes the Dockerfile from requirement sets."""
        return bool(self.sets) and self.render


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    repo: str
    branch: str
    file: str  # path of the HelmRelease inside the GitOps repo
    targets: Mapping[str, tuple[str, ...]]  # image name -> YAML paths or "policy:ns:name"
    promote_from: str | None = None
    author: str = "imagebot <imagebot@users.noreply.local>"


@dataclass(frozen=True)
class IndexConfig:
    url: str | None = None  # where pods find the vetted package index (pip/uv index-url)
    request_url: str = ""  # where users ask for a package that is not vetted


@dataclass(frozen=True)
class Config:
    root: Path
    path: Path
    profile: str | None
    source: str  # repository URL recorded in OCI labels
    requirements_dir: Path
    registry: RegistryConfig
    images: Mapping[str, ImageConfig]
    environments: Mapping[str, EnvironmentConfig]
    index: IndexConfig

    def image(self, name: str) -> ImageConfig:
        try:
            return self.images[name]
        except KeyError:
            known = ", ".join(self.images)
            raise ConfigError(f"unknown image {name!r}", f"known images: {known}") from None

    def environment(self, name: str) -> EnvironmentConfig:
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(self.environments)
            raise ConfigError(
                f"unknown environment {name!r}", f"known environments: {known}"
            ) from None

    @property
    def rendered_images(self) -> list[ImageConfig]:
        return [image for image in self.images.values() if image.rendered]

    @property
    def locked_images(self) -> list[ImageConfig]:
        """Images built from requirement sets, rendered or hand-written: their sets are locked."""
        return [image for image in self.images.values() if image.sets]


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Expand `${VAR}` and `${VAR:-default}`; an unset VAR without default raises KeyError."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _VAR.sub(sub, value)


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _Reader:
    """Walks the raw TOML, collecting every problem instead of stopping at the first."""

    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.problems: list[Problem] = []

    def problem(self, key: str, message: str, hint: str) -> None:
        self.problems.append(Problem(self.file, 0, f"{key}: {message}", hint))

    def table(self, raw: Mapping[str, Any], key: str, *, required: bool = True) -> dict[str, Any]:
        value = raw.get(key.rsplit(".", 1)[-1])
        if value is None:
            if required:
                self.problem(key, "missing table", f"add a [{key}] table")
            return {}
        if not isinstance(value, Mapping):
            self.problem(key, "must be a table", f"write it as [{key}]")
            return {}
        return dict(value)

    def string(
        self, raw: Mapping[str, Any], key: str, default: str | None = None, *, required: bool = True
    ) -> str | None:
        value = raw.get(key.rsplit(".", 1)[-1], default)
        if value is None:
            if required:
                self.problem(key, "missing", f'set {key} = "..."')
            return None
        if not isinstance(value, str):
            self.problem(key, f"must be a string, got {value!r}", f'quote it: {key} = "..."')
            return None
        try:
            return expand(value, self.env)
        except KeyError as missing:
            self.problem(
                key,
                f"environment variable {missing.args[0]} is not set",
                f"export {missing.args[0]}=... or write ${{{missing.args[0]}:-default}}",
            )
            return None

    def choice(
        self, raw: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str
    ) -> str:
        value = self.string(raw, key, default)
        if value is not None and value not in choices:
            self.problem(key, f"unknown value {value!r}", f"use one of: {', '.join(choices)}")
            return default
        return value or default

    def unknown_keys(self, raw: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
        for key in raw:
            if key not in allowed:
                self.problem(
                    f"{prefix}.{key}" if prefix else key,
                    "unknown key",
                    f"remove it; allowed here: {', '.join(sorted(allowed))}",
                )


_TOP_KEYS = {"project", "registry", "images", "environments", "index", "profiles"}
_IMAGE_KEYS = {
    "dockerfile",
    "context",
    "base",
    "sets",
    "python",
    "platform",
    "r_repo",
    "build_args",
    "render",
}
_ENV_KEYS = {"repo", "branch", "file", "targets", "promote_from", "author"}
_REGISTRY_KEYS = {"url", "auth", "username_env", "password_env", "token_env", "insecure"}


def load_config(
    path: Path | str = CONFIG_FILE,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read, merge the profile, validate everything and return frozen config."""
    path = Path(path)
    env = {} if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found",
            f"run imagebot from the repository root or pass --config PATH to {CONFIG_FILE}",
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid TOML: {exc}", "fix the TOML syntax at that line"
        ) from None

    if profile:
        profiles = raw.get("profiles", {})
        if profile not in profiles:
            known = ", ".join(profiles) or "none defined"
            raise ConfigError(
                f"{path}: unknown profile {profile!r}",
                f"use one of: {known}, or add a [profiles.{profile}] table",
            )
        raw = deep_merge(raw, profiles[profile])
    return _validate(raw, path, profile, env)


def _validate(
    raw: dict[str, Any], path: Path, profile: str | None, env: Mapping[str, str]
) -> Config:
    r = _Reader(str(path), env)
    r.unknown_keys(raw, "", _TOP_KEYS)
    root = path.resolve().parent

    project = r.table(raw, "project", required=False)
    r.unknown_keys(project, "project", {"source", "requirements"})
    source = r.string(project, "project.source", "") or ""
    requirements_dir = root / (r.string(project, "project.requirements", "requirements") or "")

    registry_raw = r.table(raw, "registry")
    r.unknown_keys(registry_raw, "registry", _REGISTRY_KEYS)
    insecure = registry_raw.get("insecure", False)
    if not isinstance(insecure, bool):
        r.problem("registry.insecure", f"must be true or false, got {insecure!r}", "use true/false")
        insecure = False
    registry = RegistryConfig(
        url=(r.string(registry_raw, "registry.url") or "").rstrip("/"),
        auth=r.choice(registry_raw, "registry.auth", AUTH_MODES, "auto"),
        username_env=r.string(registry_raw, "registry.username_env", RegistryConfig.username_env)
        or RegistryConfig.username_env,
        password_env=r.string(registry_raw, "registry.password_env", RegistryConfig.password_env)
        or RegistryConfig.password_env,
        token_env=r.string(registry_raw, "registry.token_env", RegistryConfig.token_env)
        or RegistryConfig.token_env,
        insecure=insecure,
    )
    if registry.url and "://" in registry.url:
        r.problem(
            "registry.url",
            f"must not contain a scheme: {registry.url!r}",
            "write host[:port]/path, e.g. europe-north1-docker.pkg.dev/project/repo",
        )

    images: dict[str, ImageConfig] = {}
    for name, image_raw in r.table(raw, "images").items():
        key = f"images.{name}"
        if not isinstance(image_raw, Mapping):
            r.problem(key, "must be a table", f"write it as [{key}]")
            continue
        r.unknown_keys(image_raw, key, _IMAGE_KEYS)
        sets = image_raw.get("sets", [])
        if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
            r.problem(f"{key}.sets", "must be a list of set names", 'e.g. sets = ["base", "r"]')
            sets = []
        for set_name in sets:
            if not (requirements_dir / f"{set_name}.toml").is_file():
                r.problem(
                    f"{key}.sets",
                    f"requirement set {set_name!r} has no file {set_name}.toml",
                    f"create requirements/{set_name}.toml or remove it from the list",
                )
        if len(set(sets)) != len(sets):
            r.problem(f"{key}.sets", "lists a set twice", "name each set once")
        dockerfile = r.string(image_raw, f"{key}.dockerfile") or ""
        build_args = image_raw.get("build_args", {})
        if not isinstance(build_args, Mapping):
            r.problem(f"{key}.build_args", "must be a table of strings", 'e.g. { BASE = "..." }')
            build_args = {}
        python = r.string(image_raw, f"{key}.python", "3.11") or "3.11"
        if not re.fullmatch(r"3\.\d+", python):
            r.problem(
                f"{key}.python",
                f"must be a Python minor version, got {python!r}",
                'e.g. python = "3.11"',
            )
        render = image_raw.get("render", True)
        if not isinstance(render, bool):
            r.problem(f"{key}.render", f"must be true or false, got {render!r}", "use true/false")
            render = True
        base = r.string(image_raw, f"{key}.base", required=bool(sets) and render)
        images[name] = ImageConfig(
            name=name,
            dockerfile=Path(dockerfile),
            context=Path(r.string(image_raw, f"{key}.context", ".") or "."),
            base=base,
            sets=tuple(sets),
            python=python,
            platform=r.string(image_raw, f"{key}.platform", "x86_64-manylinux_2_36")
            or "x86_64-manylinux_2_36",
            r_repo=r.string(image_raw, f"{key}.r_repo", required=False),
            build_args={
                str(k): (r.string(build_args, f"{key}.build_args.{k}") or "")
                if isinstance(v, str)
                else str(v)
                for k, v in build_args.items()
            },  # values may use ${VAR:-default} like every other string
            render=render,
        )
        if dockerfile and not (sets and render) and not (root / dockerfile).is_file():
            r.problem(
                f"{key}.dockerfile",
                f"{dockerfile} does not exist",
                "write the Dockerfile or fix the path",
            )

    environments: dict[str, EnvironmentConfig] = {}
    envs_raw = r.table(raw, "environments", required=False)
    for name, env_raw in envs_raw.items():
        key = f"environments.{name}"
        if not isinstance(env_raw, Mapping):
            r.problem(key, "must be a table", f"write it as [{key}]")
            continue
        r.unknown_keys(env_raw, key, _ENV_KEYS)
        promote_from = r.string(env_raw, f"{key}.promote_from", required=False)
        if promote_from is not None and promote_from not in envs_raw:
            r.problem(
                f"{key}.promote_from",
                f"unknown environment {promote_from!r}",
                f"use one of: {', '.join(n for n in envs_raw if n != name)}",
            )
        if promote_from == name:
            r.problem(
                f"{key}.promote_from",
                "an environment cannot promote from itself",
                "name another environment, e.g. staging",
            )
        targets_raw = env_raw.get("targets", {})
        targets: dict[str, tuple[str, ...]] = {}
        if not isinstance(targets_raw, Mapping) or not targets_raw:
            r.problem(
                f"{key}.targets",
                "must map image names to YAML paths",
                'e.g. targets = { jupyterlab = "spec.values.singleuser.image" }',
            )
        else:
            for image_name, paths in targets_raw.items():
                if image_name not in images:
                    r.problem(
                        f"{key}.targets.{image_name}",
                        "is not a configured image",
                        f"use one of: {', '.join(images)}",
                    )
                if isinstance(paths, str):
                    paths = [paths]
                if (
                    not isinstance(paths, list)
                    or not paths
                    or not all(isinstance(p, str) and p for p in paths)
                ):
                    r.problem(
                        f"{key}.targets.{image_name}",
                        "must be a path or a list of paths",
                        'e.g. "spec.values.hub.image" or "policy:flux-system:jupyterlab"',
                    )
                    continue
                targets[image_name] = tuple(paths)
        environments[name] = EnvironmentConfig(
            name=name,
            repo=r.string(env_raw, f"{key}.repo") or "",
            branch=r.string(env_raw, f"{key}.branch", "master") or "master",
            file=r.string(env_raw, f"{key}.file") or "",
            targets=targets,
            promote_from=promote_from,
            author=r.string(env_raw, f"{key}.author", EnvironmentConfig.author)
            or EnvironmentConfig.author,
        )

    index_raw = r.table(raw, "index", required=False)
    r.unknown_keys(index_raw, "index", {"url", "request_url"})
    index = IndexConfig(
        url=r.string(index_raw, "index.url", required=False),
        request_url=r.string(index_raw, "index.request_url", "") or "",
    )

    if r.problems:
        raise ConfigProblems(r.problems, str(path), "fix the keys above; see README, Configuration")
    return Config(
        root=root,
        path=path,
        profile=profile,
        source=source,
        requirements_dir=requirements_dir,
        registry=registry,
        images=images,
        environments=environments,
        index=index,
    )
