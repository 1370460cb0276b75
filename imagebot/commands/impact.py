"""Commands: impact (who needs a package and who pins it) and history (when each version
entered or left each set, the index, each registered environment and each deployed image).

`impact` is local and pure over the working tree (locks, sets, environments/); `history` reads
git: one log of this repository and one per GitOps repository (imagebot.history). Reports go to
stdout as text, or as JSON with `--json`.
"""

from __future__ import annotations

import typer

from imagebot.errors import ImagebotError, UsageError


def register(app: typer.Typer) -> None:
    app.command("impact")(impact)
    app.command("history")(history)


def parse_package(argument: str) -> tuple[str, str | None]:
    """`NAME` or `NAME==VERSION`, each part by its rule; a UsageError otherwise."""
    from imagebot import validate

    name, sep, version = argument.partition("==")
    try:
        validate.python_name(name)
        if sep:
            validate.python_version(version)
    except validate.InvalidValue as exc:
        raise UsageError(f"PACKAGE: {exc.message}", "write NAME or NAME==VERSION") from None
    return name, (version if sep else None)


def impact(
    ctx: typer.Context,
    package: str = typer.Argument(..., help="NAME or NAME==VERSION (as if the image moved to it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Who needs PACKAGE (every entry, directly or through dependencies, with requester and
    reason) and which registered environments pin it (owner; works or breaks at VERSION)."""
    import sys

    from imagebot import console
    from imagebot.environments import registered
    from imagebot.impact import load_snapshot, package_lines, package_report
    from imagebot.requirements import normalize
    from imagebot.state import state

    name, version = parse_package(package)
    config = state(ctx).config
    environments = registered(config)
    snapshot = load_snapshot(config)
    report = package_report(name, version, snapshot, environments)
    if report.old is None and not report.needs and not report.environments:
        raise ImagebotError(
            f"{normalize(name)} is in no lock, entry or registered environment",
            "check the spelling (PEP 503 names: imagebot impact NAME)",
        )
    if as_json:
        layer = snapshot.layer.get(report.name)
        console.print_json({**report.to_json(), "set": layer})
        return
    sys.stdout.write("\n".join(package_lines(report)) + "\n")


def history(
    ctx: typer.Context,
    package: str = typer.Argument(..., help="NAME of a Python package."),
    as_json: bool = typer.Option(False, "--json", help="Print the history as JSON on stdout."),
    deployments: bool = typer.Option(
        True,
        "--deployments/--no-deployments",
        help="Also read the GitOps repositories' promotion commits (one clone each).",
    ),
) -> None:
    """When each version of PACKAGE entered or left each set, index-only.toml, each registered
    environment, the index and each environment's deployed image (from git history)."""
    import os
    import sys

    from imagebot import console
    from imagebot.history import read_history
    from imagebot.state import state

    name, version = parse_package(package)
    if version is not None:
        raise UsageError("history takes a NAME, not NAME==VERSION", f"imagebot history {name}")
    config = state(ctx).config
    result = read_history(config, name, os.environ, deployments=deployments)
    if as_json:
        console.print_json(result.to_json())
        return
    sys.stdout.write("\n".join(result.lines()) + "\n")
    console.info(f"read {result.commits_read} commits")
