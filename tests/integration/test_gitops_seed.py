"""scripts/seed-gitops and the real imagebot.toml's local profile against the seeded repo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from paths import REPO_ROOT

from imagebot import promote as promoting
from imagebot.config import load_config
from imagebot.tags import ImageRef

from .gitops_fixtures import remote_log

pytestmark = pytest.mark.integration

SEED = REPO_ROOT / "scripts" / "seed-gitops"


def seed(bare: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SEED), "--path", str(bare), *args], capture_output=True, text=True, check=True
    )


def test_seed_is_idempotent_and_reset_keeps_history(tmp_path: Path) -> None:
    bare = tmp_path / "platform-dev.git"
    seed(bare)
    assert "already seeded" in seed(bare).stderr
    assert "already matches" in seed(bare, "--reset").stderr
    assert len(remote_log(bare)) == 1


def test_real_config_targets_exist_in_the_seed(tmp_path: Path) -> None:
    bare = tmp_path / "platform-dev.git"
    seed(bare)
    env = {"IMAGEBOT_GITOPS_REPO": str(bare)}
    config = load_config(REPO_ROOT / "imagebot.toml", "local", env)

    for name in config.environments:
        refs = promoting.current_refs(config, name, env=env)
        assert set(refs) == set(config.environment(name).targets)

    digest = "sha256:" + "3" * 64
    new = {image: ImageRef(f"{config.registry.url}/{image}", "t1", digest) for image in refs}
    result = promoting.promote(config, "staging", new, env=env, package_diff=lambda o, n: "-")
    assert result.pushed
    assert promoting.current_refs(config, "staging", env=env) == new
