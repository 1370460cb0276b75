"""`imagebot ARGS` in-process through the real error boundary: one runner for every suite.

tests/conftest.py makes `runner` the `run_cli` fixture of every suite; `Result` is imported
from here (`pythonpath = ["tests"]`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagebot.errors import INTERNAL_ERROR_EXIT


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]

    @property
    def hint_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("hint:")]


def runner(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run `imagebot ARGS` in-process through the real error boundary."""
    from imagebot.main import main

    def run(*args: str | Path) -> Result:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        assert code != INTERNAL_ERROR_EXIT, captured.err
        assert "Traceback" not in captured.err
        return Result(code, captured.out, captured.err)

    return run
