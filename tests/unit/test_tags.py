"""Content tags: a pure function of the build inputs, and nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagebot.config import load_config
from imagebot.tags import (
    BuildInput,
    ImageRef,
    content_tag,
    context_inputs,
    context_sources,
    dockerfile_instructions,
    image_ref,
    tag_from_inputs,
)

DOCKERFILE = """\
# comment
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
ARG APP_DIR=app
COPY --chown=1000:100 ${APP_DIR}/ /opt/app/
COPY ["conf/a.conf", "conf/b.conf", "/etc/"]
ADD https://example.org/file.tgz /tmp/
COPY --from=build /opt /opt
RUN --mount=type=bind,source=requirements/base.lock,target=/tmp/base.lock \\
    --mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca.crt \\
    --mount=type=cache,target=/root/.cache \\
    pip install -r /tmp/base.lock
COPY scripts/*.sh /usr/local/bin/
"""


def test_instructions_join_continuations_and_drop_comments() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    assert [i for i, _ in instructions] == [
        "ARG", "FROM", "ARG", "COPY", "COPY", "ADD", "COPY", "RUN", "COPY",
    ]  # fmt: skip
    run = dict(instructions)["RUN"]
    assert "--mount=type=cache" in run and run.endswith("pip install -r /tmp/base.lock")


def test_context_sources_cover_copy_add_and_bind_mounts() -> None:
    sources = context_sources(DOCKERFILE, {})
    assert sources == [
        "app/",
        "conf/a.conf",
        "conf/b.conf",
        "requirements/base.lock",
        "scripts/*.sh",
    ]


def test_context_sources_substitute_build_args_over_arg_defaults() -> None:
    assert context_sources(DOCKERFILE, {"APP_DIR": "other"})[0] == "other/"


def test_bind_mount_without_source_is_the_whole_context() -> None:
    assert context_sources("FROM x\nRUN --mount=type=bind,target=/src make\n", {}) == ["."]


def _tree(root: Path) -> None:
    (root / "app").mkdir()
    (root / "app" / "main.py").write_text("print(1)\n")
    (root / "app" / "__pycache__").mkdir()
    (root / "app" / "__pycache__" / "main.pyc").write_bytes(b"junk")
    (root / "conf").mkdir()
    (root / "conf" / "a.conf").write_text("a\n")
    (root / "scripts").mkdir()
    (root / "scripts" / "run.sh").write_text("#!/bin/sh\n")


def test_context_inputs_expand_directories_and_globs(tmp_path: Path) -> None:
    _tree(tmp_path)
    inputs = context_inputs(tmp_path, ["app/", "conf/a.conf", "scripts/*.sh", "missing.txt"])
    assert [i.name for i in inputs] == [
        "app/main.py", "conf/a.conf", "missing:missing.txt", "scripts/run.sh",
    ]  # fmt: skip


def test_executable_bit_is_an_input(tmp_path: Path) -> None:
    _tree(tmp_path)
    before = context_inputs(tmp_path, ["scripts/run.sh"])
    os.chmod(tmp_path / "scripts" / "run.sh", 0o755)
    assert context_inputs(tmp_path, ["scripts/run.sh"]) != before


def test_tag_is_order_independent_and_sensitive_to_every_input() -> None:
    a, b = BuildInput("a", b"1"), BuildInput("b", b"2")
    tag = tag_from_inputs([a, b], {"X": "1"})
    assert tag == tag_from_inputs([b, a], {"X": "1"})
    assert len(tag) == 16 and ImageRef.parse(f"r.example/x:{tag}").tag == tag
    assert tag != tag_from_inputs([a, BuildInput("b", b"3")], {"X": "1"})
    assert tag != tag_from_inputs([a, BuildInput("c", b"2")], {"X": "1"})
    assert tag != tag_from_inputs([a, b], {"X": "2"})
    assert tag != tag_from_inputs([a, b], {})


PROJECT_CONFIG = """\
[registry]
url = "registry.example.org/jupyter"

[images.lab]
dockerfile = "jupyter/Dockerfile"
base = "python:3.11-slim-bookworm"
sets = ["base"]
build_args = { BASE_IMAGE = "${BASE:-python:3.11-slim-bookworm}" }
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "imagebot.toml").write_text(PROJECT_CONFIG)
    (tmp_path / "jupyter").mkdir()
    (tmp_path / "jupyter" / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
        "RUN --mount=type=bind,source=requirements/base.lock,target=/l pip install -r /l\n"
        "COPY jupyter/start.sh /usr/local/bin/\n"
    )
    (tmp_path / "jupyter" / "start.sh").write_text("#!/bin/sh\n")
    (tmp_path / "jupyter" / "README.md").write_text("not copied\n")
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "base.toml").write_text("[python]\n")
    (tmp_path / "requirements" / "base.lock").write_text("six==1.16.0\n")
    return tmp_path


def _tag(project: Path, env: dict[str, str] | None = None) -> str:
    return content_tag(load_config(project / "imagebot.toml", None, env or {}), "lab")


def test_content_tag_is_stable_across_copies_of_the_project(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import shutil

    other = tmp_path_factory.mktemp("copy") / "p"
    shutil.copytree(project, other)
    assert _tag(project) == _tag(other)


@pytest.mark.parametrize(
    "change",
    [
        lambda p: (p / "jupyter" / "Dockerfile").write_text(
            (p / "jupyter" / "Dockerfile").read_text() + "\n# x\n"
        ),
        lambda p: (p / "requirements" / "base.lock").write_text("six==1.17.0\n"),
        lambda p: (p / "requirements" / "base.toml").write_text("[python]\n# reason\n"),
        lambda p: (p / "jupyter" / "start.sh").write_text("#!/bin/sh\necho\n"),
    ],
    ids=["dockerfile", "lock", "set file", "copied file"],
)
def test_content_tag_changes_with_each_input(project: Path, change: object) -> None:
    before = _tag(project)
    change(project)  # type: ignore[operator]
    assert _tag(project) != before


def test_files_the_dockerfile_does_not_read_do_not_change_the_tag(project: Path) -> None:
    before = _tag(project)
    (project / "jupyter" / "README.md").write_text("edited\n")
    (project / "unrelated.txt").write_text("x\n")
    assert _tag(project) == before


def test_build_args_change_the_tag(project: Path) -> None:
    assert _tag(project, {"BASE": "imagebot-local/bookworm-python:3.11"}) != _tag(project)


def test_image_ref_is_registry_url_name_and_tag(project: Path) -> None:
    config = load_config(project / "imagebot.toml", None, {})
    ref = image_ref(config, "lab")
    assert ref.name == "registry.example.org/jupyter/lab"
    assert ref.tag == content_tag(config, "lab")
    assert ref.registry == "registry.example.org"
    assert ref.repository == "jupyter/lab"


def test_the_base_image_digest_changes_the_tag(project: Path) -> None:
    config = load_config(project / "imagebot.toml", None, {})
    plain = content_tag(config, "lab")
    one = content_tag(config, "lab", "sha256:" + "1" * 64)
    two = content_tag(config, "lab", "sha256:" + "2" * 64)
    assert len({plain, one, two}) == 3
    assert image_ref(config, "lab", "sha256:" + "1" * 64).tag == one
    assert content_tag(config, "lab", "sha256:" + "1" * 64) == one  # stable
