"""Everything imagebot prints: human lines on stderr, machine output on stdout.

stdout is reserved for machine output (refs, digests, and `print_json` for every --json), so
the human helpers here write to stderr: plain lines, Azure Pipelines folding, and the build's
progress (`ConsoleReporter`: rich on a TTY, plain lines elsewhere).

Inside Azure Pipelines (TF_BUILD=True) the agent runs any line containing `##vso[` as a
logging command, and its log viewer formats `##[...]`. This module is the only place that
writes them: stages fold with ##[group] and errors become ##vso[task.logissue] so they show on
the run's summary page. Everything else printed while `pipeline_output` is active (the entry
point's) has those markers neutralised, so no table name, package name or message can emit a
command.
"""

from __future__ import annotations

import io
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

# A logging command (`##vso[`) or a formatting command (`##[`), anywhere in a line.
_MARKER = re.compile(r"##(?=vso\[|\[)", re.IGNORECASE)
# The end of a write that could be the first part of a marker finished by the next write.
_PARTIAL_MARKER = re.compile(r"#(?:#(?:v(?:s(?:o)?)?)?)?\Z", re.IGNORECASE)


def in_pipeline() -> bool:
    return os.environ.get("TF_BUILD", "").lower() == "true"


def stderr_is_tty() -> bool:
    return sys.stderr.isatty() and not in_pipeline()


def info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def print_json(value: object, *, sort_keys: bool = False, indent: int = 2) -> None:
    """Machine output: one JSON document and a newline on stdout.

    `value` is what a result's `to_json()` returns: dicts, lists, str, int, float, bool, None.
    """
    import json

    sys.stdout.write(json.dumps(value, indent=indent, sort_keys=sort_keys) + "\n")
    sys.stdout.flush()


def neutralise(text: str) -> str:
    """Text in which the agent sees no logging or formatting command (`##` becomes `**`)."""
    return _MARKER.sub("**", text)


def _escape_vso(text: str) -> str:
    # Azure's logging-command escaping: these characters would end or split the command.
    return (
        text.replace("%", "%AZP25")
        .replace("\r", "%0D")
        .replace("\n", "%0A")
        .replace(";", "%3B")
        .replace("]", "%5D")
    )


def _command(line: str) -> None:
    """Write one of imagebot's own Azure commands, past the neutralising stream."""
    stream = sys.stderr
    if isinstance(stream, _Neutralising):
        stream.flush()
        stream = stream.raw
    stream.write(line + "\n")
    stream.flush()


def _one_line(text: str) -> str:
    return neutralise(" ".join(text.splitlines()))


def error(message: str, hint: str = "", details: list[str] | None = None) -> None:
    for line in details or []:
        info(line)
    info(f"error: {message}")
    if hint:
        info(f"hint: {hint}")
    if in_pipeline():
        text = f"{message} (hint: {hint})" if hint else message
        _command(f"##vso[task.logissue type=error]{_escape_vso(neutralise(text))}")


def warning(message: str) -> None:
    info(f"warning: {message}")
    if in_pipeline():
        _command(f"##vso[task.logissue type=warning]{_escape_vso(neutralise(message))}")


def upload_summary(path: Path) -> None:
    """Attach a Markdown file to the run's summary page (Azure Pipelines only)."""
    if in_pipeline():
        _command(f"##vso[task.uploadsummary]{_escape_vso(neutralise(str(path.resolve())))}")


@contextmanager
def group(title: str) -> Iterator[None]:
    """A foldable stage: ##[group] in Azure, a heading elsewhere; prints its duration."""
    start = time.monotonic()
    if in_pipeline():
        _command(f"##[group]{_one_line(title)}")
    else:
        info(f"==> {title}")
    try:
        yield
    finally:
        elapsed = time.monotonic() - start
        if in_pipeline():
            _command("##[endgroup]")
        info(f"    {title}: {elapsed:.1f}s")


@contextmanager
def pipeline_output() -> Iterator[None]:
    """Under Azure Pipelines, neutralise command markers in all that stdout and stderr get.

    Covers every writer in the process (print, typer's usage errors, tracebacks, rich); only
    `_command` reaches the real stream. Outside a pipeline nothing changes.
    """
    if not in_pipeline():
        yield
        return
    out, err = sys.stdout, sys.stderr
    guarded_out, guarded_err = _Neutralising(out), _Neutralising(err)
    sys.stdout, sys.stderr = guarded_out, guarded_err
    try:
        yield
    finally:
        guarded_out.release()
        guarded_err.release()
        sys.stdout, sys.stderr = out, err


class _Neutralising(io.TextIOBase):
    """A text stream that writes through to `raw` with `neutralise` applied.

    A marker split over two writes is caught by holding back a tail that could start one until
    the next write (or `release`).
    """

    def __init__(self, raw: TextIO) -> None:
        super().__init__()
        self.raw = raw
        self._held = ""

    def write(self, text: str) -> int:
        pending = self._held + text
        partial = _PARTIAL_MARKER.search(pending)
        cut = partial.start() if partial else len(pending)
        self._held = pending[cut:]
        self.raw.write(neutralise(pending[:cut]))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def release(self) -> None:
        """Write what was held back and flush: the end of the output."""
        held, self._held = self._held, ""
        try:
            self.raw.write(neutralise(held))
            self.raw.flush()
        except (BrokenPipeError, ValueError):  # the reader went away, or the stream closed
            pass

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.raw.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.raw.errors


class ConsoleReporter:
    """Build/push progress on stderr (imagebot.build.Reporter).

    In a pipeline or when stderr is not a TTY every line is printed, folded per stage. On a
    TTY a rich status line shows the current step and only step headers and errors scroll by.
    """

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self._status: Any = None
        self._rich: Any = None
        if stderr_is_tty():
            from rich.console import Console

            self._rich = Console(stderr=True, highlight=False)

    @contextmanager
    def stage(self, title: str) -> Iterator[None]:
        if self._rich is None:
            with group(title):
                yield
            return
        with group(title), self._rich.status(title) as status:
            self._status = status
            try:
                yield
            finally:
                self._status = None

    def line(self, text: str) -> None:
        if self._status is None:
            info(text)
            return
        width = max(20, self._rich.width - 6)  # one line: a wrapped status line flickers
        self._status.update(" ".join(text.split())[:width] or " ")
        if self.verbose or _is_step_header(text) or "ERROR" in text or "error" in text[:40]:
            self._rich.print(text, markup=False)

    def note(self, text: str) -> None:
        info(text)


def _is_step_header(text: str) -> bool:
    # BuildKit plain output: "#7 [3/9] RUN pip install ..." and "#7 DONE 4.1s" / "#7 CACHED".
    parts = text.split(" ", 2)
    return len(parts) >= 2 and parts[0].startswith("#") and parts[1].startswith("[")
