"""The CRAN-like path: a local CRAN-layout repository of real R sources, served on loopback.

A set with r_source = "cran" installs from a CRAN-like repository at an exact version. CRAN is
unreachable here, so the repository is built from the unmodified CRAN tarball inside Debian's
r-cran-r6 source package, served on 127.0.0.1, and the build reaches it over the host network
(imagebot picks it for build args that point at loopback).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from paths import REPO_ROOT

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


# --- the vetted index's R side: OUT/cran from real CRAN sources, installed in a pod ----------

RINDEX = FIXTURES / "cran" / "rindex"
R_POD_IMAGE = "imagebot-itest/r-pod:latest"
# Real CRAN tarballs from Debian's sources: here imports rprojroot (both pure R), and R6 comes
# in two versions, 2.6.1 (trixie) in the current snapshot and 2.5.1 (bookworm) in an older one.
CURRENT = [("r-cran-r6", "trixie"), ("r-cran-here", "bookworm"), ("r-cran-rprojroot", "bookworm")]
OLD = [("r-cran-r6", "bookworm")]


def _tarballs(sources: list[tuple[str, str]]) -> list[Path]:
    try:
        return [download_orig_tarball(name, CACHE, suite) for name, suite in sources]
    except Exception as exc:  # no deb-src reachable: the repo cannot be built from real sources
        pytest.fail(f"cannot fetch R sources with apt-get source: {exc}")


@pytest.fixture(scope="module")
def r_upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, root): root/current, root/old and root/tampered served on loopback."""
    root = tmp_path_factory.mktemp("r-upstreams")
    build_repo(root / "current", _tarballs(CURRENT))
    build_repo(root / "old", _tarballs(OLD))
    build_repo(root / "tampered", _tarballs(CURRENT))
    here = root / "tampered" / "src" / "contrib" / "here_1.0.1.tar.gz"
    here.write_bytes(here.read_bytes() + b"\0")  # PACKAGES still carries the real MD5sum
    with serve(root) as url:
        yield url, root


def _r_env(url: str, current: str = "current") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEBOT_", "DOCKER_"))}
    return {
        **env,
        "IMAGEBOT_TEST_CRAN_URL": f"{url}/{current}",
        "IMAGEBOT_TEST_CRAN_OLD": f"{url}/old",
    }


def _r_project(where: Path, env: dict[str, str]) -> Path:
    """A copy of the rindex fixture (imagebot.toml, sets, index-only.toml) after `imagebot
    lock`, which writes requirements/cran.lock from the upstreams `env` names; returns its
    imagebot.toml."""
    shutil.copytree(RINDEX, where)
    config = where / "imagebot.toml"
    run = run_imagebot(["lock"], env, config=config)
    assert run.returncode == 0, run.output
    return config


def _cran_lock(config: Path) -> str:
    return (config.parent / "requirements" / "cran.lock").read_text()


