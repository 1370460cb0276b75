"""Human output on stderr: plain lines, Azure Pipelines folding, or rich on a TTY.

stdout is reserved for machine output (refs, digests, --json), so everything here writes to
stderr. Inside Azure Pipelines (TF_BUILD=True) stages fold with ##[group] and errors become
##vso[task.logissue] so they show on the run's summary page.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def in_pipeline() -> bool:
    return os.environ.get("TF_BUILD", "").lower() == "true"


def stderr_is_tty() -> bool:
    return sys.stderr.isatty() and not in_pipeline()


def info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _escape_vso(text: str) -> str:
    # Azure's logging-command escaping: these characters would end or split the command.
    return (
        text.replace("%", "%AZP25")
        .replace("\r", "%0D")
        .replace("\n", "%0A")
        .replace(";", "%3B")
        .replace("]", "%5D")
    )


def error(message: str, hint: str = "", details: list[str] | None = None) -> None:
    for line in details or []:
        info(line)
    info(f"error: {message}")
    if hint:
        info(f"hint: {hint}")
    if in_pipeline():
        text = f"{message} (hint: {hint})" if hint else message
        info(f"##vso[task.logissue type=error]{_escape_vso(text)}")


def warning(message: str) -> None:
    info(f"warning: {message}")
    if in_pipeline():
        info(f"##vso[task.logissue type=warning]{_escape_vso(message)}")


@contextmanager
def group(title: str) -> Iterator[None]:
    """A foldable stage: ##[group] in Azure, a heading elsewhere; prints its duration."""
    start = time.monotonic()
    if in_pipeline():
        info(f"##[group]{title}")
    else:
        info(f"==> {title}")
    try:
        yield
    finally:
        elapsed = time.monotonic() - start
        if in_pipeline():
            info("##[endgroup]")
        info(f"    {title}: {elapsed:.1f}s")
