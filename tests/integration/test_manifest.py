"""`imagebot manifest` and `imagebot diff` on real images."""

from __future__ import annotations

import json

from imagebot.config import load_config
from imagebot.manifest import package_diff

from .conftest import SMALL_CONFIG, Run, Stack, run_imagebot


def test_manifest_lists_pip_and_dpkg_packages(stack: Stack, small_pushed: Run) -> None:
    run = run_imagebot(["manifest", "--json", "small"], stack.env())
    assert run.returncode == 0, run.output
    packages = json.loads(run.stdout)["packages"]
    assert packages["python"]["six"] == "1.16.0"
    assert "python3" in packages["dpkg"] and "dpkg" in packages["dpkg"]
    assert packages["r"] == {}


def test_diff_shows_the_changed_package(stack: Stack, small_pushed: Run) -> None:
    old = json.loads(small_pushed.stdout)[0]["ref"]
    build = run_imagebot(["build", "--json", "small"], stack.env(SIX_VERSION="1.17.0"))
    assert build.returncode == 0, build.output
    new = json.loads(build.stdout)[0]["ref"]
    run = run_imagebot(["diff", old, new], stack.env())
    assert run.returncode == 0, run.output
    assert "python: 0 added, 0 removed, 1 changed" in run.stdout
    assert "  ~ six 1.16.0 -> 1.17.0" in run.stdout
    assert "dpkg: no changes" in run.stdout
    # The API the GitOps commit message uses.
    config = load_config(SMALL_CONFIG, None, stack.env())
    text = package_diff(old, new, config=config, env=stack.env())
    assert "~ six 1.16.0 -> 1.17.0" in text
    missing = package_diff(old, f"{stack.namespace}/nothing:here", config=config, env=stack.env())
    assert missing.startswith("package diff unavailable: ") and "nothing:here" in missing
