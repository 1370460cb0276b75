"""What every command gets from the global options: the config path, the profile and verbosity.

Kept free of typer so that the entry point's fast path can build it without importing typer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagebot.config import Config


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
