"""The entry point and its one error boundary.

Expected failures (ImagebotError) print `error:` and `hint:` lines and exit with the class's
code; anything else is a bug in imagebot: traceback, exit 70. `check`, `lock --check` and
`render --check` take a fast path that never imports typer (imagebot.checks.fast_path).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from imagebot import console
from imagebot.errors import INTERNAL_ERROR_EXIT, INTERRUPTED_EXIT, ImagebotError, StaleError


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    sys.exit(run_with_boundary(lambda: _dispatch(args)))


def _dispatch(args: list[str]) -> None:
    from imagebot.checks import fast_path

    if not fast_path(args):
        from imagebot.cli import app

        app(args=args, prog_name="imagebot", standalone_mode=False)


def run_with_boundary(body: Callable[[], None]) -> int:
    """Run body; turn every way it can end into an exit code."""
    try:
        body()
    except StaleError as exc:
        if exc.diff:
            sys.stdout.write(exc.diff)
            sys.stdout.flush()
        console.error(exc.message, exc.hint, exc.detail_lines())
        return exc.exit_code
    except ImagebotError as exc:
        console.error(exc.message, exc.hint, exc.detail_lines())
        return exc.exit_code
    except KeyboardInterrupt:
        console.info("interrupted")
        return INTERRUPTED_EXIT
    except BrokenPipeError:
        return 0
    except Exception as exc:
        typer_code = _typer_exit_code(exc)
        if typer_code is not None:
            return typer_code
        traceback.print_exc()
        console.error(
            "internal error: this is a bug in imagebot",
            "please report it with the traceback above",
        )
        return INTERNAL_ERROR_EXIT
    return 0


def _typer_exit_code(exc: Exception) -> int | None:
    """Exit codes of typer's own control flow; None when exc is not typer's."""
    if "typer" not in sys.modules:  # the fast path never imports typer
        return None
    import typer

    if isinstance(exc, typer.Exit):
        return exc.exit_code
    if isinstance(exc, typer.Abort):
        console.info("interrupted")
        return INTERRUPTED_EXIT
    if isinstance(exc, typer.TyperException):  # usage errors: typer formats them itself
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            console.error(exc.format_message())
        return exc.exit_code
    return None
