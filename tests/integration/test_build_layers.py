"""Assembled builds against the real engine and registry (fixture `layered`: three small sets).

- the same environment: the assembled image and a plain `docker build` of the same Dockerfile
  (per-set layers, as before) hold the same files under /opt/venv, byte for byte and mode for
  mode, and the same `pip list`;
- a one-package change in the first, the middle or the last set adds only that package's
  layer to what a node pulls, and reinstalls only it;
- the base image's digest is in the content tag and the labels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from paths import REPO_ROOT

from imagebot.assemble import PACKAGES_TAG
from imagebot.base_image import BASE_DIGEST_LABEL
from imagebot.config import load_config
from imagebot.registry import open_registry
from imagebot.tags import ImageRef, image_ref

from .conftest import FIXTURES, Stack, run_imagebot

LAYERED = FIXTURES / "layered"
BASE = "imagebot-local/bookworm-python:3.11"
DOCKER = "/usr/bin/docker"
# Lists every path under /opt/venv with its type, mode and content hash.
LIST_VENV = r"""
import hashlib, json, os, stat
out = {}
for root, dirs, files in os.walk("/opt/venv"):
    for name in dirs + files:
        path = os.path.join(root, name)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            out[path] = ["link", os.readlink(path)]
        elif stat.S_ISDIR(st.st_mode):
            out[path] = ["dir", oct(st.st_mode & 0o7777)]
        else:
            with open(path, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            out[path] = ["file", oct(st.st_mode & 0o7777), digest]
print(json.dumps(out, sort_keys=True))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "layered"
    shutil.copytree(LAYERED, root)
    return root


def _imagebot(project: Path, stack: Stack, *args: str) -> str:
    run = run_imagebot(list(args), stack.env(), config=project / "imagebot.toml", timeout=1200)
    assert run.returncode == 0, run.output[-4000:]
    return run.stdout


def _run(image: str, *command: str) -> str:
    result = subprocess.run(
        [DOCKER, "run", "--rm", "--network", "none", "--user", "0", image, *command],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _environment(image: str) -> tuple[dict[str, list[str]], list[dict[str, str]]]:
    files = json.loads(_run(image, "python3", "-c", LIST_VENV))
    pip_list = json.loads(_run(image, "python", "-m", "pip", "list", "--format", "json"))
    return files, pip_list


def _manifest_layers(stack: Stack, project: Path, ref: ImageRef) -> dict[str, int]:
    config = load_config(project / "imagebot.toml", None, stack.env())
    found = open_registry(config, stack.env()).get_manifest(ref.repository, ref.digest or "")
    assert found is not None
    return {layer["digest"]: layer["size"] for layer in json.loads(found[1])["layers"]}


def _bump(project: Path, stack: Stack, set_name: str, package: str, old: str, new: str) -> None:
    path = project / "requirements" / f"{set_name}.toml"
    path.write_text(path.read_text().replace(f'version = "{old}"', f'version = "{new}"'))
    _imagebot(project, stack, "lock")
    _imagebot(project, stack, "render")


@pytest.mark.slow
def test_the_assembled_image_is_the_same_environment_as_a_plain_build(
    stack: Stack, project: Path
) -> None:
    ref = _imagebot(project, stack, "build", "lab").strip()
    assert "packages" not in ref and ref.startswith(f"{stack.namespace}/lab:")
    plain = f"{stack.namespace}/lab-plain:{ref.rsplit(':', 1)[1]}"
    subprocess.run(
        [
            DOCKER,
            "build",
            "-q",
            "-f",
            str(project / "Dockerfile"),
            "-t",
            plain,
            "--build-arg",
            f"BASE_IMAGE={BASE}",
            "--secret",
            "id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt",
            str(project),
        ],
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
        check=True,
        capture_output=True,
    )
    assembled_files, assembled_pip = _environment(ref)
    plain_files, plain_pip = _environment(plain)
    assert assembled_pip == plain_pip
    assert {p["name"] for p in plain_pip} >= {"six", "tabulate", "python-dateutil", "idna"}
    # Every file, link and directory, with its mode and bytes (the .pyc files included: both
    # builds compile them hash-checked, so they are the same bytes).
    assert assembled_files == plain_files
    assert any(path.endswith(".pyc") for path in plain_files)
    labels = docker.from_env().images.get(ref).labels
    assert labels["org.opencontainers.image.version"] == ref.rsplit(":", 1)[1]
    base_id = docker.from_env().images.get(BASE).id
    assert labels[BASE_DIGEST_LABEL] == base_id
    config = load_config(project / "imagebot.toml", None, stack.env())
    assert image_ref(config, "lab", base_id).tag == ref.rsplit(":", 1)[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("set_name", "package", "old", "new"),
    [
        ("first", "six", "1.16.0", "1.17.0"),
        ("middle", "tabulate", "0.8.10", "0.9.0"),
        ("last", "idna", "3.7", "3.10"),
    ],
)
def test_a_one_package_change_adds_only_its_layer(
    stack: Stack, project: Path, set_name: str, package: str, old: str, new: str
) -> None:
    env_name = re.sub(r"[^a-z0-9]", "", f"{set_name}{package}")
    text = (project / "imagebot.toml").read_text().replace("[images.lab]", f"[images.{env_name}]")
    (project / "imagebot.toml").write_text(text)
    _imagebot(project, stack, "render")
    before = ImageRef.parse(_imagebot(project, stack, "build", "--push", env_name).strip())
    _bump(project, stack, set_name, package, old, new)
    run = run_imagebot(
        ["build", "--push", env_name], stack.env(), config=project / "imagebot.toml", timeout=1200
    )
    assert run.returncode == 0, run.output[-4000:]
    after = ImageRef.parse(run.stdout.strip())
    assert after.tag != before.tag
    assert "packages: " in run.stderr and "reused" in run.stderr
    old_layers = _manifest_layers(stack, project, before)
    new_layers = _manifest_layers(stack, project, after)
    added = {d: s for d, s in new_layers.items() if d not in old_layers}
    assert len(added) == 1, added  # the small group holding the bumped package
    assert sum(added.values()) < 5_000_000
    assert len(new_layers) == len(old_layers)
    config = load_config(project / "imagebot.toml", None, stack.env())
    packages = open_registry(config, stack.env()).get_manifest(after.repository, PACKAGES_TAG)
    assert packages is not None and f"{package}=={new}@".encode() in packages[1]


def test_the_fixture_lock_and_dockerfile_are_current() -> None:
    config = ["--config", str(LAYERED / "imagebot.toml")]
    for command in (["lock", "--check"], ["render", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "imagebot", *config, *command],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_a_new_base_under_the_same_tag_is_a_new_content_tag(stack: Stack, project: Path) -> None:
    base = f"imagebot-local/layering-base-{stack.namespace.rsplit('-', 1)[-1]}:1"
    subprocess.run([DOCKER, "tag", BASE, base], check=True)
    config = project / "imagebot.toml"
    config.write_text(config.read_text().replace(f'base = "{BASE}"', f'base = "{base}"'))
    _imagebot(project, stack, "render")
    try:
        first = _imagebot(project, stack, "build", "lab").strip()
        assert _imagebot(project, stack, "build", "lab").strip() == first  # same base: same tag
        subprocess.run(
            [DOCKER, "build", "-q", "-t", base, "-"],
            input=f"FROM {BASE}\nRUN echo two > /etc/base-release\n",
            text=True,
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
            check=True,
            capture_output=True,
        )
        second = _imagebot(project, stack, "build", "lab").strip()
        assert second != first
        labels = docker.from_env().images.get(second).labels
        assert labels[BASE_DIGEST_LABEL] == docker.from_env().images.get(base).id
        assert _run(second, "cat", "/etc/base-release").strip() == "two"
    finally:
        subprocess.run([DOCKER, "rmi", "-f", base], capture_output=True, check=False)
