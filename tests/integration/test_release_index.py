"""`imagebot release staging` covers the vetted index: on the small fixture with
`[index] publish` set, against the real engine, registry, git, uv and PyPI.

The index is built incrementally in the index cache and published before the promotion; the
summary lists the projects and versions added and removed; a run with nothing to change
uploads nothing; an index-only change alone publishes the new version and rebuilds no image.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .conftest import Run, Stack, run_imagebot, small_release_project
from .gitops_fixtures import IDENTITY, remote_head

pytestmark = pytest.mark.integration

INDEX_ONLY = """\
[python]
{entries}"""
ENTRY = '{name} = {{ version = "{version}", reason = "a test", requested_by = "@tests" }}\n'


def _index_only_text(**versions: str) -> str:
    entries = "".join(
        ENTRY.format(name=name.replace("_", "-"), version=version)
        for name, version in sorted(versions.items())
    )
    return INDEX_ONLY.format(entries=entries)


def _index_only(config: Path, **versions: str) -> None:
    (config.parent / "requirements" / "index-only.toml").write_text(_index_only_text(**versions))


@pytest.fixture
def project(stack: Stack, tmp_path: Path) -> tuple[Path, Path]:
    return small_release_project(
        stack,
        tmp_path,
        config_extra='\n[index]\nurl = "http://127.0.0.1:5557/simple"\n'
        + f'publish = "{tmp_path / "published"}"\n',
        requirements={"index-only.toml": _index_only_text(tabulate="0.9.0")},
    )


def _release(config: Path, env: dict[str, str]) -> Run:
    return run_imagebot(["release", "staging", "--json"], env, config=config)


def test_release_publishes_the_index_before_promoting_and_only_what_changed(
    stack: Stack, project: tuple[Path, Path], tmp_path: Path
) -> None:
    config, remote = project
    published = tmp_path / "published"
    env = stack.env(
        **IDENTITY,
        IMAGEBOT_CACHE_DIR=str(tmp_path / "cache"),
        IMAGEBOT_INDEX_CACHE=str(tmp_path / "index-cache"),
    )
    first = _release(config, env)
    assert first.returncode == 0, first.output
    summary = json.loads(first.stdout)
    index = summary["index"]
    assert index["destination"] == str(published)
    added = index["publish"]["index_changes"]["versions_added"]
    assert "tabulate==0.9.0" in added and "six==1.16.0" in added
    assert "index:" in first.stderr and "published to" in first.stderr
    stages = list(summary["timings"])
    assert stages.index("index") < stages.index("promote staging")
    assert (published / "simple" / "tabulate" / "index.html").is_file()
    assert summary["promotion"]["commit"]

    again = _release(config, env)
    assert again.returncode == 0, again.output
    noop = json.loads(again.stdout)
    assert noop["index"]["publish"]["added"] == [] and noop["index"]["publish"]["changed"] == []
    assert "nothing uploaded" in again.stderr
    head = remote_head(remote)

    # an index-only change alone: published, nothing built, nothing promoted
    _index_only(config, tabulate="0.9.0", text_unidecode="1.3")
    third = _release(config, env)
    assert third.returncode == 0, third.output
    changed = json.loads(third.stdout)
    assert changed["index"]["publish"]["index_changes"]["versions_added"] == ["text-unidecode==1.3"]
    assert not [image for image in changed["images"] if image.get("built")]
    assert remote_head(remote) == head
    assert (published / "simple" / "text-unidecode" / "index.html").is_file()


def test_an_empty_index_cache_starts_from_the_published_manifest(
    stack: Stack, project: tuple[Path, Path], tmp_path: Path
) -> None:
    config, _ = project
    env = stack.env(
        **IDENTITY,
        IMAGEBOT_CACHE_DIR=str(tmp_path / "cache"),
        IMAGEBOT_INDEX_CACHE=str(tmp_path / "index-cache"),
    )
    assert _release(config, env).returncode == 0
    shutil.rmtree(tmp_path / "index-cache")  # a fresh CI agent
    fresh = _release(config, env)
    assert fresh.returncode == 0, fresh.output
    assert "starts from the manifest published at" in fresh.stderr
    assert json.loads(fresh.stdout)["index"]["publish"]["added"] == []
