"""Every test starts from a neutral environment: a developer's (or the pipeline test's)
IMAGEBOT_PROFILE, IMAGEBOT_CONFIG or TF_BUILD must not change what a test sees."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cli_runner import Result, runner

_AMBIENT = ("IMAGEBOT_PROFILE", "IMAGEBOT_CONFIG", "TF_BUILD")


@pytest.fixture(autouse=True)
def _neutral_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _AMBIENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run `imagebot ARGS` in-process through the real error boundary (cli_runner.runner)."""
    return runner(capsys)
