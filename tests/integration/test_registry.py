"""The registry adapter (imagebot.registry) against the real htpasswd registry."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from imagebot.config import load_config
from imagebot.errors import RegistryAuthError, RegistryError
from imagebot.registry import docker_config_credentials, open_registry
from imagebot.tags import ImageRef

from .conftest import SMALL_CONFIG, Run, Stack


def _pushed_ref(small_pushed: Run) -> tuple[ImageRef, str]:
    [outcome] = json.loads(small_pushed.stdout)
    return ImageRef.parse(outcome["ref"]), outcome["digest"]


def test_digest_of_a_pushed_tag_and_of_a_missing_one(stack: Stack, small_pushed: Run) -> None:
    config = load_config(SMALL_CONFIG, None, stack.env())
    registry = open_registry(config, stack.env())
    ref, digest = _pushed_ref(small_pushed)
    assert registry.digest(ref) == digest
    assert registry.digest(ref.with_tag(None).with_digest(digest)) == digest
    assert registry.digest(ref.with_tag("no-such-tag")) is None
    assert registry.digest(ImageRef(f"{stack.namespace}/no-such-repo", "x")) is None


def test_wrong_password_is_an_auth_error_and_is_not_retried(
    stack: Stack, small_pushed: Run
) -> None:
    env = stack.env(IMAGEBOT_REGISTRY_PASSWORD="wrong-password-123")
    registry = open_registry(load_config(SMALL_CONFIG, None, env), env)
    start = time.monotonic()
    with pytest.raises(RegistryAuthError) as caught:
        registry.digest(_pushed_ref(small_pushed)[0])
    assert time.monotonic() - start < 5
    assert "wrong-password-123" not in caught.value.message
    assert "HTTP 401" in caught.value.message


def test_unreachable_registry_gives_up_within_the_bound(stack: Stack, small_pushed: Run) -> None:
    registry = open_registry(load_config(SMALL_CONFIG, None, stack.env()), stack.env(), retry_for=3)
    ref = _pushed_ref(small_pushed)[0]
    stack.registry_stop()
    try:
        start = time.monotonic()
        with pytest.raises(RegistryError) as caught:
            registry.digest(ref)
        elapsed = time.monotonic() - start
    finally:
        stack.registry_start()
    assert not isinstance(caught.value, RegistryAuthError)
    assert "gave up after 3s" in caught.value.message
    assert elapsed < 15
    assert stack.password not in caught.value.message


def test_docker_config_credentials_are_read_not_written(stack: Stack, tmp_path: Path) -> None:
    config_file = tmp_path / "config.json"
    auth = base64.b64encode(f"{stack.username}:{stack.password}".encode()).decode()
    config_file.write_text(json.dumps({"auths": {"127.0.0.1:5555": {"auth": auth}}}))
    before = config_file.read_bytes()
    env = {"DOCKER_CONFIG": str(tmp_path), "IMAGEBOT_TEST_REGISTRY": stack.namespace}
    found = docker_config_credentials("127.0.0.1:5555", env)
    assert found is not None and found.username == stack.username
    assert stack.password not in repr(found)
    # auth = "docker-config" end to end: the registry accepts what the config holds.
    config = load_config(SMALL_CONFIG, None, env)
    config = replace(config, registry=replace(config.registry, auth="docker-config"))
    registry = open_registry(config, env)
    assert registry.digest(ImageRef(f"{stack.namespace}/nothing", "x")) is None
    assert config_file.read_bytes() == before
