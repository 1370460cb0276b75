"""The build/test/push/manifest/diff commands through the real CLI boundary, no engine needed:
argument and config errors fail before any engine or registry call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
Result = Any  # tests/unit/conftest.py's Result (conftest is not importable as a module)


def test_commands_are_registered(run_cli: Callable[..., Result]) -> None:
    result = run_cli("--help")
    for command in ("build", "test", "push", "manifest", "diff"):
        assert f"  {command}" in result.out


def test_unknown_image_fails_before_touching_the_engine(run_cli: Callable[..., Result]) -> None:
    result = run_cli("-c", REPO_ROOT / "imagebot.toml", "--profile", "local", "build", "nosuch")
    assert result.code == 3
    assert result.error_lines == ["error: unknown image 'nosuch'"]
    assert result.hint_lines == ["hint: known images: jupyterlab, jupyterhub"]


def test_missing_basic_credentials_say_what_to_set(
    run_cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMAGEBOT_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("IMAGEBOT_REGISTRY_PASSWORD", raising=False)
    result = run_cli("-c", REPO_ROOT / "imagebot.toml", "--profile", "local", "push", "jupyterlab")
    assert result.code == 9
    assert "IMAGEBOT_REGISTRY_PASSWORD" in result.hint_lines[0]


def test_malformed_ref_is_a_usage_error(run_cli: Callable[..., Result]) -> None:
    result = run_cli("-c", REPO_ROOT / "imagebot.toml", "manifest", "bad ref:with space")
    assert result.code == 2
