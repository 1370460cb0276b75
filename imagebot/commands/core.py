"""Commands: check, add, lock, render (issue: requirement sets -> lock -> Dockerfile)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
