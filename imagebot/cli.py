"""The typer app and the one error boundary.

Commands live in imagebot/commands/<area>.py and only import heavy libraries (docker, git,
ruamel) inside their bodies, so `imagebot check` and `render --check` stay cheap.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagebot import __version__
from imagebot.errors import INTERNAL_ERROR_EXIT, INTERRUPTED_EXIT, ImagebotError, StaleError

if TYPE_CHECKING:
    from imagebot.config import Config

app = typer.Typer(
    name="imagebot",
    help="Vetted requirement sets -> locked, rendered JupyterLab images -> GitOps promotion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@dataclass
class AppState:
    config_path: Path
    profile: str | None
    verbose: bool = False
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            from imagebot.config import load_config

            self._config = load_config(self.config_path, self.profile, os.environ)
        return self._config


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    assert isinstance(obj, AppState)  # set by the callback below; a bug otherwise
    return obj


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


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; turn expected failures into `error:`/`hint:` and an exit code."""
    from imagebot import console

    try:
        from imagebot.commands.core import fast_path

        # check / lock --check / render --check skip typer's parser: see fast_path.
        if not fast_path(sys.argv[1:] if argv is None else argv):
            app(args=argv, prog_name="imagebot", standalone_mode=False)
    except StaleError as exc:
        if exc.diff:
            sys.stdout.write(exc.diff)
            sys.stdout.flush()
        console.error(exc.message, exc.hint, exc.detail_lines())
        sys.exit(exc.exit_code)
    except ImagebotError as exc:
        console.error(exc.message, exc.hint, exc.detail_lines())
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: typer formats them itself
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            console.error(exc.format_message())
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        console.info("interrupted")
        sys.exit(INTERRUPTED_EXIT)
    except BrokenPipeError:
        sys.exit(0)
    except Exception:
        traceback.print_exc()
        console.error(
            "internal error: this is a bug in imagebot",
            "please report it with the traceback above",
        )
        sys.exit(INTERNAL_ERROR_EXIT)
