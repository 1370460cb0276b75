"""Push through docker-py against the real registry: credentials, faults, and leaks."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
from paths import REPO_ROOT

from .conftest import SMALL_CONFIG, Run, Stack, run_imagebot


def _build_variant(stack: Stack, stamp: str, payload_mb: int = 0) -> str:
    """A locally built, not yet pushed variant of the small image; returns its ref."""
    env = stack.env(FIXTURE_STAMP=stamp, PAYLOAD_MB=str(payload_mb))
    run = run_imagebot(["build", "--json", "small"], env)
    assert run.returncode == 0, run.output
    return str(json.loads(run.stdout)[0]["ref"])


def test_push_with_wrong_password_fails_at_once_without_leaking(
    stack: Stack, small_pushed: Run, docker_config: Path
) -> None:
    ref = _build_variant(stack, "wrong-password")
    wrong = "not-the-password-" + stack.password[:4]
    env = stack.env(IMAGEBOT_REGISTRY_PASSWORD=wrong, DOCKER_CONFIG=str(docker_config))
    run = run_imagebot(["--verbose", "push", ref], env)
    assert run.returncode == 9, run.output
    assert "error: registry refused" in run.stderr
    assert run.seconds < 15, "401 must not be retried"
    assert wrong not in run.output and stack.password not in run.output
    assert not any(docker_config.iterdir())


def test_push_with_good_credentials_prints_ref_at_digest(
    stack: Stack, small_pushed: Run, docker_config: Path
) -> None:
    ref = _build_variant(stack, "good-credentials")
    run = run_imagebot(["push", ref], stack.env(DOCKER_CONFIG=str(docker_config)))
    assert run.returncode == 0, run.output
    pushed, _, digest = run.stdout.strip().partition("@")
    assert pushed == ref and digest.startswith("sha256:")
    assert stack.password not in run.output
    assert not any(docker_config.iterdir())


def test_push_without_credentials_is_an_auth_error(stack: Stack, small_pushed: Run) -> None:
    env = stack.env()
    del env["IMAGEBOT_REGISTRY_PASSWORD"]
    run = run_imagebot(["push", "small"], env)
    assert run.returncode == 9, run.output
    assert "IMAGEBOT_REGISTRY_PASSWORD" in run.stderr  # the hint says what to set


def _push_with_registry_outage(
    stack: Stack, ref: str, *, stop_after: float
) -> tuple[int, str, str]:
    """`imagebot push ref` while the registry goes down stop_after s in, for 3 s."""
    push = subprocess.Popen(
        [sys.executable, "-m", "imagebot", "-c", str(SMALL_CONFIG), "push", ref],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=stack.env(IMAGEBOT_RETRY_SECONDS="60"),
        cwd=REPO_ROOT,
    )
    try:
        time.sleep(stop_after)
        stack.registry_stop()
        time.sleep(3)
    finally:
        stack.registry_start()
    stdout, stderr = push.communicate(timeout=120)
    return push.returncode, stdout, stderr


def test_registry_restarting_when_the_push_starts_is_retried(
    stack: Stack, small_pushed: Run
) -> None:
    ref = _build_variant(stack, "restart-at-start")
    stack.registry_stop()  # down before the push begins: the engine fails fast, imagebot retries
    code, stdout, stderr = _push_with_registry_outage(stack, ref, stop_after=0)
    assert code == 0, stderr
    assert stdout.strip().startswith(f"{ref}@sha256:")
    assert f"pushing {ref}: " in stderr and "; retrying in " in stderr


def test_registry_restarting_mid_push_is_retried(stack: Stack, small_pushed: Run) -> None:
    # 200 MB of new layer: the upload outlasts the moment the registry goes down (a tiny
    # layer could finish first, and the test would prove nothing). A fresh stamp, or the
    # layer is in the build cache and the registry from an earlier run, and nothing uploads.
    stamp = f"restart-mid-push-{secrets.token_hex(4)}"
    ref = _build_variant(stack, stamp, payload_mb=200)
    code, stdout, stderr = _push_with_registry_outage(stack, ref, stop_after=1.0)
    assert code == 0, stderr
    assert stdout.strip().startswith(f"{ref}@sha256:")
    # Retried by imagebot ("retrying in") or, during a layer upload, by the engine itself
    # ("Retrying in N seconds"): either way the push completed after the restart.
    assert "retrying in" in stderr.lower(), stderr[-2000:]


def test_registry_kept_down_gives_a_clear_error_in_bounded_time(
    stack: Stack, small_pushed: Run
) -> None:
    ref = _build_variant(stack, "registry-down")
    stack.registry_stop()
    try:
        run = run_imagebot(["push", ref], stack.env(IMAGEBOT_RETRY_SECONDS="6"))
    finally:
        stack.registry_start()
    assert run.returncode == 10, run.output
    assert "gave up after 6s" in run.stderr
    assert "hint:" in run.stderr and "Traceback" not in run.stderr
    assert run.seconds < 30


@pytest.mark.parametrize("command", [["push", "small"], ["build", "--force", "small"]])
def test_no_engine_is_a_clear_error(stack: Stack, tmp_path: Path, command: list[str]) -> None:
    dead = tmp_path / "dead.sock"
    run = run_imagebot(command, stack.env(DOCKER_HOST=f"unix://{dead}"))
    assert run.returncode == 7, run.output
    assert f"no Docker engine answers at unix://{dead}" in run.stderr
    assert "scripts/stack up" in run.stderr
    assert "Traceback" not in run.stderr


def test_no_secret_in_output_history_or_docker_config(
    stack: Stack, small_pushed: Run, docker_config: Path
) -> None:
    env = stack.env(DOCKER_CONFIG=str(docker_config), FIXTURE_STAMP="leak-check")
    run = run_imagebot(["--verbose", "build", "--push", "--json", "small"], env)
    assert run.returncode == 0, run.output
    ref = json.loads(run.stdout)[0]["ref"]
    ca_bundle = Path("/etc/ssl/certs/ca-certificates.crt").read_text()
    ca_marker = next(line for line in ca_bundle.splitlines() if line and "-----" not in line)
    client = docker.from_env()
    history = json.dumps(client.api.history(ref))
    inspect = json.dumps(client.api.inspect_image(ref))
    for text in (run.output, small_pushed.output, history, inspect):
        assert stack.password not in text
        assert ca_marker not in text
    # The CA bundle was a BuildKit secret: the image keeps the base image's own bundle.
    cat = ["cat", "/etc/ssl/certs/ca-certificates.crt"]
    in_image = client.containers.run(ref, cat, remove=True)
    in_base = client.containers.run("imagebot-local/bookworm-python:3.11", cat, remove=True)
    assert in_image == in_base
    assert not any(docker_config.iterdir())
    home_config = Path.home() / ".docker" / "config.json"
    if home_config.exists():
        assert stack.password not in home_config.read_text()
