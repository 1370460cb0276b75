"""The vetted index against real PyPI, real uv, a real container and real pip.

A small allowlist (python-dateutil, which needs six; six 1.16.0 vetted for self-install) is
built from PyPI. Containers run with `--network none`: their only interface is their own
loopback, where imagebot's own server (index_server.make_server, mounted from this checkout) serves the
index. So pip inside can reach the index and nothing else, which a test checks first.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_runner import Result
from paths import REPO_ROOT

from .conftest import run_imagebot

pytestmark = pytest.mark.integration

DOCKER = os.environ.get(
    "IMAGEBOT_DOCKER", "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
)
BASE_IMAGE = "imagebot-local/bookworm-python:3.11"
INDEX_URL = "http://127.0.0.1:5556/simple"

CONFIG = """\
[registry]
url = "127.0.0.1:5555/itest"

[images.jupyterlab]
dockerfile = "jupyter/Dockerfile"
base = "imagebot-local/bookworm-python:3.11"
python = "3.11"
platform = "x86_64-manylinux_2_36"
sets = ["small"]

[index]
url = "http://127.0.0.1:5556/simple"
request_url = "https://example.invalid/ask-for-a-package"
"""
SMALL_SET = """\
[set]
description = "a pure-Python package with one dependency"

[python]
python-dateutil = { version = "2.9.0.post0", reason = "dates", requested_by = "@itest" }
"""
INDEX_ONLY = """\
[python]
six = { version = "1.16.0", reason = "an older six for old projects", requested_by = "@itest" }
"""

# Serve /index on the container's loopback with imagebot's own server (stdlib only).
SERVE = textwrap.dedent(
    """\
    PYTHONPATH=/src python3 -c 'from pathlib import Path; from imagebot.index_server import make_server; make_server(Path("/index"), "127.0.0.1", 5556, quiet=True).serve_forever()' &
    for _ in $(seq 50); do python3 -c 'import socket; socket.create_connection(("127.0.0.1", 5556), 1)' 2>/dev/null && break; sleep 0.1; done
    python3 -m venv --without-pip --system-site-packages /venv  # Debian's pip; seconds faster
    pip() { /venv/bin/python -m pip "$@"; }
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_INDEX_URL=http://127.0.0.1:5556/simple
    """
)


Run = Callable[..., Result]


def clean_env() -> dict[str, str]:
    """The caller's environment without IMAGEBOT_* (a profile or config would leak in)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("IMAGEBOT_")}


@pytest.fixture(autouse=True)
def _no_imagebot_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """clean_env() for the in-process runs too."""
    for name in os.environ.keys() - clean_env().keys():
        monkeypatch.delenv(name)


@pytest.fixture
def imagebot(run_cli: Run) -> Run:
    """`imagebot -c PROJECT/imagebot.toml ARGS` (the shared in-process runner)."""

    def run(project: Path, *args: str) -> Result:
        return run_cli("-c", project / "imagebot.toml", *args)

    return run


