"""Commands: check, add, lock, render (requirement sets -> lock -> Dockerfile).

The typer wrappers. The work of check, lock --check and render lives in imagebot.checks,
which the entry point also runs without typer; uv is imported only when `lock` resolves.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagebot import console
from imagebot.checks import (
    all_sets,
    run_check,
    run_lock_check,
    run_render,
    shown,
)
from imagebot.errors import ImagebotError, UsageError
from imagebot.files import write_atomically
from imagebot.state import state

if TYPE_CHECKING:
    from collections.abc import Mapping

    from imagebot.lock import CranLockInputs
    from imagebot.state import AppState


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("add")(add)
    app.command("lock")(lock)
    app.command("render")(render)


# --- check -----------------------------------------------------------------------------------


def check(ctx: typer.Context) -> None:
    """Validate imagebot.toml and every requirement set; report all problems at once."""
    run_check(state(ctx))


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
    safe_because: str | None = typer.Option(
        None,
        "--safe-because",
        help="The requester's confirmation: what they checked that makes them believe the "
        "package is safe, e.g. 'known publisher (pola-rs), MIT, no open advisories'.",
    ),
) -> None:
    """Add one package to a set, in sorted position, keeping the file's comments and layout."""
    from imagebot.requirements import add_entry, parse_add_spec, set_path

    entry = parse_add_spec(ecosystem, package)
    options = {"--set": set_name, "--reason": reason, "--requested-by": requested_by}
    given = _required_add_options(ecosystem, package, options)
    config = state(ctx).config
    set_name = _known_add_target(config.requirements_dir, given["--set"])
    path = set_path(config.requirements_dir, set_name)
    import dataclasses

    added = add_entry(
        config.requirements_dir,
        set_name,
        dataclasses.replace(
            entry.with_metadata(given["--reason"], given["--requested-by"], import_name),
            safe_because=(safe_because or "").strip(),
        ),
    )
    write_atomically({path: added.text}, inside=config.root)
    console.info(f"added {added.description} to {shown(path, config)}:{added.line}")
    console.info("next: imagebot lock && imagebot render, then open a pull request")


def _required_add_options(
    ecosystem: str, package: str, options: Mapping[str, str | None]
) -> dict[str, str]:
    """`add`'s required options (flag -> value), stripped; a usage error names the missing."""
    given = {flag: (value or "").strip() for flag, value in options.items()}
    if missing := [flag for flag, value in given.items() if not value]:
        raise UsageError(
            f"imagebot add needs {', '.join(missing)}",
            f"e.g. imagebot add {ecosystem} {package} --set datascience "
            '--reason "why it is needed" --requested-by @you',
        )
    return given


def _known_add_target(requirements_dir: Path, set_name: str) -> str:
    """set_name when `add` can write to it (a set or index-only), else a usage error."""
    from imagebot.requirements import add_targets

    known = add_targets(requirements_dir)
    if set_name not in known:
        raise UsageError(
            f"unknown set {set_name!r}",
            f"use one of: {', '.join(known)} (or create requirements/{set_name}.toml)",
        )
    return set_name


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
    """Resolve the Python sets with uv into layered, hash-pinned requirements/<set>.lock, and the
    R packages served from a CRAN-like repository into requirements/cran.lock."""
    if check_only:
        run_lock_check(state(ctx))
    else:
        run_lock(state(ctx), upgrade=upgrade)


def run_lock(app_state: AppState, *, upgrade: bool) -> None:
    from imagebot.lock import cran_inputs, plan_layers, resolve_cran, resolve_locks, uv_resolver
    from imagebot.lockfile import read_text_or_none
    from imagebot.requirements import load_index_only

    config = app_state.config
    sets = all_sets(config)
    layers = plan_layers(config, sets)
    r = cran_inputs(
        config, sets.values(), load_index_only(config.requirements_dir, [*sets.values()])
    )
    if not layers and not r.roots and read_text_or_none(r.path) is None:
        console.info("no image has requirement sets and no R package is vetted: nothing to lock")
        return
    texts: dict[Path, str] = {}
    changed: list[Path] = []
    if layers:
        with console.group(f"lock {', '.join(layer.name for layer in layers)} (uv)"):
            result = resolve_locks(layers, read_text_or_none, uv_resolver(), upgrade=upgrade)
        texts.update(result.texts)
        changed.extend(result.changed)
    r_title = f"lock R: {len(r.roots)} vetted packages from a CRAN-like repository"
    with console.group(r_title) if r.roots else contextlib.nullcontext():
        cran = resolve_cran(r, read_text_or_none, _resolve_cran_lock, upgrade=upgrade)
    if cran.text is not None:
        texts[cran.path] = cran.text
        if cran.changed:
            changed.append(cran.path)
    write_atomically({path: texts[path] for path in changed}, inside=config.root)
    for path, text in texts.items():
        if path == cran.path:
            count = cran.packages
        else:
            count = sum(1 for line in text.splitlines() if line[:1].isalnum())
        state_word = "wrote" if path in changed else "unchanged"
        console.info(f"{state_word} {shown(path, config)} ({count} packages)")
    if cran.text is None and cran.changed:
        _remove(cran.path)
        console.info(
            f"removed {shown(cran.path, config)}: no R package is served from a CRAN-like "
            "repository"
        )


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ImagebotError(
            f"cannot remove {path}: {exc.strerror or exc}",
            "check the permissions of the directory and the file",
        ) from None


def _resolve_cran_lock(inputs: CranLockInputs) -> str:
    """requirements/cran.lock's text, from the upstreams' PACKAGES (the network)."""
    from imagebot.cran_upstream import CranUpstream, resolve_cran_lock
    from imagebot.cranlock import no_upstream_error

    if not inputs.upstreams:
        raise no_upstream_error(inputs.roots)
    upstreams = [CranUpstream(url, inputs.user_agent) for url in inputs.upstreams]
    console.info(f"reading the PACKAGES of {', '.join(u.url for u in upstreams)}")
    return resolve_cran_lock(inputs.roots, upstreams, inputs.user_agent)


# --- render ----------------------------------------------------------------------------------


def render(
    ctx: typer.Context,
    check_only: bool = typer.Option(
        False, "--check", help="Compare with the committed file; print a diff and exit 5 if stale."
    ),
) -> None:
    """Render jupyter/Dockerfile from imagebot.toml, the sets and their locks."""
    run_render(state(ctx), check_only=check_only)
