"""Commands: release: the whole path in one command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
