"""The manifest of a digest-pinned image is read once, then served from the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagebot.manifest import (
    ImagePackages,
    _store,
    manifest_cache_path,
    package_diff,
    read_manifest,
)

DIGEST = "sha256:" + "ab" * 32
REF = f"127.0.0.1:5555/jupyter/jupyterlab:abc@{DIGEST}"
NO_CONFIG: Any = None  # a cache hit needs neither config nor engine


def test_cache_hit_needs_no_engine(tmp_path: Path) -> None:
    env = {"IMAGEBOT_CACHE_DIR": str(tmp_path)}
    path = manifest_cache_path(DIGEST, env)
    _store(path, ImagePackages(REF, {"python": {"numpy": "2.4.6"}, "r": {}, "dpkg": {}}))

    manifest = read_manifest(NO_CONFIG, REF, env=env)

    assert manifest.packages["python"] == {"numpy": "2.4.6"}
    assert path.parent == tmp_path / "manifests"


def test_diff_of_two_cached_images(tmp_path: Path) -> None:
    env = {"IMAGEBOT_CACHE_DIR": str(tmp_path)}
    new_digest = "sha256:" + "cd" * 32
    _store(manifest_cache_path(DIGEST, env), ImagePackages(REF, {"python": {"numpy": "2.4.5"}}))
    new_ref = f"127.0.0.1:5555/jupyter/jupyterlab:def@{new_digest}"
    _store(
        manifest_cache_path(new_digest, env),
        ImagePackages(new_ref, {"python": {"numpy": "2.4.6", "polars": "1.35.2"}}),
    )

    text = package_diff(REF, new_ref, config=NO_CONFIG, env=env)

    assert "numpy" in text and "2.4.5" in text and "2.4.6" in text
    assert "polars" in text


def test_an_unreadable_cache_entry_is_a_miss(tmp_path: Path) -> None:
    env = {"IMAGEBOT_CACHE_DIR": str(tmp_path)}
    path = manifest_cache_path(DIGEST, env)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    text = package_diff(
        REF, REF, config=NO_CONFIG, env={**env, "DOCKER_HOST": "unix:///nonexistent.sock"}
    )
    assert text.startswith("package diff unavailable:")
    assert len(text.splitlines()[0]) <= 200
