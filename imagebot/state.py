"""What every command gets from the global options: the config path, the profile and verbosity.

Kept free of typer so that the entry point's fast path can build it without importing typer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from imagebot.config import Config


class _Context(Protocol):
    """The part of typer's (click's) Context that `state` reads; typer stays unimported here."""

    @property
    def obj(self) -> Any: ...

    def find_root(self) -> Any: ...


@dataclass
class AppState:
    config_path: Path
    profile: str | None
    verbose: bool = False
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        """Loaded on first use: `--help` and `--version` never read imagebot.toml."""
        if self._config is None:
            from imagebot.config import load_config

            self._config = load_config(self.config_path, self.profile, os.environ)
        return self._config


def state(ctx: _Context) -> AppState:
    """The AppState that the root callback (imagebot.cli.root) stored on the command's context."""
    obj = ctx.find_root().obj
    if not isinstance(obj, AppState):
        raise RuntimeError("imagebot bug: the root callback did not set the app state")
    return obj
