"""`imagebot release staging` on the small fixture, against the real engine, registry and git.

The whole path in one command: build, smoke-test, push, promote. The smoke test's package list
is kept under the pushed digest, so the next promotion's package diff needs no container run.
A second run builds and commits nothing. An image that fails its smoke test is never pushed.
An image whose locked versions fail `imagebot audit` is never built (exit 15). The advisory
source is a directory of hand-written OSV records, so the gate's answer is known.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from imagebot.manifest import manifest_cache_path

from .conftest import (
    Run,
    Stack,
    lock_and_render,
    run_imagebot,
    small_release_project,
    write_six_advisory,
)
from .gitops_fixtures import IDENTITY, git, remote_head

pytestmark = pytest.mark.integration


@pytest.fixture
def project(stack: Stack, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the small fixture with a staging environment over a fresh bare remote."""
    return small_release_project(stack, tmp_path)


def _edit_set(stack: Stack, config: Path, old: str, new: str) -> None:
    toml = config.parent / "requirements" / "small.toml"
    toml.write_text(toml.read_text().replace(old, new))
    lock_and_render(stack, config)


def _env(stack: Stack, tmp_path: Path, **overrides: str) -> dict[str, str]:
    return stack.env(**IDENTITY, IMAGEBOT_CACHE_DIR=str(tmp_path / "cache"), **overrides)


def _release(config: Path, env: dict[str, str]) -> Run:
    return run_imagebot(["release", "staging", "--json"], env, config=config)


def test_release_builds_tests_pushes_promotes_and_is_idempotent(
    stack: Stack, project: tuple[Path, Path], tmp_path: Path
) -> None:
    config, remote = project
    stamp = secrets.token_hex(4)  # a content tag no earlier run pushed

    env = _env(stack, tmp_path, FIXTURE_STAMP=stamp)
    first = _release(config, env)
    assert first.returncode == 0, first.output
    summary = json.loads(first.stdout)
    (image,) = summary["images"]
    assert image["built"] and summary["tested"] == ["small"]
    digest = image["digest"]
    assert summary["promotion"]["commit"] == remote_head(remote)
    assert manifest_cache_path(digest, {"IMAGEBOT_CACHE_DIR": str(tmp_path / "cache")}).is_file()
    assert set(summary["timings"]) >= {"build", "test", "push", "promote staging"}

    head = remote_head(remote)
    again = _release(config, env)
    assert again.returncode == 0, again.output
    summary = json.loads(again.stdout)
    assert not summary["images"][0]["built"] and summary["tested"] == []
    assert summary["promotion"]["commit"] is None
    assert remote_head(remote) == head

    # An upgrade: the package diff comes from the manifests both smoke tests listed.
    _edit_set(stack, config, '"1.16.0"', '"1.17.0"')
    upgrade = _release(config, env)
    assert upgrade.returncode == 0, upgrade.output
    message = git("--git-dir", str(remote), "log", "-1", "--format=%B", "master")
    assert "~ six 1.16.0 -> 1.17.0" in message, message
    assert "[skip ci]" in message


def test_an_image_that_fails_its_smoke_test_is_neither_pushed_nor_promoted(
    stack: Stack, project: tuple[Path, Path], tmp_path: Path
) -> None:
    config, remote = project
    head = remote_head(remote)
    _edit_set(stack, config, 'version = "1.16.0"', 'version = "1.16.0", import = "six_missing"')
    env = _env(stack, tmp_path, FIXTURE_STAMP=secrets.token_hex(4))
    run = _release(config, env)
    assert run.returncode == 8, run.output
    assert "import six: import six_missing: ModuleNotFoundError" in run.stderr
    assert remote_head(remote) == head
    # Not in the registry: a build looks it up there and, not finding it, builds it.
    build = run_imagebot(["build", "--json", "small"], env, config=config)
    assert build.returncode == 0, build.output
    assert json.loads(build.stdout)[0]["built"], build.output


def test_release_builds_nothing_that_fails_the_audit(
    stack: Stack, project: tuple[Path, Path], tmp_path: Path
) -> None:
    config, remote = project
    head = remote_head(remote)
    write_six_advisory(
        tmp_path / "advisories", 2, "1.16.0", "1.17.0"
    )  # affects the pinned six 1.16.0
    env = _env(stack, tmp_path, FIXTURE_STAMP=secrets.token_hex(4))
    run = _release(config, env)
    assert run.returncode == 15, run.output
    assert "six==1.16.0 (small.lock): PYSEC-2099-2" in run.stderr
    assert "error: 1 known vulnerability not waived" in run.stderr
    assert remote_head(remote) == head
    # Nothing was pushed: a build still finds no image under the tag and builds it.
    build = run_imagebot(["build", "--json", "small"], env, config=config)
    assert build.returncode == 0, build.output
    assert json.loads(build.stdout)[0]["built"], build.output
