"""The base image: which reference a build starts from, and the scheduled run that notices a
new base under the same tag (issue 16, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import REPO_ROOT

from imagebot import base_image
from imagebot.config import load_config


def test_the_base_is_the_build_arg_then_the_configured_base() -> None:
    local = load_config(REPO_ROOT / "imagebot.toml", "local", {})
    production = load_config(REPO_ROOT / "imagebot.toml", None, {})
    assert base_image.base_reference(local, "jupyterlab") == "imagebot-local/bookworm-python:3.11"
    assert (
        base_image.base_reference(production, "jupyterlab")
        == "docker.io/library/python:3.11-slim-bookworm"
    )
    assert (
        base_image.base_reference(production, "jupyterhub")
        == "docker.io/library/python:3.11-slim-bookworm"
    )


def test_without_a_configured_base_the_dockerfile_default_counts(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE=example.org/base:1\nFROM ${BASE_IMAGE}\n")
    (tmp_path / "Plain").write_text("FROM example.org/plain:2 AS x\n")
    (tmp_path / "imagebot.toml").write_text(
        '[registry]\nurl = "registry.example.org/j"\n'
        '[images.a]\ndockerfile = "Dockerfile"\n[images.b]\ndockerfile = "Plain"\n'
    )
    config = load_config(tmp_path / "imagebot.toml", None, {})
    assert base_image.base_reference(config, "a") == "example.org/base:1"
    assert base_image.base_reference(config, "b") == "example.org/plain:2"


def test_an_unresolvable_base_leaves_the_digest_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(REPO_ROOT / "imagebot.toml", None, {})
    monkeypatch.setattr(base_image, "_local_image", lambda reference, env: None)
    monkeypatch.setattr(base_image, "_registry_digest", lambda config, ref, env: None)
    monkeypatch.setattr(base_image, "_RESOLVED", {})
    found = base_image.resolve(config, "jupyterlab", {})
    assert found.digest is None and found.pinned is None
    assert base_image.content_ref(config, "jupyterlab", {}).tag


def test_a_local_only_base_is_its_image_id_and_a_pulled_one_its_registry_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = load_config(REPO_ROOT / "imagebot.toml", None, {})
    monkeypatch.setattr(base_image, "_RESOLVED", {})
    monkeypatch.setattr(base_image, "_local_image", lambda reference, env: ("sha256:id", []))
    assert base_image.resolve(config, "jupyterlab", {}).digest == "sha256:id"
    monkeypatch.setattr(base_image, "_RESOLVED", {})
    pulled = ("sha256:id", ["docker.io/library/python@sha256:old"])
    monkeypatch.setattr(base_image, "_local_image", lambda reference, env: pulled)
    monkeypatch.setattr(base_image, "_registry_digest", lambda config, ref, env: "sha256:new")
    found = base_image.resolve(config, "jupyterlab", {})
    assert found.digest == "sha256:new"
    assert found.pinned == "docker.io/library/python@sha256:new"
    monkeypatch.setattr(base_image, "_RESOLVED", {})
    monkeypatch.setattr(base_image, "_registry_digest", lambda config, ref, env: None)
    assert base_image.resolve(config, "jupyterlab", {}).digest == "sha256:old"


def test_a_nightly_run_releases_staging_when_only_the_base_changed() -> None:
    import sys

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from pipeline_steps import load_pipeline

    pipeline = load_pipeline(REPO_ROOT / "azure-pipelines.yml")
    [schedule] = pipeline["schedules"]
    assert schedule["branches"]["include"] == ["master"]
    assert schedule["always"] is True  # runs with no commit: the base may have changed
    stages = {s["stage"]: s for s in pipeline["stages"]}
    assert "ne(variables['Build.Reason'], 'PullRequest')" in stages["Staging"]["condition"]
    # A nightly run never waits for the prod approval; prod takes staging's digests later.
    assert "ne(variables['Build.Reason'], 'Schedule')" in stages["Prod"]["condition"]
