"""Commands: set-image, promote, status, rollback (GitOps repo edits)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