@pytest.fixture(scope="module")
def r_config(r_upstreams: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _r_project(tmp_path_factory.mktemp("r-project") / "project", _r_env(r_upstreams[0]))


@pytest.fixture(scope="module")
def r_index(
    r_upstreams: tuple[str, Path], r_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("r-index") / "out"
    run = run_imagebot(
        ["index", "build", str(out), "--json"], _r_env(r_upstreams[0]), config=r_config
    )
    assert run.returncode == 0, run.output
    summary = json.loads(run.stdout)
    assert (summary["r_packages"], summary["r_downloaded"]) == (4, 4)
    return out


def test_lock_writes_the_r_closure_and_a_second_lock_reads_no_upstream(
    r_upstreams: tuple[str, Path], r_config: Path, tmp_path: Path
) -> None:
    from imagebot.cranlock import parse_cran_lock

    url, root = r_upstreams
    text = _cran_lock(r_config)
    lock = parse_cran_lock(text, "cran.lock")
    assert lock.intact
    assert [(p.pin, p.vetted_in, p.dependency_of, p.package.repository) for p in lock.packages] == [
        ("R6==2.5.1", ("index-only",), (), f"{url}/old"),
        ("R6==2.6.1", ("index-only",), (), f"{url}/current"),
        ("here==1.0.1", ("rcran",), (), f"{url}/current"),
        ("rprojroot==2.0.3", (), ("here==1.0.1",), f"{url}/current"),
    ]
    assert lock.packages[2].requires == ("rprojroot",)  # a package with dependencies of its own
    contrib = root / "current" / "src" / "contrib"
    served = hashlib.md5((contrib / "here_1.0.1.tar.gz").read_bytes()).hexdigest()
    assert lock.packages[2].package.md5 == served
    # A fresh lock is kept without a request: with both upstreams gone, lock still succeeds.
    project = tmp_path / "project"
    shutil.copytree(r_config.parent, project)
    (root / "current").rename(root / "current.away")
    (root / "old").rename(root / "old.away")
    try:
        again = run_imagebot(["lock"], _r_env(url), config=project / "imagebot.toml")
    finally:
        (root / "current.away").rename(root / "current")
        (root / "old.away").rename(root / "old")
    assert again.returncode == 0, again.output
    assert "unchanged requirements/cran.lock (4 packages)" in again.stderr
    assert _cran_lock(project / "imagebot.toml") == text
    check = run_imagebot(["lock", "--check"], _r_env(url), config=project / "imagebot.toml")
    assert check.returncode == 0, check.output


@pytest.mark.parametrize("case", ["stale", "hand-edited", "missing"])
def test_lock_check_refuses_a_stale_hand_edited_or_missing_cran_lock(
    r_upstreams: tuple[str, Path], r_config: Path, tmp_path: Path, case: str
) -> None:
    project = tmp_path / "project"
    shutil.copytree(r_config.parent, project)
    requirements = project / "requirements"
    if case == "stale":  # one more vetted version, not locked yet
        index_only = requirements / "index-only.toml"
        index_only.write_text(
            index_only.read_text()
            + '"R6==2.4.0" = { reason = "an even older project", requested_by = "@ola" }\n'
        )
    elif case == "hand-edited":
        lock = requirements / "cran.lock"
        lock.write_text(lock.read_text().replace("Version: 2.0.3", "Version: 2.0.4"))
    else:
        (requirements / "cran.lock").unlink()
    before = {p.name: p.read_bytes() for p in requirements.iterdir()}
    env = _r_env(r_upstreams[0])  # lock --check reads no upstream (the unit tests count)
    run = run_imagebot(["lock", "--check"], env, config=project / "imagebot.toml")
    assert run.returncode == 5, run.output
    state = {"stale": "stale", "hand-edited": "edited by hand", "missing": "missing"}[case]
    assert f"error: lock files out of date: cran.lock ({state}" in run.stderr
    assert "Traceback" not in run.stderr
    assert {p.name: p.read_bytes() for p in requirements.iterdir()} == before
    build = run_imagebot(
        ["index", "build", str(tmp_path / "out")],
        _r_env(r_upstreams[0]),
        config=project / "imagebot.toml",
    )
    assert build.returncode == 5, build.output
    assert "hint: run `imagebot lock`" in build.stderr
    assert not (tmp_path / "out").exists()


def test_index_build_refuses_an_upstream_that_contradicts_the_lock(
    r_upstreams: tuple[str, Path], tmp_path: Path
) -> None:
    """The upstream republishes here 1.0.1 with other bytes and a PACKAGES that vouches for
    them: the reviewed lock vouches for the first bytes, so nothing is served."""
    url, root = r_upstreams
    moving = root / f"moving-{tmp_path.name}"
    build_repo(moving, _tarballs(CURRENT))
    config = _r_project(tmp_path / "project", _r_env(url, moving.name))
    here = moving / "src" / "contrib" / "here_1.0.1.tar.gz"
    republished = tmp_path / "here_1.0.1.tar.gz"
    republished.write_bytes(here.read_bytes() + b"\0")
    shutil.rmtree(moving)
    build_repo(moving, [republished, *(t for t in _tarballs(CURRENT) if "here" not in t.name)])
    out = tmp_path / "out"
    run = run_imagebot(["index", "build", str(out)], _r_env(url, moving.name), config=config)
    assert run.returncode == 13, run.output
    other = hashlib.md5(republished.read_bytes()).hexdigest()
    assert f"here==1.0.1: {url}/{moving.name}'s PACKAGES says MD5sum {other}" in run.stderr
    assert "refusing to serve other bytes than the reviewed lock vouches for" in run.stderr
    assert "Traceback" not in run.stderr and not out.exists()


def test_r_index_is_a_cran_like_repository(
    r_index: Path, r_upstreams: tuple[str, Path], r_config: Path
) -> None:
    from imagebot.cranlock import parse_cran_lock

    contrib = r_index / "cran" / "src" / "contrib"
    packages = (contrib / "PACKAGES").read_text()
    assert gzip.decompress((contrib / "PACKAGES.gz").read_bytes()).decode() == packages
    stanzas = [s.split("\n", 2)[:2] for s in packages.strip().split("\n\n")]
    assert stanzas == [
        ["Package: R6", "Version: 2.6.1"],
        ["Package: here", "Version: 1.0.1"],
        ["Package: rprojroot", "Version: 2.0.3"],
    ]
    files = sorted(str(p.relative_to(r_index / "cran")) for p in contrib.rglob("*.tar.gz"))
    assert files == [
        "src/contrib/Archive/R6/R6_2.5.1.tar.gz",
        "src/contrib/R6_2.6.1.tar.gz",
        "src/contrib/here_1.0.1.tar.gz",
        "src/contrib/rprojroot_2.0.3.tar.gz",
    ]
    assert (contrib / "Meta" / "archive.rds").is_file()
    manifest = json.loads((r_index / "imagebot-index.json").read_text())
    why = {
        (p["name"], p["version"]): (p["vetted_in"], p["dependency_of"])
        for p in manifest["r"]["packages"]
    }
    assert why == {
        ("R6", "2.5.1"): (["index-only"], []),
        ("R6", "2.6.1"): (["index-only"], []),
        ("here", "1.0.1"): (["rcran"], []),
        ("rprojroot", "2.0.3"): ([], ["here==1.0.1"]),
    }
    # Exactly the lock: each locked version, its file's MD5 the lock's.
    lock = parse_cran_lock(_cran_lock(r_config), "cran.lock")
    served = {
        (p["name"], p["version"]): hashlib.md5(
            (r_index / "cran" / p["path"]).read_bytes()
        ).hexdigest()
        for p in manifest["r"]["packages"]
    }
    assert served == {(p.name, p.version): p.package.md5 for p in lock.packages}
    # A second build downloads nothing: every kept file matches the upstream's MD5sum.
    again = run_imagebot(
        ["index", "build", str(r_index), "--json"], _r_env(r_upstreams[0]), config=r_config
    )
    assert again.returncode == 0, again.output
    assert (json.loads(again.stdout)["r_downloaded"], json.loads(again.stdout)["r_reused"]) == (
        0,
        4,
    )
    assert (contrib / "PACKAGES").read_text() == packages


def test_tampered_tarball_is_refused_at_build_time(
    r_upstreams: tuple[str, Path], tmp_path: Path
) -> None:
    """The tampered upstream's PACKAGES carries the real MD5sum (the lock agrees with it); the
    file it serves does not match."""
    env = _r_env(r_upstreams[0], "tampered")
    config = _r_project(tmp_path / "project", env)
    out = tmp_path / "out"
    run = run_imagebot(["index", "build", str(out)], env, config=config)
    assert run.returncode == 13, run.output
    assert "here_1.0.1.tar.gz" in run.stderr and "does not match the MD5sum" in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["project"]


# What a user does in the pod (no network; the index mounted where Rprofile.site points).
POD_SCRIPT = r"""set -euo pipefail
# install.packages() takes the current vetted version and its dependency, from the repository
# that Rprofile.site names, into the user's library.
Rscript -e 'install.packages("here")
stopifnot(packageVersion("here") == "1.0.1", packageVersion("rprojroot") == "2.0.3")
stopifnot(startsWith(find.package("here"), path.expand(Sys.getenv("R_LIBS_USER"))))'
echo INSTALLED-HERE
# An unvetted package fails, with the pod's explanation.
Rscript -e 'install.packages("ggplot2")' 2>&1 || true
# renv.lock replays exactly: the older R6 from Archive/, each file checked by MD5.
bash /srv/install-r.sh /tmp/replayed
Rscript -e 'v <- function(p) as.character(packageVersion(p, lib.loc = "/tmp/replayed"))
cat("REPLAYED", v("R6"), v("here"), v("rprojroot"), "\n")'
# remotes::install_version() finds the older vetted version through Meta/archive.rds.
mkdir -p /tmp/old
Rscript -e 'remotes::install_version("R6", "2.5.1", lib = "/tmp/old", upgrade = "never")
cat("INSTALL-VERSION", as.character(packageVersion("R6", lib.loc = "/tmp/old")), "\n")'
# Over HTTP from imagebot's own static server (no PACKAGES.rds: R falls back to PACKAGES.gz).
PYTHONPATH=/src python3 -c 'from pathlib import Path; from imagebot.index_server import make_server; make_server(Path("/srv/index"), "127.0.0.1", 5556, quiet=True).serve_forever()' &
for _ in $(seq 50); do python3 -c 'import socket; socket.create_connection(("127.0.0.1", 5556), 1)' 2>/dev/null && break; sleep 0.1; done
mkdir -p /tmp/http
Rscript -e 'options(warn = 2); install.packages("R6", repos = "http://127.0.0.1:5556/cran", lib = "/tmp/http")
cat("OVER-HTTP", as.character(packageVersion("R6", lib.loc = "/tmp/http")), "\n")'
"""


def _r_pod_image(tmp_path: Path) -> str:
    """bookworm + r-base-core (the layer test_cran's image shares) + the Rprofile.site that
    `imagebot render` writes, pointed at the index mounted under /srv/index."""
    from imagebot.render import r_site_dockerfile

    tmp_path.mkdir()
    (tmp_path / "Dockerfile").write_text(
        (FIXTURES / "cran" / "Dockerfile").read_text().split("ARG R_REPO", 1)[0]
        + "RUN apt-get update && apt-get install -y --no-install-recommends r-cran-remotes \\\n"
        + "    && rm -rf /var/lib/apt/lists/*\n"
        + "ARG IMAGEBOT_INDEX_URL=file:///srv/index/simple\n"
        + r_site_dockerfile("https://github.com/statisticsnorway/imagebot#asking-for-a-package")
        + "RUN useradd --uid 1000 --gid 100 --create-home jovyan\nUSER 1000:100\n"
    )
    build = subprocess.run(
        ["docker", "build", "-q", "-t", R_POD_IMAGE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    return R_POD_IMAGE


def test_pod_installs_vetted_r_packages_offline_and_replays_renv_lock(
    r_index: Path, tmp_path: Path
) -> None:
    script = tmp_path / "install-r.sh"
    env = _r_env("http://127.0.0.1:1")  # env script reads only the built index
    check = run_imagebot(
        ["env", "check", str(RINDEX / "renv.lock"), "--index", str(r_index)],
        env,
        config=RINDEX / "imagebot.toml",
    )
    assert check.returncode == 0, check.output
    written = run_imagebot(
        ["env", "script", str(RINDEX / "renv.lock"), "--index", str(r_index), "-o", str(script)],
        env,
        config=RINDEX / "imagebot.toml",
    )
    assert written.returncode == 0, written.output
    image = _r_pod_image(tmp_path / "context")
    (tmp_path / "pod.sh").write_text(POD_SCRIPT)
    run = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{r_index}:/srv/index:ro",
            "-v",
            f"{script}:/srv/install-r.sh:ro",
            "-v",
            f"{tmp_path / 'pod.sh'}:/srv/pod.sh:ro",
            "-v",
            f"{REPO_ROOT / 'imagebot'}:/src/imagebot:ro",
            "-e",
            "IMAGEBOT_CRAN_URL=file:///srv/index/cran",
            image,
            "bash",
            "/srv/pod.sh",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "INSTALLED-HERE" in output
    assert "ggplot2" in output and "is not available" in output
    assert (
        "Only vetted packages are served by file:///srv/index/cran. Ask for one at "
        "https://github.com/statisticsnorway/imagebot#asking-for-a-package"
    ) in output
    assert "REPLAYED 2.5.1 1.0.1 2.0.3" in output
    assert "INSTALL-VERSION 2.5.1" in output
    assert "OVER-HTTP 2.6.1" in output
