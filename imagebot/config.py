"""imagebot.toml -> frozen dataclasses, validated all at once.

`load_config(path, profile, env)` is the only entry point. The environment is injected so that
tests never depend on the caller's shell: string values may use `${VAR}` or `${VAR:-default}`,
which is how the pipeline maps secret variables and service connections onto config.

A profile (`[profiles.NAME]`) is a partial config deep-merged over the top level. The local
stack uses `--profile local`, so the production settings are never edited to run locally.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagebot import validate
from imagebot.errors import ConfigError, Problem, ProblemsError
from imagebot.files import Unreadable, read_text

CONFIG_FILE = "imagebot.toml"
AUTH_MODES = ("auto", "google", "basic", "docker-config")


class ConfigProblems(ProblemsError):
    exit_code = ConfigError.exit_code


def key(meaning: str, default: Any = dataclasses.MISSING, **rules: Any) -> Any:
    """A key of imagebot.toml: its meaning, its default (none: required) and its rules.

    The field's annotation is the key's type. `rules` may hold `rule` (a validate function or
    any callable that raises validate.InvalidValue) and `choices`.
    """
    metadata = {"meaning": meaning, **rules}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _registry_url(value: object) -> str:
    """host[:port]/path of a registry: an image reference without tag or digest."""
    text = validate.one_line(value)
    if "://" in text:
        raise validate.InvalidValue(
            f"must not contain a scheme: {text!r}",
            "write host[:port]/path, e.g. europe-north1-docker.pkg.dev/project/repo",
        )
    if text and (":" in text.rpartition("/")[2] or "@" in text):
        raise validate.InvalidValue(f"{text!r} has a tag or digest", "write host[:port]/path")
    return validate.image_reference(text.rstrip("/") + "/probe") and text


def _optional_url(value: object) -> str:
    return "" if value == "" else validate.url(value)


def _optional_destination(value: object) -> str:
    return "" if value == "" else validate.publish_destination(value)


def _python_minor(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"3\.[0-9]+", value, re.ASCII):
        raise validate.InvalidValue(
            f"must be a Python minor version, got {value!r}", 'e.g. python = "3.11"'
        )
    return value


def _platform(value: object) -> str:
    text = validate.one_line(value)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", text, re.ASCII):
        raise validate.InvalidValue(
            f"{text!r} is not a uv platform", 'e.g. platform = "x86_64-manylinux_2_36"'
        )
    return text


def _variable_name(value: object) -> str:
    text = validate.one_line(value)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text, re.ASCII):
        raise validate.InvalidValue(
            f"{text!r} is not an environment variable name", "e.g. IMAGEBOT_REGISTRY_TOKEN"
        )
    return text


def _set_name(value: object) -> str:
    text = validate.one_line(value)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", text, re.ASCII):
        raise validate.InvalidValue(
            f"{text!r} is not a set name",
            'name the file requirements/<set>.toml and list <set>, e.g. sets = ["base"]',
        )
    return text


@dataclass(frozen=True)
class RegistryConfig:
    url: str = key(
        "host[:port]/path, no scheme; images live at <url>/<image name>", rule=_registry_url
    )
    auth: str = key("how to log in to the registry", "auto", choices=AUTH_MODES)
    username_env: str = key(
        "variable holding the user name", "IMAGEBOT_REGISTRY_USERNAME", rule=_variable_name
    )
    password_env: str = key(
        "variable holding the password", "IMAGEBOT_REGISTRY_PASSWORD", rule=_variable_name
    )
    token_env: str = key(
        "variable holding a bearer token", "IMAGEBOT_REGISTRY_TOKEN", rule=_variable_name
    )
    insecure: bool = key("plain http (the local stack's loopback registry)", False)

    @property
    def host(self) -> str:
        return self.url.split("/", 1)[0]


@dataclass(frozen=True)
class ImageConfig:
    name: str  # the key of [images.NAME]
    dockerfile: Path = key("the Dockerfile, relative to the config's root")  # noqa: RUF009
    context: Path = key("the build context, relative to the config's root", ".")  # noqa: RUF009
    base: str | None = key(
        "base image; required when imagebot renders the Dockerfile",
        None,
        rule=validate.image_reference,
    )
    sets: tuple[str, ...] = key(
        "requirement sets in layer order; locked and smoke-tested", (), rule=_set_name
    )
    python: str = key(
        "the base image's Python X.Y; the lock resolves for it", "3.11", rule=_python_minor
    )
    platform: str = key(
        "uv --python-platform of the base image", "x86_64-manylinux_2_36", rule=_platform
    )
    r_repo: str | None = key(
        'CRAN-like repository for sets with r_source = "cran"', None, rule=validate.url
    )
    build_args: Mapping[str, str] = key(
        "build args passed to docker build", {}, rule=validate.one_line
    )
    render: bool = key("false: a hand-written Dockerfile installs the sets' locks itself", True)

    @property
    def rendered(self) -> bool:
        """True when imagebot writes the Dockerfile from requirement sets."""
        return bool(self.sets) and self.render


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str  # the key of [environments.NAME]
    repo: str = key(
        "the GitOps repository (URL, or a path for the local stack)", rule=validate.one_line
    )
    file: str = key("path of the HelmRelease inside the GitOps repo", rule=validate.one_line)
    targets: Mapping[str, tuple[str, ...]] = key(
        'image name -> YAML paths or "policy:ns:name"', rule=validate.one_line
    )
    branch: str = key("the GitOps branch", "master", rule=validate.one_line)
    promote_from: str | None = key(
        "the environment whose digests this one runs", None, rule=validate.one_line
    )
    author: str = key(
        "git author of promotion commits",
        "imagebot <imagebot@users.noreply.local>",
        rule=validate.one_line,
    )


@dataclass(frozen=True)
class IndexConfig:
    url: str | None = key(
        "where pods find the vetted package index (pip/uv index-url)", None, rule=validate.url
    )
    request_url: str = key(
        "where users ask for a package that is not vetted", "", rule=_optional_url
    )
    publish: str = key(
        "where `index publish` and `release` upload the index: gs://BUCKET/PREFIX or a directory",
        "",
        rule=_optional_destination,
    )
    cran_upstream: str = key(
        "CRAN-like repository the vetted R packages come from (a dated snapshot); "
        "default: the images' r_repo",
        "",
        rule=_optional_url,
    )
    cran_snapshots: tuple[str, ...] = key(
        "older CRAN-like snapshots for older vetted R versions, searched in order",
        (),
        rule=validate.url,
    )
    r_user_agent: str = key(
        "User-Agent of the image's R, which picks binaries on Posit Package Manager",
        "R (4.2.2 x86_64-pc-linux-gnu x86_64 linux-gnu)",
        rule=validate.one_line,
    )


def _advisory_source(value: object) -> str:
    """An OSV API base URL, or a directory of OSV records (relative to imagebot.toml)."""
    text = validate.one_line(value)
    if "://" in text:
        return validate.url(text)
    if not text.strip():
        raise validate.InvalidValue("is empty", 'e.g. source = "https://api.osv.dev"')
    return text


@dataclass(frozen=True)
class AdvisoriesConfig:
    source: str = key(
        "where `imagebot audit` reads OSV advisories: the OSV API's base URL, or a directory "
        "of OSV records (vulns/<project>/<ID>.yaml) relative to imagebot.toml",
        "https://api.osv.dev",
        rule=_advisory_source,
    )
    optional: bool = key(
        "true: a directory source that is absent is skipped by `imagebot release` with a note "
        "(a demo machine without the checkout); `imagebot audit` still needs it",
        False,
    )


@dataclass(frozen=True)
class ProjectConfig:
    source: str = key("repository URL recorded in OCI labels", "", rule=_optional_url)
    requirements: str = key("the directory of requirement sets", "requirements")


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
    advisories: AdvisoriesConfig = AdvisoriesConfig()

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


# ${NAME} or ${NAME:-default}; a default holds no '$', '{' or '}', so nothing nests.
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^${}]*))?\}", re.ASCII)


def expand(value: str, env: Mapping[str, str]) -> str:
    """Expand `${VAR}` and `${VAR:-default}`.

    An unset VAR without default raises KeyError; a `${` that does not start one of those two
    forms (unclosed, nested, or an unusual name) raises ValueError.
    """

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise KeyError(name)

    if "${" in _VAR.sub("", value):
        raise ValueError(value)
    return _VAR.sub(sub, value)


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key_, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key_), Mapping):
            merged[key_] = deep_merge(merged[key_], value)
        else:
            merged[key_] = value
    return merged


_MISSING = object()


class _Reader:
    """Reads tables against their dataclass, collecting every problem instead of stopping."""

    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.problems: list[Problem] = []

    def problem(self, key_: str, message: str, hint: str) -> None:
        self.problems.append(Problem(self.file, 0, f"{key_}: {message}", hint))

    def table(self, raw: Mapping[str, Any], key_: str, *, required: bool = True) -> dict[str, Any]:
        value = raw.get(key_.rsplit(".", 1)[-1])
        if value is None:
            if required:
                self.problem(key_, "missing table", f"add a [{key_}] table")
            return {}
        if not isinstance(value, Mapping):
            self.problem(key_, "must be a table", f"write it as [{key_}]")
            return {}
        return dict(value)

    def unknown_keys(self, raw: Mapping[str, Any], prefix: str, allowed: Iterable[str]) -> None:
        names = sorted(allowed)
        for name in raw:
            if name not in names:
                import difflib  # here, not at the top: only a config with a typo pays for it

                close = difflib.get_close_matches(str(name), names, n=1)
                guess = f"did you mean {close[0]!r}? " if close else ""
                self.problem(
                    f"{prefix}.{name}" if prefix else str(name),
                    "unknown key",
                    f"{guess}remove it; allowed here: {', '.join(names)}",
                )

    def fields(self, cls: type, raw: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        """Every TOML key of dataclass `cls` from `raw`: type-checked, expanded, validated.

        A refused or missing value comes back as its default (or None when required), so
        that the caller can go on and report the problems of the other keys too.
        """
        keys = [f for f in dataclasses.fields(cls) if "meaning" in f.metadata]
        self.unknown_keys(raw, prefix, [f.name for f in keys])
        return {
            f.name: self.value(f, raw.get(f.name, _MISSING), f"{prefix}.{f.name}") for f in keys
        }

    def value(self, spec: dataclasses.Field[Any], raw: Any, key_: str) -> Any:
        default = _default(spec)
        if raw is _MISSING:
            if default is _MISSING:
                self.problem(key_, "missing", f"set {key_} = ...")
                return None
            return default
        read = _READERS[str(spec.type)]
        try:
            return read(self, raw, key_, spec.metadata)
        except validate.InvalidValue as exc:
            self.problem(key_, exc.message, exc.hint)
        return None if default is _MISSING else default

    def string(self, raw: Any, key_: str, metadata: Mapping[str, Any]) -> str:
        if not isinstance(raw, str):
            raise validate.InvalidValue(
                f"must be a string, got {_shown(raw)}", f'quote it: {key_} = "..."'
            )
        try:
            text = expand(raw, self.env)
        except KeyError as missing:
            name = missing.args[0]
            raise validate.InvalidValue(
                f"environment variable {name} is not set",
                f"export {name}=... or write ${{{name}:-default}}",
            ) from None
        except ValueError:
            raise validate.InvalidValue(
                f"{_shown(raw)} has an unclosed or nested ${{...}}",
                "write ${VAR} or ${VAR:-default}, with a default that holds no $, { or }",
            ) from None
        return _checked(text, metadata)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}..."


def _default(spec: dataclasses.Field[Any]) -> Any:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return _MISSING


def _checked(text: str, metadata: Mapping[str, Any]) -> str:
    choices = metadata.get("choices")
    if choices and text not in choices:
        raise validate.InvalidValue(f"unknown value {text!r}", f"use one of: {', '.join(choices)}")
    rule: Callable[[str], object] = metadata.get("rule", validate.one_line)
    rule(text)
    return text


def _read_str(r: _Reader, raw: Any, key_: str, metadata: Mapping[str, Any]) -> str:
    return r.string(raw, key_, metadata)


def _read_path(r: _Reader, raw: Any, key_: str, metadata: Mapping[str, Any]) -> Path:
    text = r.string(raw, key_, metadata)
    if not text.strip():
        raise validate.InvalidValue("path is empty", "write a path relative to the repository")
    return Path(text)


def _read_bool(r: _Reader, raw: Any, key_: str, metadata: Mapping[str, Any]) -> bool:
    if not isinstance(raw, bool):
        raise validate.InvalidValue(f"must be true or false, got {_shown(raw)}", "use true/false")
    return raw


def _read_list(r: _Reader, raw: Any, key_: str, metadata: Mapping[str, Any]) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise validate.InvalidValue("must be a list of strings", 'e.g. sets = ["base", "r"]')
    return tuple(r.string(item, key_, metadata) for item in raw)


def _read_strings(r: _Reader, raw: Any, key_: str, metadata: Mapping[str, Any]) -> dict[str, str]:
    """A table of strings (build_args); names are ARG names, values may use ${VAR:-default}."""
    if not isinstance(raw, Mapping):
        raise validate.InvalidValue("must be a table of strings", 'e.g. { BASE = "..." }')
    values: dict[str, str] = {}
    for name, value in raw.items():
        try:
            _variable_name(name)
            values[name] = r.string(value, f"{key_}.{name}", metadata)
        except validate.InvalidValue as exc:
            r.problem(f"{key_}.{name}", exc.message, exc.hint)
    return values


def _read_targets(
    r: _Reader, raw: Any, key_: str, metadata: Mapping[str, Any]
) -> dict[str, tuple[str, ...]]:
    hint = 'e.g. targets = { jupyterlab = "spec.values.singleuser.image" }'
    if not isinstance(raw, Mapping) or not raw:
        raise validate.InvalidValue("must map image names to YAML paths", hint)
    targets: dict[str, tuple[str, ...]] = {}
    for image, paths in raw.items():
        paths = [paths] if isinstance(paths, str) else paths
        if (
            not isinstance(paths, list)
            or not paths
            or not all(isinstance(p, str) and p for p in paths)
        ):
            r.problem(
                f"{key_}.{image}",
                "must be a path or a list of paths",
                'e.g. "spec.values.hub.image" or "policy:flux-system:jupyterlab"',
            )
            continue
        targets[image] = tuple(_checked(p, metadata) for p in paths)
    return targets


_READERS: dict[str, Callable[[_Reader, Any, str, Mapping[str, Any]], Any]] = {
    "str": _read_str,
    "str | None": _read_str,
    "Path": _read_path,
    "bool": _read_bool,
    "tuple[str, ...]": _read_list,
    "Mapping[str, str]": _read_strings,
    "Mapping[str, tuple[str, ...]]": _read_targets,
}
_TOP_KEYS = ("project", "registry", "images", "environments", "index", "advisories", "profiles")


def load_config(
    path: Path | str = CONFIG_FILE,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read, merge the profile, validate everything and return frozen config."""
    path = Path(path)
    raw = _with_profile(_read_toml(path), path, profile)
    return _validate(raw, path, profile, {} if env is None else env)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = read_text(path)
    except Unreadable as exc:
        if exc.missing:
            raise ConfigError(
                f"{path}: config file not found",
                f"run imagebot from the repository root or pass --config PATH to {CONFIG_FILE}",
            ) from None
        raise ConfigError(f"{path}: {exc.reason}", f"write {CONFIG_FILE} as UTF-8 TOML") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid TOML: {exc}", "fix the TOML syntax at that line"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"{path}: invalid TOML: nested too deeply", "flatten the nested arrays or tables"
        ) from None


