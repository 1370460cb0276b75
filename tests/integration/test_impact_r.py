"""Who an R change hurts, on real parts: `imagebot lock` writes requirements/cran.lock from a
CRAN-layout upstream of real CRAN sources (Debian's r-cran-* .orig tarballs, as test_cran.py
builds it: here imports rprojroot), a team registers its renv.lock, and `imagebot check`,
`imagebot impact --r` and review's impact section name the requester and the owner."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import FIXTURES, run_imagebot
from .fixtures.cran.cran_repo import build_repo, download_orig_tarball, serve

CACHE = Path.home() / ".cache" / "imagebot" / "r-sources"
RINDEX = FIXTURES / "cran" / "rindex"
SOURCES = ["r-cran-r6", "r-cran-here", "r-cran-rprojroot"]  # bookworm: 2.5.1, 1.0.1, 2.0.3
INDEX_ONLY = """\
[r]
R6 = { version = "2.5.1", reason = "an older project pins it", requested_by = "@kari" }
"""
RENV = {
    "Owner": "@stats/survey",
    "R": {"Version": "4.2.2", "Repositories": [{"Name": "CRAN", "URL": "https://cran.example"}]},
    "Packages": {
        name: {"Package": name, "Version": version, "Source": "Repository", "Repository": "CRAN"}
        for name, version in (("R6", "2.5.1"), ("here", "1.0.1"), ("rprojroot", "2.0.3"))
    },
}
ENV_PATH = "environments/methods/survey.renv.lock"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        tarballs = [download_orig_tarball(name, CACHE) for name in SOURCES]
    except Exception as exc:  # no deb-src reachable: the repo cannot be built from real sources
        pytest.fail(f"cannot fetch R sources with apt-get source: {exc}")
    root = tmp_path_factory.mktemp("r-upstream")
    build_repo(root, tarballs)
    with serve(root) as url:
        yield url


@pytest.fixture
def project(tmp_path: Path) -> Path:
    config = (RINDEX / "imagebot.toml").read_text()
    config = "".join(
        line for line in config.splitlines(keepends=True) if not line.startswith("cran_snapshots")
    )
    (tmp_path / "imagebot.toml").write_text(config)
    shutil.copy(RINDEX / "Dockerfile", tmp_path / "Dockerfile")
    (tmp_path / "requirements").mkdir()
    shutil.copy(RINDEX / "requirements" / "rcran.toml", tmp_path / "requirements")
    (tmp_path / "requirements" / "index-only.toml").write_text(INDEX_ONLY)
    return tmp_path


def imagebot(project: Path, url: str, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEBOT_", "DOCKER_"))}
    env["IMAGEBOT_TEST_CRAN_URL"] = url
    run = run_imagebot(list(args), env, config=project / "imagebot.toml", timeout=300)
    return run.returncode, run.stdout, run.stderr


def requirement_files(project: Path) -> dict[str, str]:
    folder = project / "requirements"
    return {f"requirements/{p.name}": p.read_text() for p in sorted(folder.iterdir())}


def test_an_r_change_names_the_requester_and_the_renv_owner(project: Path, upstream: str) -> None:
    from imagebot import impact
    from imagebot.environments import load_environments

    code, _, err = imagebot(project, upstream, "lock")
    assert code == 0, err
    lock = (project / "requirements" / "cran.lock").read_text()
    assert "Package: rprojroot\nVersion: 2.0.3\n" in lock and "DependencyOf: here==1.0.1" in lock
    (project / ENV_PATH).parent.mkdir(parents=True)
    (project / ENV_PATH).write_text(json.dumps(RENV, indent=2) + "\n")

    code, _, err = imagebot(project, upstream, "check")
    assert code == 0, err
    assert "ok: 1 registered environment" in err

    code, out, err = imagebot(project, upstream, "impact", "--r", "rprojroot==2.1.0")
    assert code == 0, err
    owner_line = next(line for line in out.splitlines() if "owner" in line)
    assert out.splitlines()[0] == "R package rprojroot 2.0.3 -> 2.1.0: minor"
    assert "@stats/survey" in owner_line and "pins rprojroot==2.0.3: works" in owner_line
    assert (
        "  needed by @imagebot-tests: here==1.0.1 in rcran (paths relative to the project "
        "root): here -> rprojroot"
    ) in out.splitlines()

    # The pull request that stops vetting R6 2.5.1: the owner who pins it must move.
    base = requirement_files(project)
    (project / "requirements" / "index-only.toml").write_text("[r]\n")
    code, _, err = imagebot(project, upstream, "lock")
    assert code == 0, err
    environments, problems = load_environments(project, "3.11", "x86_64-manylinux_2_36")
    assert problems == []
    result = impact.section(base, requirement_files(project), "requirements", environments)
    lines = impact.render_text(result).splitlines()
    assert lines[:2] == ["must move: @stats/survey", "R package R6 2.5.1 -> (removed): removal"]
    assert "pins R6==2.5.1: breaks" in lines[2]
    assert "  requested by @kari: R6==2.5.1 in index-only (an older project pins it)" in lines

    code, _, err = imagebot(project, upstream, "check")
    assert code == 14
    assert f"{ENV_PATH}:" in err and "R package R6 2.5.1 is not vetted" in err
