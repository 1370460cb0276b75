"""Commands: check, add, lock, render (requirement sets -> lock -> Dockerfile).

`check` and `render --check` are on every pull request, so this module imports only the
standard library, typer and imagebot's pure modules at the top; uv is imported by the
resolver when `lock` really resolves.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagebot import console
from imagebot.config import Config, load_config
from imagebot.errors import ConfigError, ImagebotError, UsageError

if TYPE_CHECKING:
    from imagebot.cli import AppState
    from imagebot.requirements import RequirementSet


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("add")(add)
    app.command("lock")(lock)
    app.command("render")(render)


# --- check -----------------------------------------------------------------------------------


def check(ctx: typer.Context) -> None:
    """Validate imagebot.toml and every requirement set; report all problems at once."""
    from imagebot.cli import state

    run_check(state(ctx))


def run_check(app_state: AppState) -> None:
    from imagebot.lock import lock_statuses, plan_layers, read_text_or_none
    from imagebot.requirements import load_sets

    config = app_state.config
    sets = {s.name: s for s in load_sets(config.requirements_dir)}
    _check_r_sources(config, sets)
    in_images = {name for image in config.rendered_images for name in image.sets}
    for name in sorted(set(sets) - in_images):
        console.warning(f"set {name!r} is in no image's sets in {config.path.name}")
    stale = [s for s in lock_statuses(plan_layers(config, sets), read_text_or_none) if not s.fresh]
    for status in stale:
        console.warning(f"{status.path.name} is out of date: run `imagebot lock`")
    counts = {
        eco: sum(len(s.entries(eco)) for s in sets.values()) for eco in ("python", "r", "apt")
    }
    console.info(
        f"ok: {len(sets)} sets, {counts['python']} python, {counts['r']} r and "
        f"{counts['apt']} apt packages; locks {'stale' if stale else 'up to date'}"
    )


def _check_r_sources(config: Config, sets: Mapping[str, RequirementSet]) -> None:
    for image in config.rendered_images:
        for name in image.sets:
            req_set = sets[name]
            if req_set.r and req_set.r_source == "cran" and not image.r_repo:
                raise ConfigError(
                    f"{config.path.name}: images.{image.name}.r_repo is missing, "
                    f'but set {name!r} has r_source = "cran"',
                    "set r_repo to a dated Posit Package Manager snapshot URL",
                )


# --- add -------------------------------------------------------------------------------------


def add(
    ctx: typer.Context,
    ecosystem: str = typer.Argument(..., help="python, r or apt."),
    package: str = typer.Argument(
        ..., help="NAME==VERSION (python, r) or NAME=VERSION (apt), e.g. polars==1.35.2."
    ),
    set_name: str | None = typer.Option(None, "--set", "-s", help="The set to add it to."),
    reason: str | None = typer.Option(None, "--reason", help="Why the package is needed."),
    requested_by: str | None = typer.Option(
        None, "--requested-by", help="Who asked for it, e.g. @anna."
    ),
    import_name: str | None = typer.Option(
        None, "--import", help="Python module name when it differs, e.g. sklearn."
    ),
) -> None:
    """Add one package to a set, in sorted position, keeping the file's comments and layout."""
    from imagebot.cli import state
    from imagebot.requirements import add_entry, known_set_names, parse_add_spec, set_path

    entry = parse_add_spec(ecosystem, package)
    options = {"--set": set_name, "--reason": reason, "--requested-by": requested_by}
    given = {flag: (value or "").strip() for flag, value in options.items()}
    if missing := [flag for flag, value in given.items() if not value]:
        raise UsageError(
            f"imagebot add needs {', '.join(missing)}",
            f"e.g. imagebot add {ecosystem} {package} --set datascience "
            '--reason "why it is needed" --requested-by @you',
        )
    set_name = given["--set"]
    config = state(ctx).config
    known = known_set_names(config.requirements_dir)
    if set_name not in known:
        raise UsageError(
            f"unknown set {set_name!r}",
            f"use one of: {', '.join(known)} (or create requirements/{set_name}.toml)",
        )
    path = set_path(config.requirements_dir, set_name)
    added = add_entry(
        config.requirements_dir,
        set_name,
        entry.with_metadata(given["--reason"], given["--requested-by"], import_name),
    )
    _write_atomically({path: added.text})
    console.info(f"added {added.description} to {_shown(path, config)}:{added.line}")
    console.info("next: imagebot lock && imagebot render, then open a pull request")


# --- lock ------------------------------------------------------------------------------------


def lock(
    ctx: typer.Context,
    check_only: bool = typer.Option(
        False, "--check", help="Only check (offline) that every lock is up to date; exit 5 if not."
    ),
    upgrade: bool = typer.Option(
        False, "--upgrade", help="Re-resolve every lock, picking up new transitive versions."
    ),
) -> None:
    """Resolve the Python sets with uv into layered, hash-pinned requirements/<set>.lock."""
    from imagebot.cli import state

    if check_only:
        run_lock_check(state(ctx))
    else:
        run_lock(state(ctx), upgrade=upgrade)


def run_lock_check(app_state: AppState) -> None:
    """Offline: every lock's recorded input digest matches its inputs."""
    from imagebot.lock import lock_statuses, plan_layers, read_text_or_none, stale_error

    config = app_state.config
    layers = plan_layers(config, _configured_sets(config))
    error = stale_error(lock_statuses(layers, read_text_or_none))
    if error is not None:
        raise error
    console.info(f"ok: {len(layers)} locks up to date")


