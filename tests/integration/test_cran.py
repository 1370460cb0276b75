"""The CRAN-like path: a local CRAN-layout repository of real R sources, served on loopback.

A set with r_source = "cran" installs from a CRAN-like repository at an exact version. CRAN is
unreachable here, so the repository is built from the unmodified CRAN tarball inside Debian's
r-cran-r6 source package, served on 127.0.0.1, and the build reaches it over the host network
(imagebot picks it for build args that point at loopback).
"""

from __future__ import annotations

import gzip
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import FIXTURES, Stack, run_imagebot
from .fixtures.cran.cran_repo import build_repo, download_orig_tarball, serve

CRAN_CONFIG = FIXTURES / "cran" / "imagebot.toml"
CACHE = Path.home() / ".cache" / "imagebot" / "r-sources"


@pytest.fixture(scope="module")
def cran_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        tarball = download_orig_tarball("r-cran-r6", CACHE)
    except Exception as exc:  # no deb-src reachable: the repo cannot be built from real sources
        pytest.fail(f"cannot fetch the R6 sources with apt-get source: {exc}")
    root = tmp_path_factory.mktemp("cran")
    packages = build_repo(root, [tarball])
    assert [(p.name, p.version) for p in packages] == [("R6", "2.5.1")], "bookworm ships R6 2.5.1"
    with serve(root) as url:
        yield url


def test_repo_has_cran_layout(cran_url: str) -> None:
    with urllib.request.urlopen(f"{cran_url}/src/contrib/PACKAGES.gz") as response:
        index = gzip.decompress(response.read()).decode()
    assert "Package: R6\nVersion: 2.5.1\n" in index
    assert "MD5sum: " in index
    with urllib.request.urlopen(f"{cran_url}/src/contrib/R6_2.5.1.tar.gz") as response:
        assert response.status == 200


def test_r_package_installs_at_exact_version_and_passes_smoke(stack: Stack, cran_url: str) -> None:
    env = stack.env(IMAGEBOT_TEST_CRAN_URL=cran_url)
    build = run_imagebot(["build", "cran"], env, config=CRAN_CONFIG)
    assert build.returncode == 0, build.output[-3000:]
    ref = build.stdout.strip()
    run = run_imagebot(["test", ref], env, config=CRAN_CONFIG)
    assert run.returncode == 0, run.output
    assert "ok   r: 1/1 passed" in run.stderr
    manifest = run_imagebot(["manifest", ref], env, config=CRAN_CONFIG)
    assert "\nR6 2.5.1\n" in manifest.stdout
