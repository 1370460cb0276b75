"""The vetted index keeps serving what registered environments pin (real PyPI, real uv).

A set vets python-dateutil 2.9.0.post0; a registered environment pins the older 2.8.2 (and its
six), another one pins 2.8.0, which an advisory (a record in a local OSV directory, not waived)
affects. The index serves 2.8.2 with the environment as the reason and its owner as requester,
leaves 2.8.0 out, and `index build` names the owner who must move.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import pypi_reachable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not pypi_reachable(), reason="needs the real PyPI"),
]

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

[advisories]
source = "osv"
"""
SMALL_SET = """\
[python]
python-dateutil = { version = "2.9.0.post0", reason = "dates", requested_by = "@itest" }
"""
RECORD = {
    "id": "PYSEC-2099-42",
    "modified": "2099-01-01T00:00:00Z",
    "summary": "a made-up advisory for this test",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "python-dateutil"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.8.1"}]}],
        }
    ],
}


def test_index_serves_registered_pins_unless_an_advisory_blocks_them(tmp_path: Path) -> None:
    root = tmp_path / "project"
    for path, text in {
        "imagebot.toml": CONFIG,
        "jupyter/Dockerfile": "FROM scratch\n",
        "requirements/small.toml": SMALL_SET,
        "environments/methods/survey.txt": "# owner: @kari\npython-dateutil==2.8.2\n",
        "environments/web/old.txt": "# owner: @org/web\npython-dateutil==2.8.0\n",
        "osv/vulns/python-dateutil/PYSEC-2099-42.json": json.dumps(RECORD),
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEBOT_")}

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagebot",
            "-c",
            str(root / "imagebot.toml"),
            "index",
            "build",
            str(root / "out"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env=env,
    )

    assert done.returncode == 0, done.stderr
    assert (
        "environments/web/old.txt:2: python-dateutil==2.8.0 is not served: PYSEC-2099-42 "
        "(not waived); @org/web must move"
    ) in done.stderr
    manifest = json.loads((root / "out" / "imagebot-index.json").read_text())
    roots = {(r["name"], r["version"]): (r["set"], r["requested_by"]) for r in manifest["roots"]}
    assert roots[("python-dateutil", "2.8.2")] == ("environment methods/survey", "@kari")
    assert ("python-dateutil", "2.8.0") not in roots
    served = {(p["name"], p["version"]) for p in manifest["packages"]}
    assert {("python-dateutil", "2.8.2"), ("python-dateutil", "2.9.0.post0")} <= served
    assert ("python-dateutil", "2.8.0") not in served
