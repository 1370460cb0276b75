"""The typer app: global options and command registration (the boundary is imagebot.main).

Commands live in imagebot/commands/<area>.py and only import heavy libraries (docker, git,
ruamel) inside their bodies, so that each command pays only for what it uses.
"""

from __future__ import annotations

from pathlib import Path

import typer

from imagebot import __version__
from imagebot.state import AppState

app = typer.Typer(
    name="imagebot",
    help="Vetted requirement sets -> locked, rendered JupyterLab images -> GitOps promotion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"imagebot {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path = typer.Option(
        Path("imagebot.toml"),
        "--config",
        "-c",
        envvar="IMAGEBOT_CONFIG",
        help="Path to imagebot.toml.",
    ),
    profile: str | None = typer.Option(
        None,
        "--profile",
        "-p",
        envvar="IMAGEBOT_PROFILE",
        help="Config profile to merge over the defaults, e.g. 'local'.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More progress output."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    ctx.obj = AppState(config_path=config, profile=profile or None, verbose=verbose)


def _register() -> None:
    from imagebot.commands import ALL

    for module in ALL:
        module.register(app)


_register()
