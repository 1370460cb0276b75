"""uv's own configuration in the repository or the environment never reaches `lock` or
`index build` (issue 10, item 2), with the real uv and the real PyPI.

A trap index records every request; the repository names it in `uv.toml`, in
`pyproject.toml [tool.uv]` and in the UV_*/PIP_* variables. Both commands must succeed
without a single request to it. Needs pypi.org; skipped when it is unreachable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .conftest import pypi_reachable

pytestmark = pytest.mark.integration

CONFIG = """\
[registry]
url = "registry.example.org/jupyter"

[images.lab]
dockerfile = "jupyter/Dockerfile"
base = "docker.io/library/python:3.11-slim-bookworm"
python = "3.11"
platform = "x86_64-manylinux_2_36"
sets = ["base"]
"""
BASE = '[python]\nsix = { version = "1.17.0", reason = "test", requested_by = "@ci" }\n'


if not pypi_reachable():
    pytest.skip("pypi.org is unreachable", allow_module_level=True)


@pytest.fixture
def trap() -> Iterator[tuple[str, list[str]]]:
    """An index that answers 404 to everything and remembers what was asked."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple", requests
    server.shutdown()
    server.server_close()


def hostile_repo(root: Path, trap_url: str) -> dict[str, str]:
    (root / "requirements").mkdir()
    (root / "requirements" / "base.toml").write_text(BASE)
    (root / "imagebot.toml").write_text(CONFIG)
    (root / "uv.toml").write_text(
        f'index-url = "{trap_url}"\n[pip]\nextra-index-url = ["{trap_url}"]\n'
    )
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "x"\nversion = "0"\n[tool.uv]\nextra-index-url = ["{trap_url}"]\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "IMAGEBOT_"))}
    return {
        **env,
        "UV_INDEX_URL": trap_url,
        "UV_EXTRA_INDEX_URL": trap_url,
        "UV_INDEX": f"trap={trap_url}",
        "UV_CONFIG_FILE": str(root / "uv.toml"),
        "PIP_INDEX_URL": trap_url,
        "PIP_EXTRA_INDEX_URL": trap_url,
    }


def imagebot(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagebot", "--config", str(root / "imagebot.toml"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_lock_and_index_build_ignore_the_repositorys_uv_configuration(
    tmp_path: Path, trap: tuple[str, list[str]]
) -> None:
    trap_url, requests = trap
    env = hostile_repo(tmp_path, trap_url)
    locked = imagebot(tmp_path, env, "lock")
    assert locked.returncode == 0, locked.stderr
    assert "six==1.17.0" in (tmp_path / "requirements" / "base.lock").read_text()
    built = imagebot(tmp_path, env, "index", "build", "out")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "out" / "simple" / "six" / "index.html").is_file()
    assert requests == []
