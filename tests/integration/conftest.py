"""Fixtures for the integration suite: the REAL local stack (dockerd + htpasswd registry).

`stack` runs `scripts/stack up` once per session and reads the registry credentials from
`scripts/stack env`. Every session pushes under its own registry namespace, so runs never see
each other's tags. `imagebot` runs the real CLI in a subprocess with a throwaway DOCKER_CONFIG,
so tests can prove that nothing was written there.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from paths import REPO_ROOT

from .gitops_fixtures import make_remote

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMALL_CONFIG = FIXTURES / "small" / "imagebot.toml"
STACK = REPO_ROOT / "scripts" / "stack"
REGISTRY = "127.0.0.1:5555"


def pypi_reachable() -> bool:
    """Whether pypi.org answers on 443: the tests against the real PyPI skip when it does not."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@dataclass
class Stack:
    username: str
    password: str
    namespace: str  # registry.url for this session, e.g. 127.0.0.1:5555/itest-1a2b3c
    base_env: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        """A clean environment for imagebot: credentials, namespace, fast retries."""
        env = {
            **self.base_env,
            "IMAGEBOT_REGISTRY_USERNAME": self.username,
            "IMAGEBOT_REGISTRY_PASSWORD": self.password,
            "IMAGEBOT_TEST_REGISTRY": self.namespace,
            "IMAGEBOT_RETRY_SECONDS": "30",
        }
        env.update(overrides)
        return {k: v for k, v in env.items() if v is not None}

    def registry_stop(self) -> None:
        _stack("registry-stop")

    def registry_start(self) -> None:
        _stack("registry-start")


def _stack(*args: str) -> str:
    result = subprocess.run(
        [str(STACK), *args], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/stack {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    _stack("up")
    exports = dict(re.findall(r"^export (\w+)=(.*)$", _stack("env"), re.MULTILINE))
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMAGEBOT_", "DOCKER_")) and k not in ("TF_BUILD",)
    }
    yield Stack(
        username=exports["IMAGEBOT_REGISTRY_USERNAME"],
        password=exports["IMAGEBOT_REGISTRY_PASSWORD"],
        namespace=f"{REGISTRY}/itest-{secrets.token_hex(3)}",
        base_env=base_env,
    )
    # A fault test may have left the registry down; later users of the stack need it up.
    _stack("registry-start")


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    """An empty DOCKER_CONFIG dir; tests assert it is still empty afterwards."""
    path = tmp_path / "docker-config"
    path.mkdir()
    return path


def run_imagebot(
    args: list[str], env: Mapping[str, str], *, config: Path = SMALL_CONFIG, timeout: float = 900
) -> Run:
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "imagebot", "-c", str(config), *args],
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - start)


@pytest.fixture(scope="session")
def small_pushed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The small fixture image, built and pushed once per session (others reuse it)."""
    config_dir = tmp_path_factory.mktemp("docker-config")
    run = run_imagebot(
        ["build", "--push", "--json", "small"], stack.env(DOCKER_CONFIG=str(config_dir))
    )
    assert run.returncode == 0, run.output
    assert not any(config_dir.iterdir()), "imagebot wrote to DOCKER_CONFIG"
    return run


# An OSV record for six (1.16.0 is the small fixture's pin) with one ECOSYSTEM range.
SIX_RECORD = """\
id: PYSEC-2099-{number}
modified: "2099-01-01T00:00:00Z"
summary: A hand-written advisory for the release gate's test
affected:
  - package: {{ecosystem: PyPI, name: six}}
    ranges:
      - type: ECOSYSTEM
        events: [{{introduced: "{introduced}"}}, {{fixed: "{fixed}"}}]
"""


def write_six_advisory(advisories: Path, number: int, introduced: str, fixed: str) -> None:
    """A hand-written OSV record for six in an advisory directory (`[advisories] source`)."""
    path = advisories / "vulns" / "six" / f"PYSEC-2099-{number}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SIX_RECORD.format(number=number, introduced=introduced, fixed=fixed))


RELEASE_GITOPS_FILE = "jupyter.yaml"
RELEASE_HELMRELEASE = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: jupyter
spec:
  values:
    singleuser:
      image:
        name: {namespace}/small
        tag: "seed"
"""


def small_release_project(
    stack: Stack,
    tmp_path: Path,
    *,
    config_extra: str = "",
    requirements: Mapping[str, str] | None = None,
) -> tuple[Path, Path]:
    """A copy of the small fixture with a staging environment over a fresh bare GitOps remote,
    an advisory directory whose one record (six) the release's audit passes, `requirements`
    files written, and imagebot's own locks and Dockerfile: (imagebot.toml, the remote)."""
    remote = make_remote(
        tmp_path,
        {RELEASE_GITOPS_FILE: RELEASE_HELMRELEASE.format(namespace=stack.namespace)},
        "gitops",
    )
    copy = tmp_path / "small"
    shutil.copytree(FIXTURES / "small", copy)
    config = copy / "imagebot.toml"
    config.write_text(
        config.read_text()
        + config_extra
        + "\n[environments.staging]\n"
        + f'repo = "{remote}"\nbranch = "master"\nfile = "{RELEASE_GITOPS_FILE}"\n'
        + 'targets.small = "spec.values.singleuser.image"\n'
        + f'\n[advisories]\nsource = "{tmp_path / "advisories"}"\n'
    )
    write_six_advisory(tmp_path / "advisories", 1, "0", "1.0")
    for name, text in (requirements or {}).items():
        (copy / "requirements" / name).write_text(text)
    lock_and_render(stack, config)
    return config, remote


def lock_and_render(stack: Stack, config: Path) -> None:
    """A release verifies the locks and the Dockerfile: make them imagebot's own."""
    for command in ("lock", "render"):
        run = run_imagebot([command], stack.env(), config=config)
        assert run.returncode == 0, run.output
