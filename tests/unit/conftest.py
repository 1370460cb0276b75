"""Fixtures for the core's unit tests: a tiny project on disk and an in-process CLI runner."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_runner import Result

CONFIG = """\
[project]
source = "https://example.org/stats/images"

[registry]
url = "registry.example.org/jupyter"
auth = "basic"

[images.lab]
dockerfile = "jupyter/Dockerfile"
base = "docker.io/library/python:3.11-slim-bookworm"
python = "3.11"
platform = "x86_64-manylinux_2_36"
sets = ["base", "extra"]

[index]
url = "${IMAGEBOT_INDEX_URL:-https://index.example.org/simple}"
request_url = "https://example.org/stats/images#asking-for-a-package"

[profiles.local.index]
url = "http://127.0.0.1:5556/simple"
"""

BASE_SET = """\
# The notebook layer.
[set]
description = "Notebook tooling"

[python]
jupyterlab = { version = "4.6.6", reason = "the UI", requested_by = "@platform-team" }
# the kernel
zmq-kernel = { version = "1.0.0", reason = "a kernel", requested_by = "@platform-team" }
"""

EXTRA_SET = """\
[set]
description = "Extras"

[python]
numpy = { version = "2.4.6", reason = "arrays", requested_by = "@anna" }

[r]
data.table = { version = "1.14.8", reason = "tables", requested_by = "@kari" }
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@dataclass
class Project:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "imagebot.toml"

    def path(self, relative: str) -> Path:
        return self.root / relative

    def write(self, relative: str, text: str) -> Path:
        return write(self.root / relative, text)

    def snapshot(self) -> Mapping[str, bytes]:
        return {
            p.relative_to(self.root).as_posix(): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A small project: two sets, locked by a fake resolver, Dockerfile rendered."""
    monkeypatch.delenv("IMAGEBOT_INDEX_URL", raising=False)
    monkeypatch.delenv("IMAGEBOT_PROFILE", raising=False)
    monkeypatch.delenv("IMAGEBOT_CONFIG", raising=False)
    proj = Project(tmp_path)
    proj.write("imagebot.toml", CONFIG)
    proj.write("requirements/base.toml", BASE_SET)
    proj.write("requirements/extra.toml", EXTRA_SET)
    return proj


class FakeResolver:
    """Answers `uv pip compile` from a table: each pin resolves to itself plus its deps."""

    def __init__(self, deps: Mapping[str, list[str]] | None = None, fail: str | None = None):
        self.deps = dict(deps or {})
        self.fail = fail
        self.calls: list[tuple[dict[str, str], str]] = []
        self.preferences: list[str] = []  # each call's preferences, like uv's output file

    def compile(
        self,
        inputs: Mapping[str, str],
        constraints: str,
        python: str,
        platform: str,
        *,
        preferences: str = "",
    ) -> str:
        from imagebot.uv import ResolveFailed

        self.calls.append((dict(inputs), constraints))
        self.preferences.append(preferences)
        if self.fail is not None:
            raise ResolveFailed(self.fail)
        preferred = dict(line.split("==") for line in preferences.splitlines() if line)
        constrained = dict(line.split("==") for line in constraints.splitlines() if line)
        pinned = {**preferred, **constrained}
        wanted: dict[str, str] = {}
        for text in inputs.values():
            for line in text.splitlines():
                name, version = line.split("==")
                wanted[name.split("[")[0]] = version
                for dep in self.deps.get(name, []):
                    dep_name, dep_version = dep.split("==")
                    wanted.setdefault(dep_name, pinned.get(dep_name, dep_version))
        return "".join(
            f"{name}=={version} \\\n    --hash=sha256:{'ab' * 32}\n    # via -r x.in\n"
            for name, version in sorted(wanted.items())
        )


@pytest.fixture
def fake_resolver() -> type[FakeResolver]:
    return FakeResolver


@pytest.fixture
def locked_project(
    project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., Result]
) -> Project:
    """`project` after `imagebot lock` (fake resolver) and `imagebot render`."""
    import imagebot.lock

    resolver = FakeResolver({"jupyterlab": ["tornado==6.5.2"], "numpy": []})
    monkeypatch.setattr(imagebot.lock, "uv_resolver", lambda: resolver)
    assert run_cli("--config", project.config, "lock").code == 0
    assert run_cli("--config", project.config, "render").code == 0
    return project


@dataclass(frozen=True)
class Hostile:
    """One row of the hostile-input suite (tests/unit/test_hostile_*.py).

    `setup` writes the hostile bytes into the project (or sets the environment); `argv` is the
    command that reads them; the command must refuse with `code`, print exactly one `error:`
    line containing `expected`, no traceback, and leave every file byte-identical.
    """

    id: str
    setup: Callable[[Project, pytest.MonkeyPatch], None]
    argv: tuple[str, ...]
    code: int
    expected: str


def assert_refused(
    case: Hostile,
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
) -> Result:
    """Run one Hostile row through the real boundary and check everything the suite promises."""
    case.setup(project, monkeypatch)
    before = project.snapshot()
    result = run_cli("--config", project.config, *case.argv)
    assert result.code == case.code, result.err
    assert len(result.error_lines) == 1, result.err
    assert case.expected in result.err, result.err
    assert "Traceback" not in result.err
    assert project.snapshot() == before  # every input byte-identical, nothing half-written
    return result


GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git_repo(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The project as a git repository with one commit on `main` (a review's base)."""
    import subprocess

    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)
    for args in (
        ["init", "--quiet", "--initial-branch=main"],
        ["add", "--all"],
        ["commit", "--quiet", "-m", "base"],
    ):
        subprocess.run(["git", *args], cwd=project.root, check=True, capture_output=True)