def run_lock(app_state: AppState, *, upgrade: bool) -> None:
    from imagebot.lock import UvResolver, plan_layers, read_text_or_none, resolve_locks

    config = app_state.config
    layers = plan_layers(config, _configured_sets(config))
    if not layers:
        console.info("no image has requirement sets: nothing to lock")
        return
    with console.group(f"lock {', '.join(layer.name for layer in layers)} (uv)"):
        result = resolve_locks(layers, read_text_or_none, UvResolver(), upgrade=upgrade)
    _write_atomically({path: result.texts[path] for path in result.changed})
    for path, text in result.texts.items():
        count = sum(1 for line in text.splitlines() if line[:1].isalnum())
        state_word = "wrote" if path in result.changed else "unchanged"
        console.info(f"{state_word} {_shown(path, config)} ({count} packages)")


def _configured_sets(config: Config) -> dict[str, RequirementSet]:
    from imagebot.requirements import load_sets

    names = list(dict.fromkeys(n for image in config.rendered_images for n in image.sets))
    return {s.name: s for s in load_sets(config.requirements_dir, names)}


# --- render ----------------------------------------------------------------------------------


def render(
    ctx: typer.Context,
    check_only: bool = typer.Option(
        False, "--check", help="Compare with the committed file; print a diff and exit 5 if stale."
    ),
) -> None:
    """Render jupyter/Dockerfile from imagebot.toml, the sets and their locks."""
    from imagebot.cli import state

    run_render(state(ctx), check_only=check_only)


def run_render(app_state: AppState, *, check_only: bool) -> None:
    from imagebot.lock import lock_path, read_text_or_none
    from imagebot.render import check_rendered, render_dockerfile, spec_for_image

    config = _render_config(app_state)
    sets = _configured_sets(config)
    outputs: dict[Path, str] = {}
    for image in config.rendered_images:
        locks = {n: read_text_or_none(lock_path(config.requirements_dir, n)) for n in image.sets}
        spec = spec_for_image(config, image, sets, locks)
        outputs[config.root / image.dockerfile] = render_dockerfile(spec)
    if check_only:
        for path, text in outputs.items():
            check_rendered(_shown(path, config), read_text_or_none(path), text)
        console.info(f"ok: {', '.join(_shown(p, config) for p in outputs)} up to date")
        return
    changed = {p: t for p, t in outputs.items() if read_text_or_none(p) != t}
    _write_atomically(changed)
    for path in outputs:
        console.info(f"{'wrote' if path in changed else 'unchanged'} {_shown(path, config)}")
    _warn_stale_locks(config, sets)


def _warn_stale_locks(config: Config, sets: Mapping[str, RequirementSet]) -> None:
    """The render reads which locks have packages; a stale lock may change that."""
    from imagebot.lock import lock_statuses, plan_layers, read_text_or_none

    for status in lock_statuses(plan_layers(config, sets), read_text_or_none):
        if not status.fresh:
            console.warning(f"{status.path.name} is out of date: run `imagebot lock`, then render")


def _render_config(app_state: AppState) -> Config:
    """The config without profile or environment: the Dockerfile is the same everywhere.

    The local stack's base image and index URL reach the build as build args instead.
    """
    return load_config(app_state.config_path, profile=None, env={})


# --- helpers ---------------------------------------------------------------------------------


def _shown(path: Path, config: Config) -> str:
    try:
        return path.resolve().relative_to(config.root).as_posix()
    except ValueError:
        return str(path)


def _write_atomically(files: Mapping[Path, str]) -> None:
    """Write every file to a temp file first, then rename them all: no half-written file."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            os.chmod(tmp, mode)  # mkstemp makes 0600 files
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as exc:
        raise ImagebotError(
            f"cannot write {exc.filename or 'a file'}: {exc.strerror or exc}",
            "check the permissions of the repository checkout",
        ) from None
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)


# --- fast path ---------------------------------------------------------------------------------

_FAST: dict[tuple[str, ...], Callable[[AppState], None]] = {
    ("check",): lambda st: run_check(st),
    ("lock", "--check"): lambda st: run_lock_check(st),
    ("render", "--check"): lambda st: run_render(st, check_only=True),
}


def fast_path(argv: Sequence[str]) -> bool:
    """Run `check`, `lock --check` or `render --check` without typer's option parsing.

    typer 0.29 builds pydantic TypeAdapters for every non-bool option on every invocation
    (about 150 ms of imports). These three read-only checks run on every pull request and in
    pre-commit hooks, so the entry point tries this first; anything else (including --help)
    returns False and goes through typer as usual. Errors propagate to the same boundary.
    """
    from imagebot.cli import AppState

    config = os.environ.get("IMAGEBOT_CONFIG") or "imagebot.toml"
    profile = os.environ.get("IMAGEBOT_PROFILE") or None
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        name, eq, inline = flag.partition("=")
        if name in ("--config", "-c", "--profile", "-p"):
            if not eq and not rest:
                return False
            value = inline if eq else rest.pop(0)
            if name in ("--config", "-c"):
                config = value
            else:
                profile = value or None
        elif flag not in ("--verbose", "-v"):
            return False
    command = _FAST.get(tuple(rest))
    if command is None:
        return False
    command(AppState(config_path=Path(config), profile=profile))
    return True
