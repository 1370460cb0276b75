"""Commands: set-image, promote, status, rollback (GitOps repo edits).

Human output goes to stderr; stdout carries machine output: the edited YAML (`set-image
--stdout`), the diff and message (`--dry-run`), the commit sha, or `status --json`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagebot.files import Unreadable, read_text, write_atomically

if TYPE_CHECKING:
    from imagebot.promote import PackageDiff, PromoteResult


def register(app: typer.Typer) -> None:
    app.command("set-image")(set_image)
    app.command("promote")(promote)
    app.command("status")(status)
    app.command("rollback")(rollback)


def set_image(
    file: Path = typer.Argument(..., help="YAML file to edit (in place unless --stdout)."),
    image_ref: str = typer.Argument(
        ..., metavar="IMAGE_REF", help="registry/repo:tag[@sha256:...]"
    ),
    path: str | None = typer.Option(
        None, "--path", help="Dotted path with list indices, e.g. spec.values.singleuser.image."
    ),
    policy: str | None = typer.Option(
        None, "--policy", help='Flux marker policy NS:NAME (# {"$imagepolicy": "NS:NAME"}).'
    ),
    stdout: bool = typer.Option(False, "--stdout", help="Print the result instead of writing."),
) -> None:
    """Set one image in a YAML file, changing only the bytes of the target scalars."""
    from imagebot import console, yamledit
    from imagebot.errors import UsageError, YamlEditError
    from imagebot.promote_plan import parse_ref

    if (path is None) == (policy is None):
        raise UsageError("give exactly one of --path and --policy", "e.g. --path spec.values.x")
    if policy is not None and policy.count(":") != 1:
        raise UsageError(f"invalid --policy {policy!r}", "write it as NAMESPACE:NAME")
    ref = parse_ref(image_ref)
    try:
        original = read_text(file)
    except Unreadable as exc:
        raise YamlEditError(str(exc), "check the path") from None
    target = f"{yamledit.POLICY_PREFIX}{policy}" if policy else str(path)
    result = yamledit.set_image(original, target, ref, str(file))
    for change in result.changes:
        console.info(f"{file}:{change.line}: {change.path}: {change.old} -> {change.new}")
    if stdout:
        sys.stdout.write(result.text)
        sys.stdout.flush()
        return
    if not result.changed:
        console.info(f"{file}: already {ref}; nothing to change")
        return
    write_atomically({file: result.text})


def _package_diff(skip: bool) -> PackageDiff | None:
    from imagebot.promote import no_package_diff

    return no_package_diff if skip else None


def promote(
    ctx: typer.Context,
    environment: str = typer.Argument(..., help="Environment from imagebot.toml, e.g. staging."),
    images: list[str] = typer.Argument(
        None, metavar="[IMAGE[=REF]]...", help="Images to promote (default: all it deploys)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the diff and message only."),
    branch: str | None = typer.Option(
        None, "--branch", help="Push to this new branch (for a pull request) instead."
    ),
    no_package_diff: bool = typer.Option(
        False, "--no-package-diff", help="Skip the package diff in the commit message."
    ),
) -> None:
    """Set the environment's images in its GitOps repo, commit and push (race-safe)."""
    from imagebot import promote as promoting
    from imagebot.promote_plan import parse_image_args
    from imagebot.state import state

    config = state(ctx).config
    requested = parse_image_args(images or [])
    result = promoting.promote(
        config,
        environment,
        requested or None,
        dry_run=dry_run,
        branch=branch,
        env=os.environ,
        package_diff=_package_diff(no_package_diff),
    )
    _report(result)


def rollback(
    ctx: typer.Context,
    environment: str = typer.Argument(..., help="Environment from imagebot.toml."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the diff and message only."),
    branch: str | None = typer.Option(None, "--branch", help="Push to this new branch instead."),
    no_package_diff: bool = typer.Option(False, "--no-package-diff"),
) -> None:
    """Restore the environment's previous image refs from git history, as a new commit."""
    from imagebot.rollback import rollback as roll_back
    from imagebot.state import state

    result = roll_back(
        state(ctx).config,
        environment,
        dry_run=dry_run,
        branch=branch,
        env=os.environ,
        package_diff=_package_diff(no_package_diff),
    )
    _report(result)


def _report(result: PromoteResult) -> None:
    from imagebot import console

    where = f"{result.environment} ({result.file} on {result.branch})"
    if not result.changed:
        console.info(f"{where}: already up to date; nothing to commit")
        return
    for change in result.changes:
        console.info(f"{change.image} {change.target}: {change.old or '(unset)'} -> {change.new}")
    if result.dry_run:
        sys.stdout.write(result.diff + "\n" + result.message)
        console.info(f"{where}: dry run; nothing committed or pushed")
        return
    retries = f" after {result.attempts - 1} lost race(s)" if result.attempts > 1 else ""
    console.info(f"{where}: pushed {result.commit}{retries}")
    print(result.commit)


def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output on stdout."),
) -> None:
    """Per environment: the image refs it runs and whether the registry has them."""
    from imagebot import console
    from imagebot.state import state
    from imagebot.status import status as environment_status

    statuses = environment_status(state(ctx).config, env=os.environ)
    for env_status in statuses:
        for warning in env_status.warnings:
            console.warning(f"{env_status.environment}: {warning}")
    if as_json:
        console.print_json([env_status.to_json() for env_status in statuses])
        return
    for env_status in statuses:
        print(f"{env_status.environment} ({env_status.file})")
        for row in env_status.refs:
            exists = {True: "in registry", False: "MISSING", None: "unknown"}[row.exists]
            print(f"  {row.image:<14} {row.ref}  [{exists}]")
