"""Commands: index build/serve, env check/script (vetted package index)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
