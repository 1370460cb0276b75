"""Command: release ENV, the whole path (verify, audit, build, test, push, promote) in one run."""

from __future__ import annotations

import os

import typer

from imagebot import console
from imagebot.state import state


def register(app: typer.Typer) -> None:
    app.command("release")(release)


def release(
    ctx: typer.Context,
    environment: str = typer.Argument(..., help="Environment from imagebot.toml, e.g. staging."),
    force: bool = typer.Option(
        False, "--force", help="Rebuild even if the tags are in the registry."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Verify, audit, build, test, push and promote ENV; idempotent (a second run does nothing).

    Nothing is built from locks that fail `imagebot audit` (exit 15).

    An environment with promote_from (prod) builds nothing: it gets the digests its source runs.
    """
    from imagebot.checks import run_check, run_lock_check, run_render
    from imagebot.release import release as run_release

    app_state = state(ctx)
    config = app_state.config
    config.environment(environment)  # an unknown name fails before any work
    verifications = [
        ("check", lambda: run_check(app_state)),
        ("lock --check", lambda: run_lock_check(app_state)),
        ("render --check", lambda: run_render(app_state, check_only=True)),
    ]
    result = run_release(
        config,
        environment,
        verifications,
        force=force,
        env=os.environ,
        reporter=console.ConsoleReporter(app_state.verbose),
    )
    for line in result.summary_lines():
        console.info(line)
    if as_json:
        console.print_json(result.to_json())
    else:
        for image, ref in result.refs.items():
            print(f"{image}={ref}")
