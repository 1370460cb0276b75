"""The build/test/push/manifest/diff commands through the real CLI boundary, no engine needed:
argument and config errors fail before any engine or registry call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from paths import REPO_ROOT

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


def _outcomes() -> list[Any]:
    from imagebot.build import ImageOutcome
    from imagebot.tags import ImageRef

    digest = "sha256:" + "ab" * 32
    return [
        ImageOutcome(
            "lab", ImageRef("registry.example.org/jupyter/lab", "c0ffee", digest), True, True, 12.34
        ),
        ImageOutcome(
            "hub", ImageRef("registry.example.org/jupyter/hub", "beef"), False, False, 0.0
        ),
    ]


@pytest.mark.parametrize("command", ["build", "push"])
def test_json_output_is_each_outcomes_to_json_indented_by_two(
    run_cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """The one JSON style: result.to_json() printed by console.print_json; the bytes are the
    ones `json.dump(..., indent=2)` and a newline wrote before."""
    import json

    import imagebot.build

    monkeypatch.setattr(imagebot.build, "build_images", lambda *a, **k: _outcomes())
    monkeypatch.setattr(imagebot.build, "push_refs", lambda *a, **k: _outcomes())
    result = run_cli("-c", REPO_ROOT / "imagebot.toml", "--profile", "local", command, "--json")
    assert result.code == 0, result.err
    assert result.out == json.dumps([o.to_json() for o in _outcomes()], indent=2) + "\n"
    assert json.loads(result.out)[0] == {
        "image": "lab",
        "ref": "registry.example.org/jupyter/lab:c0ffee",
        "digest": "sha256:" + "ab" * 32,
        "built": True,
        "pushed": True,
        "seconds": 12.3,
    }
    plain = run_cli("-c", REPO_ROOT / "imagebot.toml", "--profile", "local", command)
    assert plain.out.splitlines() == [str(o.ref) for o in _outcomes()]