def _with_profile(raw: dict[str, Any], path: Path, profile: str | None) -> dict[str, Any]:
    """`raw` with [profiles.PROFILE] deep-merged over it."""
    profiles = raw.get("profiles", {})
    if not isinstance(profiles, Mapping):
        raise ConfigError(f"{path}: profiles: must be a table", "write [profiles.NAME] tables")
    if not profile:
        return raw
    if profile not in profiles:
        known = ", ".join(profiles) or "none defined"
        raise ConfigError(
            f"{path}: unknown profile {profile!r}",
            f"use one of: {known}, or add a [profiles.{profile}] table",
        )
    if not isinstance(profiles[profile], Mapping):
        raise ConfigError(
            f"{path}: profiles.{profile}: must be a table", f"write [profiles.{profile}.KEY]"
        )
    return deep_merge(raw, profiles[profile])


def _validate(
    raw: dict[str, Any], path: Path, profile: str | None, env: Mapping[str, str]
) -> Config:
    r = _Reader(str(path), env)
    r.unknown_keys(raw, "", _TOP_KEYS)
    root = path.resolve().parent
    project = ProjectConfig(
        **r.fields(ProjectConfig, r.table(raw, "project", required=False), "project")
    )
    requirements_dir = root / _inside(r, root, project.requirements, "project.requirements")
    registry = _registry(r, raw)
    images = _images(r, raw, root, path, requirements_dir)
    environments = _environments(r, raw, images)
    index = IndexConfig(**r.fields(IndexConfig, r.table(raw, "index", required=False), "index"))
    advisories = AdvisoriesConfig(
        **r.fields(AdvisoriesConfig, r.table(raw, "advisories", required=False), "advisories")
    )
    if r.problems:
        raise ConfigProblems(r.problems, str(path), "fix the keys above; see README, Configuration")
    return Config(
        root=root,
        path=path,
        profile=profile,
        source=project.source,
        requirements_dir=requirements_dir,
        registry=registry,
        images=images,
        environments=environments,
        index=index,
        advisories=advisories,
    )


