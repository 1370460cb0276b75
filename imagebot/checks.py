"""The read-only checks every pull request runs (check, lock --check, render --check), render's
writing, and the entry point's fast path to them.

No typer here: `imagebot check` and `render --check` must cost less than importing typer
(see fast_path), so this module imports only the standard library and imagebot's pure
modules at the top.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from imagebot import console
from imagebot.config import Config, load_config
from imagebot.files import write_atomically
from imagebot.state import AppState

if TYPE_CHECKING:
    from imagebot.requirements import RequirementSet


def run_check(app_state: AppState) -> None:
    from imagebot.lock import Freshness, cran_inputs, cran_status, lock_statuses, plan_layers
    from imagebot.lockfile import read_text_or_none
    from imagebot.requirements import load_index_only, load_sets

    config = app_state.config
    sets = {s.name: s for s in load_sets(config.requirements_dir)}
    index_only = load_index_only(config.requirements_dir, list(sets.values()))
    _check_waivers(config)
    _check_r_sources(config, sets)
    in_images = {name for image in config.locked_images for name in image.sets}
    for name in sorted(set(sets) - in_images):
        console.warning(f"set {name!r} is in no image's sets in {config.path.name}")
    statuses: list[Freshness] = [*lock_statuses(plan_layers(config, sets), read_text_or_none)]
    r = cran_status(cran_inputs(config, sets.values(), index_only), read_text_or_none)
    statuses += [r] if r is not None else []
    stale = [s for s in statuses if not s.fresh]
    for status in stale:
        console.warning(f"{status.path.name} is out of date ({status.state}): run `imagebot lock`")
    counts = {
        eco: sum(len(s.entries(eco)) for s in sets.values()) for eco in ("python", "r", "apt")
    }
    console.info(
        f"ok: {len(sets)} sets, {counts['python']} python, {counts['r']} r and "
        f"{counts['apt']} apt packages; locks {'stale' if stale else 'up to date'}"
    )
    _check_registered_environments(config, sets, index_only)


def _check_waivers(config: Config) -> None:
    """requirements/waivers.toml parses (exit 4 with file:line); an expired waiver is a warning
    here and a failure in `imagebot audit`, which is what the waiver gates."""
    from datetime import UTC, datetime

    from imagebot.waivers import load_waivers

    today = datetime.now(UTC).date()
    for waiver in load_waivers(config.requirements_dir):
        if waiver.expired(today):
            console.warning(
                f"{waiver.where}: waiver {waiver.describe()} expired on {waiver.expires}; "
                "imagebot audit fails until it is renewed or removed"
            )


def _check_registered_environments(
    config: Config, sets: Mapping[str, RequirementSet], index_only: RequirementSet | None
) -> None:
    """environments/<team>/<name>.txt: path, owner and pins (exit 14 listing every problem),
    vetted against the sets and index-only.toml `check` has loaded."""
    from imagebot.environments import (
        check_environments,
        kept_versions,
        load_environments,
        target_of,
        vetted_in,
    )

    environments, problems = load_environments(config.root, *target_of(config))
    if not environments and not problems:
        return
    vetted = vetted_in(config, sets=sets, index_only=index_only)
    check_environments(environments, problems, vetted)
    for environment in environments:
        for pin in kept_versions(environment, vetted):
            console.info(
                f"{environment.path}:{pin.line}: {pin.name}=={pin.version} is kept for this "
                "environment (the locks moved on; the index still serves it)"
            )
    noun = "environment" if len(environments) == 1 else "environments"
    console.info(f"ok: {len(environments)} registered {noun}")


def _check_r_sources(config: Config, sets: Mapping[str, RequirementSet]) -> None:
    # Only an image with R packages and no r_repo can lack it: imagebot.render (importlib
    # resources, its model) is imported only then.
    missing = [
        image
        for image in config.rendered_images
        if not image.r_repo and any(sets[name].r for name in image.sets)
    ]
    if not missing:
        return
    from imagebot.render import require_r_repo

    for image in missing:  # a hand-written Dockerfile installs R its own way
        require_r_repo(
            config.path.name, image.name, image.r_repo, (sets[name] for name in image.sets)
        )


def run_lock_check(app_state: AppState) -> None:
    """Offline: every lock's recorded input digest matches its inputs and its text is the text
    `imagebot lock` wrote; requirements/cran.lock exists exactly when R packages are served
    from a CRAN-like repository."""
    from imagebot.lock import (
        Freshness,
        cran_inputs,
        cran_status,
        lock_statuses,
        plan_layers,
        stale_error,
    )
    from imagebot.lockfile import read_text_or_none
    from imagebot.requirements import load_index_only

    config = app_state.config
    sets = all_sets(config)
    layers = plan_layers(config, sets)
    r = cran_inputs(
        config, sets.values(), load_index_only(config.requirements_dir, [*sets.values()])
    )
    r_status = cran_status(r, read_text_or_none)
    statuses: list[Freshness] = [*lock_statuses(layers, read_text_or_none)]
    statuses += [r_status] if r_status is not None else []
    error = stale_error(statuses)
    if error is not None:
        raise error
    count = len(layers) + bool(r.roots)
    console.info(f"ok: {count} locks up to date")


def configured_sets(config: Config) -> dict[str, RequirementSet]:
    from imagebot.requirements import load_sets

    names = list(dict.fromkeys(n for image in config.locked_images for n in image.sets))
    return {s.name: s for s in load_sets(config.requirements_dir, names)}


def all_sets(config: Config) -> dict[str, RequirementSet]:
    """The images' sets and every other set file, loaded and validated together once: a set
    in no image is still served by the index (its cran R entries are in cran.lock)."""
    from imagebot.requirements import known_set_names, load_sets

    names = [n for image in config.locked_images for n in image.sets]
    names = list(dict.fromkeys([*names, *known_set_names(config.requirements_dir)]))
    return {s.name: s for s in load_sets(config.requirements_dir, names)}


def run_render(app_state: AppState, *, check_only: bool) -> None:
    from imagebot.lockfile import lock_path, read_text_or_none
    from imagebot.render import check_rendered, render_dockerfile, spec_for_image

    config = _render_config(app_state)
    sets = configured_sets(config)
    outputs: dict[Path, str] = {}
    for image in config.rendered_images:
        locks = {n: read_text_or_none(lock_path(config.requirements_dir, n)) for n in image.sets}
        spec = spec_for_image(config, image, sets, locks)
        outputs[config.root / image.dockerfile] = render_dockerfile(spec)
    if check_only:
        for path, text in outputs.items():
            check_rendered(shown(path, config), read_text_or_none(path), text)
        console.info(f"ok: {', '.join(shown(p, config) for p in outputs)} up to date")
        return
    changed = {p: t for p, t in outputs.items() if read_text_or_none(p) != t}
    write_atomically(changed, inside=config.root)
    for path in outputs:
        console.info(f"{'wrote' if path in changed else 'unchanged'} {shown(path, config)}")
    _warn_stale_locks(config, sets)


def _warn_stale_locks(config: Config, sets: Mapping[str, RequirementSet]) -> None:
    """The render reads which locks have packages; a stale lock may change that."""
    from imagebot.lock import lock_statuses, plan_layers
    from imagebot.lockfile import read_text_or_none

    for status in lock_statuses(plan_layers(config, sets), read_text_or_none):
        if not status.fresh:
            console.warning(f"{status.path.name} is out of date: run `imagebot lock`, then render")


def _render_config(app_state: AppState) -> Config:
    """The config without profile or environment: the Dockerfile is the same everywhere.

    The local stack's base image and index URL reach the build as build args instead.
    """
    return load_config(app_state.config_path, profile=None, env={})


def shown(path: Path, config: Config) -> str:
    try:
        return path.resolve().relative_to(config.root).as_posix()
    except ValueError:
        return str(path)


def run_impact(app_state: AppState, package: str, *, as_json: bool, r: bool = False) -> None:
    """`imagebot impact [--r] PACKAGE[==VERSION]`: who needs it and who pins it (local and
    pure); `--r` for an R package."""
    import sys

    from imagebot import impact
    from imagebot.environments import registered

    ecosystem = impact.R if r else impact.PYTHON
    name, version = impact.parse_package(package, ecosystem)
    config = app_state.config
    environments = registered(config)
    snapshot = impact.load_snapshot(config)
    report = impact.package_report(name, version, snapshot, environments, ecosystem)
    if report.old is None and not report.needs and not report.environments:
        raise impact.unknown_package(report, snapshot)
    if as_json:
        console.print_json(impact.package_json(report, snapshot))
    else:
        sys.stdout.write("\n".join(impact.package_lines(report)) + "\n")


_IMPACT_FLAGS = ("--json", "--r")


def _impact_args(rest: Sequence[str]) -> Callable[[AppState], None] | None:
    """`impact PACKAGE [--json] [--r]` in any order, each flag once; anything else (--help,
    options) -> None."""
    words = [word for word in rest[1:] if word not in _IMPACT_FLAGS]
    flags = [word for word in rest[1:] if word in _IMPACT_FLAGS]
    if rest[:1] != ["impact"] or len(words) != 1 or len(set(flags)) != len(flags):
        return None
    if words[0].startswith("-"):
        return None
    return lambda st: run_impact(st, words[0], as_json="--json" in flags, r="--r" in flags)


_FAST: dict[tuple[str, ...], Callable[[AppState], None]] = {
    ("check",): lambda st: run_check(st),
    ("lock", "--check"): lambda st: run_lock_check(st),
    ("render", "--check"): lambda st: run_render(st, check_only=True),
}


def fast_path(argv: Sequence[str]) -> bool:
    """Run `check`, `lock --check`, `render --check` or `impact PACKAGE [--json]` without
    typer's option parsing.

    typer 0.29 builds pydantic TypeAdapters for every non-bool option on every invocation
    (about 150 ms of imports). These read-only checks run on every pull request and in
    pre-commit hooks, so the entry point tries this first; anything else (including --help)
    returns False and goes through typer as usual. Errors propagate to the same boundary.
    """
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
    command = _FAST.get(tuple(rest)) or _impact_args(rest)
    if command is None:
        return False
    command(AppState(config_path=Path(config), profile=profile))
    return True
