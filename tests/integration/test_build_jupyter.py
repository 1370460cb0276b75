"""The real thing: the rendered jupyter/Dockerfile from the default sets, on the local base.

`imagebot --profile local build jupyterlab` passes the local base and index as build args;
`imagebot test` then checks every pinned package, the R packages and the Jupyter server.
A cold build takes about six minutes on 2 cores; with the engine's cache, seconds.
"""

from __future__ import annotations

import pytest
from paths import REPO_ROOT

from imagebot.config import load_config
from imagebot.requirements import load_sets

from .conftest import Stack, run_imagebot

CONFIG = REPO_ROOT / "imagebot.toml"


@pytest.mark.slow
def test_jupyterlab_builds_on_the_local_base_and_passes_imagebot_test(stack: Stack) -> None:
    build = run_imagebot(
        ["--profile", "local", "build", "jupyterlab"], stack.env(), config=CONFIG, timeout=1800
    )
    assert build.returncode == 0, build.output[-4000:]
    ref = build.stdout.strip()
    assert ref.startswith("127.0.0.1:5555/jupyter/jupyterlab:")
    run = run_imagebot(["--profile", "local", "test", "jupyterlab"], stack.env(), config=CONFIG)
    assert run.returncode == 0, run.output
    for line in (
        "ok   version:",
        "ok   import:",
        "ok   pip check",
        "ok   r: 8/8 passed",
        "ok   jupyter: 1/1 passed: jupyter lab",
        "ok   server: 1/1 passed",
    ):
        assert line in run.stderr


@pytest.mark.slow
def test_jupyterhub_builds_on_the_local_base_and_holds_exactly_its_locks(stack: Stack) -> None:
    build = run_imagebot(
        ["--profile", "local", "build", "--json", "jupyterhub"],
        stack.env(),
        config=CONFIG,
        timeout=1800,
    )
    assert build.returncode == 0, build.output[-4000:]
    assert '"ref": "127.0.0.1:5555/jupyter/jupyterhub:' in build.stdout
    # The hand-written Dockerfile installs the jupyterhub and hub locks, and nothing else.
    run = run_imagebot(["--profile", "local", "test", "jupyterhub"], stack.env(), config=CONFIG)
    assert run.returncode == 0, run.output[-4000:]
    hub_sets = load_config(CONFIG).image("jupyterhub").sets
    entries = sum(
        len(s.python) for s in load_sets(REPO_ROOT / "requirements") if s.name in hub_sets
    )
    assert f"ok   import: {entries}/{entries} passed" in run.stderr  # one per entry of its sets
    assert "server:" not in run.stderr  # no JupyterLab here, so no server check