def _inside(r: _Reader, root: Path, value: str, key_: str, reserved: Iterable[Path] = ()) -> Path:
    """The repo-relative path `value`, or "." after reporting why it is refused."""
    try:
        return validate.repo_path(value, root, reserved)
    except validate.InvalidValue as exc:
        r.problem(key_, exc.message, exc.hint)
        return Path(".")


def _registry(r: _Reader, raw: Mapping[str, Any]) -> RegistryConfig:
    values = r.fields(RegistryConfig, r.table(raw, "registry"), "registry")
    values["url"] = (values["url"] or "").rstrip("/")
    return RegistryConfig(**values)


def _image_name(r: _Reader, name: str, key_: str) -> bool:
    """An image name becomes <registry url>/<name>: one lower-case repository component."""
    if re.fullmatch(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", name, re.ASCII) and len(name) <= 128:
        return True
    r.problem(
        key_, f"image name {_shown(name)} is not a repository name", "e.g. [images.jupyterlab]"
    )
    return False


def _images(
    r: _Reader, raw: Mapping[str, Any], root: Path, path: Path, requirements_dir: Path
) -> dict[str, ImageConfig]:
    images: dict[str, ImageConfig] = {}
    reserved = (path.resolve(), requirements_dir, root / ".git")
    for name, image_raw in r.table(raw, "images").items():
        key_ = f"images.{name}"
        if not _image_name(r, name, key_):
            continue
        if not isinstance(image_raw, Mapping):
            r.problem(key_, "must be a table", f"write it as [{key_}]")
            continue
        values = r.fields(ImageConfig, image_raw, key_)
        values["dockerfile"] = _inside(
            r, root, str(values["dockerfile"] or "."), f"{key_}.dockerfile", reserved
        )
        values["context"] = _inside(r, root, str(values["context"]), f"{key_}.context")
        image = ImageConfig(name=name, **values)
        _check_image(r, image, key_, root, requirements_dir)
        images[name] = image
    return images


def _check_image(
    r: _Reader, image: ImageConfig, key_: str, root: Path, requirements_dir: Path
) -> None:
    """Rules across an image's keys and the files they name."""
    for set_name in image.sets:
        if not (requirements_dir / f"{set_name}.toml").is_file():
            r.problem(
                f"{key_}.sets",
                f"requirement set {set_name!r} has no file {set_name}.toml",
                f"create requirements/{set_name}.toml or remove it from the list",
            )
    if len(set(image.sets)) != len(image.sets):
        r.problem(f"{key_}.sets", "lists a set twice", "name each set once")
    if image.rendered and image.base is None:
        r.problem(f"{key_}.base", "missing", f'set {key_}.base = "..."')
    dockerfile = image.dockerfile
    if str(dockerfile) != "." and (root / dockerfile).is_dir():
        r.problem(f"{key_}.dockerfile", f"{dockerfile.as_posix()} is a directory", "name the file")
    elif str(dockerfile) != "." and not image.rendered and not (root / dockerfile).is_file():
        r.problem(
            f"{key_}.dockerfile",
            f"{dockerfile.as_posix()} does not exist",
            "write the Dockerfile or fix the path",
        )


def _environments(
    r: _Reader, raw: Mapping[str, Any], images: Mapping[str, ImageConfig]
) -> dict[str, EnvironmentConfig]:
    environments: dict[str, EnvironmentConfig] = {}
    envs_raw = r.table(raw, "environments", required=False)
    for name, env_raw in envs_raw.items():
        key_ = f"environments.{name}"
        if not isinstance(env_raw, Mapping):
            r.problem(key_, "must be a table", f"write it as [{key_}]")
            continue
        values = r.fields(EnvironmentConfig, env_raw, key_)
        for image_name in values["targets"] or {}:
            if image_name not in images:
                r.problem(
                    f"{key_}.targets.{image_name}",
                    "is not a configured image",
                    f"use one of: {', '.join(images)}",
                )
        values["targets"] = values["targets"] or {}
        values["repo"] = values["repo"] or ""
        values["file"] = values["file"] or ""
        environments[name] = EnvironmentConfig(name=name, **values)
    _check_promotions(r, environments)
    return environments


def _check_promotions(r: _Reader, environments: Mapping[str, EnvironmentConfig]) -> None:
    """promote_from names another environment, and following it never comes back."""
    for name, environment in environments.items():
        key_ = f"environments.{name}.promote_from"
        source = environment.promote_from
        if source is None:
            continue
        if source == name:
            r.problem(
                key_,
                "an environment cannot promote from itself",
                "name another environment, e.g. staging",
            )
        elif source not in environments:
            r.problem(
                key_,
                f"unknown environment {source!r}",
                f"use one of: {', '.join(n for n in environments if n != name)}",
            )
        elif _promotes_from(environments, source, name):
            r.problem(
                key_,
                f"promotion cycle: {name} and {source} promote from each other",
                "one environment (usually staging) must not set promote_from",
            )


def _promotes_from(environments: Mapping[str, EnvironmentConfig], start: str, target: str) -> bool:
    """True when following promote_from from `start` reaches `target`."""
    seen: set[str] = set()
    current: str | None = start
    while current is not None and current in environments and current not in seen:
        if current == target:
            return True
        seen.add(current)
        current = environments[current].promote_from
    return False
