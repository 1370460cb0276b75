"""The entry point and its one error boundary.

Expected failures (ImagebotError) print `error:` and `hint:` lines and exit with the class's
code. An OSError on a named path (missing, a directory, no permission, disk full) and an input
file that is not UTF-8 are the user's environment, not imagebot's logic: one `error:` line,
exit 1 (`--verbose` adds the traceback). Anything else is a bug in imagebot: traceback, exit 70.
SIGINT and SIGTERM raise `Interrupted` through the stack, so every cleanup runs, and exit
128 + the signal number (130, 143). Under Azure Pipelines every line printed is neutralised
(imagebot.console.pipeline_output). `check`, `lock --check` and `render --check` take a fast
path that never imports typer (imagebot.checks.fast_path).
"""

from __future__ import annotations

import errno
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PurePath
from types import FrameType, TracebackType

from imagebot import console
from imagebot.errors import (
    INTERNAL_ERROR_EXIT,
    INTERRUPTED_EXIT,
    TERMINATED_EXIT,
    ImagebotError,
    Interrupted,
    StaleError,
)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# OSError numbers that describe the user's files or machine; any other errno is a bug.
_ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EACCES,
        errno.EPERM,
        errno.ENOSPC,
        errno.EROFS,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.EDQUOT,
    }
)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    verbose = "--verbose" in args or "-v" in args
    with console.pipeline_output():
        with signals_raise_interrupted() as received:
            try:
                code = run_with_boundary(lambda: _dispatch(args), verbose=verbose)
            except KeyboardInterrupt:  # the signal came while the boundary reported an error
                code = INTERRUPTED_EXIT
        if received:
            # typer turns any KeyboardInterrupt into Exit(130), and code may swallow one: the
            # first signal decides the exit code whichever way it went up the stack.
            code = 128 + received[0]
        if code in (INTERRUPTED_EXIT, TERMINATED_EXIT):
            console.info("terminated" if code == TERMINATED_EXIT else "interrupted")
    sys.exit(code)


def _dispatch(args: list[str]) -> int:
    from imagebot.checks import fast_path

    if fast_path(args):
        return 0
    from imagebot.cli import app

    # standalone_mode=False: errors reach the boundary below, and typer.Exit(n) (and the
    # Exit(130) typer makes of a KeyboardInterrupt) comes back as the return value.
    code = app(args=args, prog_name="imagebot", standalone_mode=False)
    return code if type(code) is int else 0


@contextmanager
def signals_raise_interrupted() -> Iterator[list[int]]:
    """While imagebot runs, SIGINT and SIGTERM raise Interrupted; yields the signals received.

    Only the first signal raises: later ones (a CI agent sends SIGINT, then SIGTERM) are
    recorded but must not cut short the cleanup the first one started. The previous handlers
    come back afterwards (tests call main in-process).
    """
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Interrupted(signum)

    previous: dict[signal.Signals, object] = {}
    try:
        for handled in HANDLED_SIGNALS:
            previous[handled] = signal.signal(handled, handler)
    except ValueError:  # not the main thread: signals are not ours to handle
        pass
    try:
        yield received
    finally:
        for handled, old in previous.items():
            signal.signal(handled, old)  # type: ignore[arg-type]


def run_with_boundary(body: Callable[[], object], *, verbose: bool = False) -> int:
    """Run body; turn every way it can end into an exit code (body may return one)."""
    try:
        code = body()
    except StaleError as exc:
        if exc.diff:
            sys.stdout.write(exc.diff)
            sys.stdout.flush()
        console.error(exc.message, exc.hint, exc.detail_lines())
        return exc.exit_code
    except ImagebotError as exc:
        console.error(exc.message, exc.hint, exc.detail_lines())
        return exc.exit_code
    except KeyboardInterrupt as exc:  # main prints the message: typer may have eaten this one
        return 128 + (exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)
    except BrokenPipeError:
        return 0
    except Exception as exc:
        import traceback  # only a failure pays for it (linecache, tokenize): not the fast path

        typer_code = _typer_exit_code(exc)
        if typer_code is not None:
            return typer_code
        environment = _environment_failure(exc)
        if environment is not None:
            if verbose:
                traceback.print_exc()
            console.error(*environment)
            return ImagebotError.exit_code
        traceback.print_exc()
        console.error(
            "internal error: this is a bug in imagebot",
            "please report it with the traceback above",
        )
        return INTERNAL_ERROR_EXIT
    return code if type(code) is int else 0


def _environment_failure(exc: Exception) -> tuple[str, str] | None:
    """(message, hint) for a failure of the user's files or machine; None for a bug."""
    if isinstance(exc, OSError) and exc.filename and exc.errno in _ENVIRONMENT_ERRNOS:
        return (
            f"{exc.filename}: {exc.strerror}",
            "check the path and its permissions (--verbose shows where imagebot tripped)",
        )
    if isinstance(exc, UnicodeDecodeError):
        path = _path_being_read(exc.__traceback__)
        if path is None:  # not a file read: bytes from a tool or a service, a bug to report
            return None
        return (
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})",
            "save the file as UTF-8",
        )
    return None


def _path_being_read(tb: TracebackType | None) -> PurePath | None:
    """The Path whose read_text/read_bytes/open raised (the innermost pathlib frame)."""
    found: PurePath | None = None
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, PurePath):
            found = owner
        tb = tb.tb_next
    return found


def _typer_exit_code(exc: Exception) -> int | None:
    """Exit codes of typer's own control flow; None when exc is not typer's."""
    if "typer" not in sys.modules:  # the fast path never imports typer
        return None
    import typer

    if isinstance(exc, typer.Exit):
        return exc.exit_code
    if isinstance(exc, typer.Abort):  # EOF on a prompt
        return INTERRUPTED_EXIT
    if isinstance(exc, typer.TyperException):  # usage errors: one error line like ours
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "imagebot"
        console.error(exc.format_message(), f"run `{command} --help` for its arguments")
        return exc.exit_code
    return None
