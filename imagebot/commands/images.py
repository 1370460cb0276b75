"""Commands: build, push, test, manifest, diff (Docker engine and registry).

Each parses its options, calls one operation (imagebot.build, smoke, manifest) and prints:
refs and --json on stdout, progress on stderr (imagebot.console.ConsoleReporter).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagebot import console
from imagebot.state import state

if TYPE_CHECKING:
    from imagebot.build import ImageOutcome

AS_JSON = typer.Option(False, "--json", help="Print refs and digests as JSON.")
IMAGES = typer.Argument(None, help="Images from imagebot.toml (default: all).")
ONE_IMAGE = typer.Argument(..., help="Image name from imagebot.toml, or a full ref.")


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("push")(push)
    app.command("test")(smoke)
    app.command("manifest")(manifest)
    app.command("diff")(diff)


def build(
    ctx: typer.Context,
    images: list[str] = IMAGES,
    push: bool = typer.Option(False, "--push", help="Push after building; print ref@digest."),
    force: bool = typer.Option(False, "--force", help="Build even if the tag is in the registry."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the build cache."),
    ca_bundle: Path | None = typer.Option(
        None,
        "--ca-bundle",
        envvar="IMAGEBOT_CA_BUNDLE",
        exists=True,
        dir_okay=False,
        readable=True,
        help="CA bundle passed to the build as BuildKit secret 'ca-certificates'.",
    ),
    as_json: bool = AS_JSON,
) -> None:
    """Build images with BuildKit; the tag is a hash of the build inputs."""
    from imagebot.build import BuildOptions, build_images

    app_state = state(ctx)
    options = BuildOptions(force=force, push=push, no_cache=no_cache, ca_bundle=ca_bundle)
    outcomes = build_images(
        app_state.config,
        images or [],
        options,
        env=os.environ,
        reporter=console.ConsoleReporter(app_state.verbose),
    )
    _print_outcomes(outcomes, as_json)


def push(
    ctx: typer.Context,
    images: list[str] = typer.Argument(None, help="Image names or refs (default: all)."),
    as_json: bool = AS_JSON,
) -> None:
    """Push built images; prints ref@digest as read back from the registry."""
    from imagebot.build import push_refs

    app_state = state(ctx)
    outcomes = push_refs(
        app_state.config,
        images or [],
        env=os.environ,
        reporter=console.ConsoleReporter(app_state.verbose),
    )
    _print_outcomes(outcomes, as_json)


def smoke(
    ctx: typer.Context,
    image: str = ONE_IMAGE,
    timeout: float = typer.Option(600, "--timeout", help="Seconds for the in-image checks."),
) -> None:
    """Smoke-test an image: imports, pinned versions, pip check, R packages, Jupyter."""
    from imagebot.smoke import smoke_test

    report = smoke_test(state(ctx).config, image, env=os.environ, timeout=timeout)
    for line in report.lines():
        console.info(line)
    report.raise_for_failures()
    print(report.ref)


def manifest(
    ctx: typer.Context,
    image: str = ONE_IMAGE,
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """List the pip, R and dpkg packages installed in an image."""
    from imagebot.manifest import read_manifest

    found = read_manifest(state(ctx).config, image, env=os.environ)
    if as_json:
        console.print_json(found.to_json(), sort_keys=True)
    else:
        sys.stdout.write(found.render())


def diff(
    ctx: typer.Context,
    old: str = typer.Argument(..., help="The image before (name or ref)."),
    new: str = typer.Argument(..., help="The image after (name or ref)."),
    as_json: bool = typer.Option(False, "--json", help="Print the diff as JSON."),
) -> None:
    """Packages added, removed or changed between two images, per ecosystem."""
    from imagebot.manifest import diff_manifests, read_manifest

    config = state(ctx).config
    changes = diff_manifests(
        read_manifest(config, old, env=os.environ), read_manifest(config, new, env=os.environ)
    )
    if as_json:
        console.print_json(changes.to_json())
    else:
        sys.stdout.write(changes.render())


def _print_outcomes(outcomes: Sequence[ImageOutcome], as_json: bool) -> None:
    if as_json:
        console.print_json([o.to_json() for o in outcomes])
        return
    for outcome in outcomes:
        print(outcome.ref)
    sys.stdout.flush()