def in_container(
    index: Path, script: str, mounts: dict[Path, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run bash SCRIPT in a fresh container with no network but its own loopback."""
    volumes = [f"{index}:/index:ro", f"{REPO_ROOT / 'imagebot'}:/src/imagebot:ro"]
    volumes += [f"{host}:{inside}" for host, inside in (mounts or {}).items()]
    command = [DOCKER, "run", "--rm", "--network", "none"]
    for volume in volumes:
        command += ["-v", volume]
    command += [BASE_IMAGE, "bash", "-c", "set -eu\n" + SERVE + script]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=180)


@pytest.fixture(scope="module")
def base_image(stack: object) -> str:
    """The local base image, which the session's `stack` fixture (scripts/stack up) builds."""
    probe = subprocess.run(
        [DOCKER, "image", "inspect", BASE_IMAGE], capture_output=True, check=False
    )
    assert probe.returncode == 0, f"{BASE_IMAGE} is missing after scripts/stack up"
    return BASE_IMAGE


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "requirements").mkdir()
    (root / "jupyter").mkdir()
    (root / "jupyter" / "Dockerfile").write_text("FROM scratch\n")
    (root / "imagebot.toml").write_text(CONFIG)
    (root / "requirements" / "small.toml").write_text(SMALL_SET)
    (root / "requirements" / "index-only.toml").write_text(INDEX_ONLY)
    return root


@pytest.fixture(scope="module")
def index(project: Path) -> Path:
    out = project / "index"
    # Built once for the module, so in a subprocess: the in-process runner captures with
    # capsys, which lives for one test.
    done = run_imagebot(
        ["index", "build", str(out), "--json"], clean_env(), config=project / "imagebot.toml"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["packages"], summary["downloaded"]) == (3, 3)
    return out


def test_build_writes_a_hashed_index_and_a_manifest(index: Path) -> None:
    page = (index / "simple" / "six" / "index.html").read_text()
    assert page.count("#sha256=") == 2  # 1.16.0 (index-only) and 1.17.0 (dateutil's dependency)
    manifest = json.loads((index / "imagebot-index.json").read_text())
    why = {
        f"{p['name']}=={p['version']}": (p["vetted_in"], p["dependency_of"])
        for p in manifest["packages"]
    }
    assert why == {
        "python-dateutil==2.9.0.post0": (["small"], []),
        "six==1.16.0": (["index-only"], []),
        "six==1.17.0": ([], ["python-dateutil==2.9.0.post0"]),
    }


def test_rebuild_downloads_nothing(project: Path, index: Path, imagebot: Run) -> None:
    done = imagebot(project, "index", "build", str(index), "--json")
    assert done.code == 0, done.err
    summary = json.loads(done.out)
    assert (summary["downloaded"], summary["reused"], summary["resolutions"]) == (0, 3, 0)
    # No lock vouches for these files, so each is checked against PyPI's hash: one metadata
    # request per project (python-dateutil, six), never a download.
    assert summary["metadata_fetches"] == 2


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            'nosuch-imagebot-pkg = { version = "1.0"',
            "package 'nosuch-imagebot-pkg' does not exist on PyPI",
        ),
        ('requests = { version = "2.32.0"', "requests==2.32.0 is yanked on PyPI"),
        (
            'pyyaml = { version = "5.4.1"',
            "pyyaml==5.4.1 has no wheel for Python 3.11 on x86_64-manylinux_2_36",
        ),
    ],
)
def test_bad_input_fails_with_13_and_leaves_out_untouched(
    project: Path, index: Path, tmp_path: Path, entry: str, message: str, imagebot: Run
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(project, bad, ignore=shutil.ignore_patterns("index"))
    shutil.copytree(index, bad / "index", copy_function=os.link)
    before = sorted(str(p.relative_to(bad)) for p in bad.rglob("*"))
    manifest = (bad / "index" / "imagebot-index.json").read_bytes()
    (bad / "requirements" / "index-only.toml").write_text(
        f'[python]\n{entry}, reason = "r", requested_by = "@itest" }}\n'
    )
    done = imagebot(bad, "index", "build", str(bad / "index"))
    assert done.code == 13, done.err
    assert f"error: {message}" in done.err
    assert "Traceback" not in done.err
    assert sorted(str(p.relative_to(bad)) for p in bad.rglob("*")) == before
    assert (bad / "index" / "imagebot-index.json").read_bytes() == manifest


def test_container_reaches_the_index_and_nothing_else(base_image: str, index: Path) -> None:
    done = in_container(
        index,
        """
        python3 - <<'EOF'
import socket, urllib.request
for host in ("pypi.org", "files.pythonhosted.org", "151.101.0.223"):
    try:
        socket.create_connection((host, 443), timeout=3)
        print("REACHABLE", host)
    except OSError as exc:
        print("unreachable", host, type(exc).__name__)
print("index", urllib.request.urlopen("http://127.0.0.1:5556/simple/").status)
EOF
        pip install --index-url https://pypi.org/simple --timeout 3 --retries 0 idna || echo PYPI-INSTALL-FAILED
        """,
    )
    assert done.returncode == 0, done.stderr
    assert "REACHABLE" not in done.stdout
    assert done.stdout.count("unreachable") == 3
    assert "index 200" in done.stdout
    assert "PYPI-INSTALL-FAILED" in done.stdout


def test_vetted_install_succeeds_and_anything_else_fails_with_pips_message(
    base_image: str, index: Path
) -> None:
    done = in_container(
        index,
        """
        pip install python-dateutil==2.9.0.post0
        /venv/bin/python -c 'import dateutil, six; print("IMPORTED", dateutil.__version__, six.__version__)'
        pip install six==1.16.0 && echo OLDER-SIX-OK
        pip install idna==3.10 2>&1 && echo UNVETTED-INSTALLED || echo UNVETTED-REFUSED
        pip install six==1.15.0 2>&1 && echo UNVETTED-VERSION-INSTALLED || echo UNVETTED-VERSION-REFUSED
        """,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "IMPORTED 2.9.0.post0 1.17.0" in done.stdout
    assert "OLDER-SIX-OK" in done.stdout
    assert "UNVETTED-REFUSED" in done.stdout and "UNVETTED-VERSION-REFUSED" in done.stdout
    assert "No matching distribution found for idna==3.10" in done.stdout
    assert "No matching distribution found for six==1.15.0" in done.stdout


def test_a_file_tampered_with_in_the_index_fails_on_its_hash(
    base_image: str, index: Path, tmp_path: Path
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(index, tampered)
    wheel = tampered / "files" / "six-1.17.0-py2.py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    done = in_container(tampered, "pip install six==1.17.0 2>&1 || echo INSTALL-FAILED")
    assert done.returncode == 0, done.stderr
    assert "INSTALL-FAILED" in done.stdout
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in done.stdout
    assert "six" in done.stdout


@pytest.fixture
def served(index: Path) -> Iterator[str]:
    """`imagebot index serve` on a free loopback port of this machine."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "imagebot", "index", "serve", str(index), "--port", str(port), "-q"],
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    url = f"http://127.0.0.1:{port}/simple"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_served_index_works_for_host_pip_and_uv(served: str, tmp_path: Path) -> None:
    download = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "download", "--no-deps", "--index-url", served,
         "-d", str(tmp_path), "python-dateutil==2.9.0.post0"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert download.returncode == 0, download.stderr
    assert (tmp_path / "python_dateutil-2.9.0.post0-py2.py3-none-any.whl").is_file()
    request = urllib.request.Request(
        f"{served}/six/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request) as response:
        assert [f["filename"] for f in json.load(response)["files"]] == [
            "six-1.16.0-py2.py3-none-any.whl",
            "six-1.17.0-py2.py3-none-any.whl",
        ]


def test_env_script_replays_an_environment_in_a_fresh_container(
    base_image: str, project: Path, index: Path, served: str, tmp_path: Path, imagebot: Run
) -> None:
    env_file = tmp_path / "environment.txt"
    env_file.write_text("# my analysis\npython-dateutil==2.9.0.post0\n")
    check = imagebot(project, "env", "check", str(env_file), "--index", served)
    assert check.code == 0, check.err
    script = tmp_path / "install-env.sh"
    done = imagebot(project, "env", "script", str(env_file), "--index", served, "-o", str(script))
    assert done.code == 0, done.err
    text = script.read_text()
    assert "six==1.17.0" in text and text.count("--hash=sha256:") == 2
    for _ in range(2):  # two fresh pods, the same environment
        replay = in_container(
            index,
            "PYTHON=/venv/bin/python bash /work/install-env.sh\npip freeze --local\n",
            mounts={tmp_path: "/work"},
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert replay.stdout.splitlines()[-2:] == ["python-dateutil==2.9.0.post0", "six==1.17.0"]


def test_env_check_reports_unvetted_lines_against_the_served_index(
    project: Path, served: str, tmp_path: Path, imagebot: Run
) -> None:
    env_file = tmp_path / "environment.txt"
    env_file.write_text("python-dateutil==2.9.0.post0\nsix==1.15.0\nidna\n")
    done = imagebot(project, "env", "check", str(env_file), "--index", served)
    assert done.code == 14
    assert (
        f"{env_file}:2: six==1.15.0 is not vetted (hint: vetted versions: 1.16.0, 1.17.0"
        in done.err
    )
    assert f"{env_file}:3: idna is not pinned" in done.err


def rendered_index_config_step(dockerfile: Path) -> str | None:
    """The RUN step of the rendered JupyterLab Dockerfile that writes /etc/pip.conf, as shell."""
    if not dockerfile.is_file():
        return None
    lines = dockerfile.read_text().splitlines()
    start = next(
        (i for i, line in enumerate(lines) if line.startswith("RUN ") and "/etc/pip.conf" in line),
        None,
    )
    if start is None:
        return None
    step = [lines[start].removeprefix("RUN ")]
    while step[-1].endswith("\\"):
        start += 1
        step.append(lines[start])
    return "\n".join(step)


def test_the_rendered_images_pip_and_uv_config_install_from_the_index(
    base_image: str, index: Path
) -> None:
    """The same pip.conf and uv.toml the image gets: plain `pip install` and `uv pip install`."""
    from uv import find_uv_bin

    step = rendered_index_config_step(REPO_ROOT / "jupyter" / "Dockerfile")
    if step is None:
        pytest.skip("jupyter/Dockerfile does not write /etc/pip.conf yet")
    uv_bin = Path(find_uv_bin())
    done = in_container(
        index,
        f"""
        unset PIP_INDEX_URL
        IMAGEBOT_INDEX_URL={INDEX_URL}
        {step}
        grep -i "ask" /etc/pip.conf
        pip install python-dateutil==2.9.0.post0
        uv pip install --python /venv/bin/python six==1.16.0
        pip freeze --local
        pip install idna==3.10 2>&1 && echo UNVETTED-INSTALLED || echo UNVETTED-REFUSED
        uv pip install --python /venv/bin/python idna==3.10 2>&1 && echo UV-UNVETTED-INSTALLED || echo UV-UNVETTED-REFUSED
        """,
        mounts={uv_bin: "/usr/local/bin/uv:ro"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "python-dateutil==2.9.0.post0\nsix==1.16.0" in done.stdout
    assert "UNVETTED-REFUSED" in done.stdout and "UV-UNVETTED-REFUSED" in done.stdout
    assert "No matching distribution found for idna==3.10" in done.stdout
