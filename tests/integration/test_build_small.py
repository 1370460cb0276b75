"""Build and push the small fixture image through the real engine and registry."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import docker

from imagebot.base_image import content_ref
from imagebot.config import load_config
from imagebot.registry import open_registry
from imagebot.tags import ImageRef

from .conftest import SMALL_CONFIG, Run, Stack, run_imagebot


def _outcome(run: Run) -> dict[str, object]:
    [outcome] = json.loads(run.stdout)
    return outcome


def test_build_push_reports_the_digest_the_registry_has(stack: Stack, small_pushed: Run) -> None:
    outcome = _outcome(small_pushed)
    assert outcome["built"] is True and outcome["pushed"] is True
    ref = ImageRef.parse(str(outcome["ref"]))
    assert ref.name == f"{stack.namespace}/small"
    config = load_config(SMALL_CONFIG, None, stack.env())
    # The content tag, the base image's digest included (the local base: its image ID).
    assert ref.tag == content_ref(config, "small", stack.env()).tag
    assert open_registry(config, stack.env()).digest(ref) == outcome["digest"]


def test_build_push_moves_the_cache_tag_to_the_manifest_it_pushed(
    stack: Stack, docker_config: Path
) -> None:
    # Every push moves the cache tag, so this test pushes its own variant (a stamp no other
    # build uses) rather than trusting that no other test pushed since the session's first.
    env = stack.env(DOCKER_CONFIG=str(docker_config), FIXTURE_STAMP=f"cache-{secrets.token_hex(4)}")
    run = run_imagebot(["build", "--push", "--json", "small"], env)
    assert run.returncode == 0, run.output
    outcome = _outcome(run)
    assert outcome["built"] is True and outcome["pushed"] is True
    ref = ImageRef.parse(str(outcome["ref"]))
    registry = open_registry(load_config(SMALL_CONFIG, None, stack.env()), stack.env())
    assert registry.digest(ref) == outcome["digest"]
    # The moving cache tag (next build's --cache-from) points at the same manifest.
    assert registry.digest(ref.with_tag("cache")) == outcome["digest"]


def test_image_carries_oci_labels(stack: Stack, small_pushed: Run) -> None:
    ref = str(_outcome(small_pushed)["ref"])
    labels = docker.from_env().images.get(ref).labels
    assert labels["org.opencontainers.image.version"] == ref.rsplit(":", 1)[1]
    assert labels["org.opencontainers.image.source"] == "https://example.invalid/imagebot-fixture"
    assert len(labels["org.opencontainers.image.revision"]) in (40, len("unknown"))
    assert labels["org.opencontainers.image.created"].endswith("Z")


def test_noop_build_push_skips_and_is_fast(
    stack: Stack, small_pushed: Run, docker_config: Path
) -> None:
    run = run_imagebot(["build", "--push", "small"], stack.env(DOCKER_CONFIG=str(docker_config)))
    assert run.returncode == 0, run.output
    outcome = _outcome(small_pushed)
    assert run.stdout.strip() == f"{outcome['ref']}@{outcome['digest']}"
    assert "already in the registry" in run.stderr
    assert "load build definition" not in run.stderr  # nothing was built
    assert run.seconds < 3, f"no-op build --push took {run.seconds:.1f}s"


def test_a_changed_build_arg_is_a_new_tag_and_reuses_layers(
    stack: Stack, small_pushed: Run, docker_config: Path
) -> None:
    env = stack.env(DOCKER_CONFIG=str(docker_config), FIXTURE_STAMP="two")
    run = run_imagebot(["build", "--json", "small"], env)
    assert run.returncode == 0, run.output
    outcome = _outcome(run)
    assert outcome["ref"] != _outcome(small_pushed)["ref"]
    assert outcome["built"] is True and outcome["pushed"] is False and outcome["digest"] is None
    # Only the last step ran again: the pip layer came from the cache.
    assert "CACHED" in run.stderr
    assert not any(docker_config.iterdir())


def test_force_rebuilds_an_existing_tag(stack: Stack, small_pushed: Run) -> None:
    run = run_imagebot(["build", "--force", "small"], stack.env())
    assert run.returncode == 0, run.output
    assert "already in the registry" not in run.stderr
    assert "load build definition" in run.stderr
    assert run.stdout.strip() == _outcome(small_pushed)["ref"]


def test_pipeline_output_folds_stages(stack: Stack, small_pushed: Run) -> None:
    run = run_imagebot(["build", "--force", "small"], stack.env(TF_BUILD="True"))
    assert run.returncode == 0, run.output
    assert "##[group]build " in run.stderr and "##[endgroup]" in run.stderr


def test_unknown_image_is_a_config_error(stack: Stack) -> None:
    run = run_imagebot(["build", "nosuch"], stack.env())
    assert run.returncode == 3
    assert "unknown image 'nosuch'" in run.stderr


def test_build_failure_names_the_step(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE=imagebot-local/bookworm-python:3.11\nFROM ${BASE_IMAGE}\n"
        "RUN echo about to fail && exit 3\n"
    )
    config = tmp_path / "imagebot.toml"
    config.write_text(
        '[registry]\nurl = "${IMAGEBOT_TEST_REGISTRY}"\nauth = "basic"\ninsecure = true\n'
        '[images.broken]\ndockerfile = "Dockerfile"\n'
    )
    run = run_imagebot(["build", "broken"], stack.env(), config=config)
    assert run.returncode == 7, run.output
    assert "docker build of" in run.stderr and "exit 3" in run.stderr
    assert "Traceback" not in run.stderr


def test_buildkit_cli_override_is_used(stack: Stack, tmp_path: Path) -> None:
    run = run_imagebot(
        ["build", "--force", "small"], stack.env(IMAGEBOT_DOCKER=str(tmp_path / "no-docker"))
    )
    assert run.returncode == 7
    assert "cannot run" in run.stderr and os.fspath(tmp_path) in run.stderr


def test_a_build_without_push_does_not_need_registry_credentials(
    stack: Stack, small_pushed: Run
) -> None:
    missing = stack.env()
    del missing["IMAGEBOT_REGISTRY_PASSWORD"]
    run = run_imagebot(["build", "small"], missing)
    assert run.returncode == 0, run.output
    assert "building without the registry" in run.stderr
    wrong = run_imagebot(["build", "small"], stack.env(IMAGEBOT_REGISTRY_PASSWORD="wrong-pw-1"))
    assert wrong.returncode == 0, wrong.output
    assert "cannot check" in wrong.stderr and "building anyway" in wrong.stderr
    assert "wrong-pw-1" not in wrong.output
    # With --push the same credentials are an error at once.
    assert run_imagebot(["build", "--push", "small"], missing).returncode == 9
