"""SIGTERM (a cancelled CI job) against the real tools: imagebot exits 143 and leaves no
`imagebot-*` temporary directory behind, in particular none holding the registry token
(issue 10, item 9)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from paths import REPO_ROOT

from .conftest import FIXTURES, Stack


def _ours(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("imagebot-"))


def _terminate_once_present(
    args: list[str], env: Mapping[str, str], tmp: Path, prefix: str
) -> tuple[int, str]:
    """Start imagebot, wait for its `prefix*` temp dir in tmp, send SIGTERM, return the exit."""
    child = subprocess.Popen(
        [sys.executable, "-m", "imagebot", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "TMPDIR": str(tmp)},
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(prefix) for p in tmp.iterdir()):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, f"no {prefix}* directory appeared"
            time.sleep(0.05)
        time.sleep(0.3)  # inside the slow part, not on its threshold
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, err


@pytest.fixture
def silent_index() -> Iterator[str]:
    """An index URL whose server accepts connections and never answers: uv waits on it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/simple"
    finally:
        server.close()


def test_sigterm_during_lock_removes_the_uv_scratch_and_writes_no_lock(
    tmp_path: Path, silent_index: str
) -> None:
    project = tmp_path / "project"
    shutil.copytree(FIXTURES / "small", project)
    config = project / "imagebot.toml"
    lock = project / "requirements" / "small.lock"
    before = lock.read_bytes()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # lock resolves against the upstream index (not [index] url, which is what pods use).
    env = {**_clean_env(), "IMAGEBOT_UPSTREAM_INDEX": silent_index}
    code, err = _terminate_once_present(
        ["-c", str(config), "lock", "--upgrade"], env, tmp, "imagebot-uv-"
    )
    assert code == 143, err
    assert err.strip().splitlines()[-1] == "terminated"
    assert "Traceback" not in err
    assert _ours(tmp) == []
    assert lock.read_bytes() == before


def test_sigterm_during_build_removes_the_docker_config_holding_the_token(
    stack: Stack, tmp_path: Path, docker_config: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = stack.env(DOCKER_CONFIG=str(docker_config), FIXTURE_STAMP=f"sigterm-{time.time()}")
    code, err = _terminate_once_present(
        ["-c", str(FIXTURES / "small" / "imagebot.toml"), "build", "--force", "small"],
        env,
        tmp,
        "imagebot-docker-config-",
    )
    assert code == 143, err
    assert err.strip().splitlines()[-1] == "terminated"
    assert "Traceback" not in err
    assert _ours(tmp) == []
    assert not any(docker_config.iterdir())


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMAGEBOT_", "DOCKER_", "UV_")) and k != "TF_BUILD"
    }
