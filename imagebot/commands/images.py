"""Commands: build, test, push, manifest, diff (Docker engine and registry).

Thin wrappers: parse options, call imagebot.build / smoke / manifest, print refs on stdout and
progress on stderr (rich on a TTY, plain lines with ##[group] folding in Azure Pipelines).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from imagebot import console

if TYPE_CHECKING:
    from imagebot.build import ImageOutcome


class ConsoleReporter:
    """Build/push progress on stderr.

    In a pipeline or when stderr is not a TTY every line is printed, folded per stage. On a
    TTY a rich status line shows the current step and only step headers and errors scroll by.
    """

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self._status: Any = None
        self._rich: Any = None
        if console.stderr_is_tty():
            from rich.console import Console

            self._rich = Console(stderr=True, highlight=False)

    @contextmanager
    def stage(self, title: str) -> Iterator[None]:
        if self._rich is None:
            with console.group(title):
                yield
            return
        with console.group(title), self._rich.status(title) as status:
            self._status = status
            try:
                yield
            finally:
                self._status = None

    def line(self, text: str) -> None:
        if self._status is None:
            console.info(text)
            return
        width = max(20, self._rich.width - 6)  # one line: a wrapped status line flickers
        self._status.update(" ".join(text.split())[:width] or " ")
        if self.verbose or _is_step_header(text) or "ERROR" in text or "error" in text[:40]:
            self._rich.print(text, markup=False)

    def note(self, text: str) -> None:
        console.info(text)


def _is_step_header(text: str) -> bool:
    # BuildKit plain output: "#7 [3/9] RUN pip install ..." and "#7 DONE 4.1s" / "#7 CACHED".
    parts = text.split(" ", 2)
    return len(parts) >= 2 and parts[0].startswith("#") and parts[1].startswith("[")


def _print_outcomes(outcomes: Sequence[ImageOutcome], as_json: bool) -> None:
    if as_json:
        json.dump([o.as_json() for o in outcomes], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for outcome in outcomes:
            print(outcome.ref)
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    from imagebot.state import state

    @app.command()
    def build(
        ctx: typer.Context,
        images: list[str] = typer.Argument(None, help="Images from imagebot.toml (default: all)."),
        push: bool = typer.Option(False, "--push", help="Push after building; print ref@digest."),
        force: bool = typer.Option(
            False, "--force", help="Build even if the tag is in the registry."
        ),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the build cache."),
        ca_bundle: Path | None = typer.Option(
            None,
            "--ca-bundle",
            envvar="IMAGEBOT_CA_BUNDLE",
            help="CA bundle passed to the build as BuildKit secret 'ca-certificates'.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print refs and digests as JSON."),
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
            reporter=ConsoleReporter(app_state.verbose),
        )
        _print_outcomes(outcomes, as_json)

    @app.command(name="push")
    def push_command(
        ctx: typer.Context,
        images: list[str] = typer.Argument(None, help="Image names or refs (default: all)."),
        as_json: bool = typer.Option(False, "--json", help="Print refs and digests as JSON."),
    ) -> None:
        """Push built images; prints ref@digest as read back from the registry."""
        from imagebot.build import push_refs

        app_state = state(ctx)
        outcomes = push_refs(
            app_state.config,
            images or [],
            env=os.environ,
            reporter=ConsoleReporter(app_state.verbose),
        )
        _print_outcomes(outcomes, as_json)

    @app.command(name="test")
    def test_command(
        ctx: typer.Context,
        image: str = typer.Argument(..., help="Image name from imagebot.toml, or a full ref."),
        timeout: float = typer.Option(600, "--timeout", help="Seconds for the in-image checks."),
    ) -> None:
        """Smoke-test an image: imports, pinned versions, pip check, R packages, Jupyter."""
        from imagebot.smoke import smoke_test

        report = smoke_test(state(ctx).config, image, env=os.environ, timeout=timeout)
        for line in report.lines():
            console.info(line)
        report.raise_for_failures()
        print(report.ref)

    @app.command()
    def manifest(
        ctx: typer.Context,
        image: str = typer.Argument(..., help="Image name from imagebot.toml, or a full ref."),
        as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
    ) -> None:
        """List the pip, R and dpkg packages installed in an image."""
        from imagebot.manifest import read_manifest

        found = read_manifest(state(ctx).config, image, env=os.environ)
        if as_json:
            console.print_json(found.to_json(), sort_keys=True)
        else:
            sys.stdout.write(found.render())

    @app.command()
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
