"""Commands: impact (who needs a package and who pins it) and history (when each version
entered or left each set, the index, each registered environment and each deployed image).

`impact` is local and pure over the working tree (locks, cran.lock, sets, environments/), and
the entry point runs `impact PACKAGE [--json] [--r]` on its fast path (imagebot.checks);
`history [--r]` reads git: one log of this repository and one per GitOps repository
(imagebot.history). Reports go to stdout as text, or as JSON with `--json`.
"""

from __future__ import annotations

import typer

from imagebot.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("impact")(impact)
    app.command("history")(history)


def impact(
    ctx: typer.Context,
    package: str = typer.Argument(..., help="NAME or NAME==VERSION (as if the image moved to it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    r: bool = typer.Option(
        False, "--r", help="PACKAGE is an R package (its name as in cran.lock, case-sensitive)."
    ),
) -> None:
    """Who needs PACKAGE (every entry, directly or through dependencies, with requester and
    reason) and which registered environments pin it (owner; works or breaks at VERSION).
    Python by default; `--r` for an R package."""
    from imagebot.checks import run_impact
    from imagebot.state import state

    run_impact(state(ctx), package, as_json=as_json, r=r)


def history(
    ctx: typer.Context,
    package: str = typer.Argument(..., help="NAME of a Python package (of an R package with --r)."),
    as_json: bool = typer.Option(False, "--json", help="Print the history as JSON on stdout."),
    r: bool = typer.Option(
        False, "--r", help="PACKAGE is an R package (its name as in cran.lock, case-sensitive)."
    ),
    deployments: bool = typer.Option(
        True,
        "--deployments/--no-deployments",
        help="Also read the GitOps repositories' promotion commits (one clone each).",
    ),
) -> None:
    """When each version of PACKAGE entered or left each set, index-only.toml, each registered
    environment, the index and each environment's deployed image (from git history). Python
    by default; `--r` for an R package (sets' [r] entries, cran.lock, renv.lock environments)."""
    import os
    import sys

    from imagebot import console
    from imagebot.history import read_history
    from imagebot.impact import PYTHON, R, parse_package
    from imagebot.state import state

    ecosystem = R if r else PYTHON
    name, version = parse_package(package, ecosystem)
    if version is not None:
        flag = "--r " if r else ""
        raise UsageError(
            "history takes a NAME, not NAME==VERSION", f"imagebot history {flag}{name}"
        )
    config = state(ctx).config
    result = read_history(config, name, os.environ, deployments=deployments, ecosystem=ecosystem)
    if as_json:
        console.print_json(result.to_json())
        return
    sys.stdout.write("\n".join(result.lines()) + "\n")
    console.info(f"read {result.commits_read} commits")
