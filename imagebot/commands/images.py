"""Commands: build, test, push, manifest, diff (Docker engine and registry)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
