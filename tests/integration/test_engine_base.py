"""The local stack: idempotent `up`, and a base image with production's Python and platform."""

from __future__ import annotations

import re
import subprocess
import time

import docker

from .conftest import STACK, Stack

BASE = "imagebot-local/bookworm-python:3.11"


def test_stack_up_is_idempotent_and_fast_when_up(stack: Stack) -> None:
    start = time.monotonic()
    result = subprocess.run([str(STACK), "up"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 10
    assert "registry: up (http://127.0.0.1:5555" in result.stderr
    assert f"{BASE} present" in result.stderr


def test_stack_env_prints_exports(stack: Stack) -> None:
    out = subprocess.run([str(STACK), "env"], capture_output=True, text=True, check=True).stdout
    assert re.fullmatch(
        r"export IMAGEBOT_REGISTRY_USERNAME=imagebot\n"
        r"export IMAGEBOT_REGISTRY_PASSWORD=[0-9a-f]{32}\n",
        out,
    )


def test_local_base_matches_production_python_and_platform(stack: Stack) -> None:
    # python:3.11-slim-bookworm: CPython 3.11 on x86_64 with bookworm's glibc 2.36, so the
    # lock (uv --python-platform x86_64-manylinux_2_36) serves both bases.
    probe = (
        "import platform, sys, sysconfig; "
        "print(sys.version_info[:2], platform.machine(), platform.libc_ver()[1], "
        "sysconfig.get_platform())"
    )
    out = docker.from_env().containers.run(BASE, ["python3", "-c", probe], remove=True).decode()
    assert out.strip() == "(3, 11) x86_64 2.36 linux-x86_64"


def test_local_base_config_matches_the_slim_image(stack: Stack) -> None:
    config = docker.from_env().images.get(BASE).attrs["Config"]
    assert "LANG=C.UTF-8" in config["Env"]
    assert config["Cmd"] == ["python3"]
    run = docker.from_env().containers.run(
        BASE, ["sh", "-c", "python3 -m venv /tmp/v && /tmp/v/bin/pip --version"], remove=True
    )
    assert b"python 3.11" in run
