"""Hostile-input rows for `imagebot review`: the base revision (a command-line value that reaches
git) and the requester's confirmation (a set-file value that reaches the report, the Azure log
and the run's summary page). Each refused row: its exit code, one `error:` line, no traceback,
every file (the git repository included) byte-identical, and git never saw the value.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import Hostile, Project, Result, assert_refused

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git_repo(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The project as a git repository with one commit on `main`."""
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)
    for args in (
        ["init", "--quiet", "--initial-branch=main"],
        ["add", "--all"],
        ["commit", "--quiet", "-m", "base"],
    ):
        subprocess.run(["git", *args], cwd=project.root, check=True, capture_output=True)


def base(value: str) -> Hostile:
    return Hostile(
        f"base-{value[:20]}",
        git_repo,
        ("review", f"--base={value}"),
        2,
        "is not a git revision imagebot accepts",
    )


def with_confirmation(text: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        git_repo(project, monkeypatch)
        line = (
            'polars = { version = "1.0.0", reason = "frames", requested_by = "@anna", '
            f"safe_because = {text} }}\n"
        )
        path = project.path("requirements/extra.toml")
        path.write_text(path.read_text().replace("[r]\n", line + "\n[r]\n"), encoding="utf-8")

    return setup


CASES = [
    base("--upload-pack=touch PWNED"),
    base("-c"),
    base("HEAD;touch PWNED"),
    base("$(touch PWNED)"),
    base("main..HEAD"),
    base("main\nHEAD"),
    base("HEAD:requirements"),
    base("x" * 300),
    Hostile(
        "base-unknown",
        git_repo,
        ("review", "--base", "no-such-branch"),
        2,
        "is not a commit in this repository",
    ),
    Hostile(
        "confirmation-newline",
        with_confirmation('"checked\\n##vso[task.setvariable variable=X]1"'),
        ("review", "--base", "main"),
        4,
        "problem",
    ),
    Hostile(
        "add-confirmation-newline",
        lambda project, monkeypatch: None,
        (
            "add",
            "python",
            "polars==1.0.0",
            "--set",
            "extra",
            "--reason",
            "frames",
            "--requested-by",
            "@anna",
            "--safe-because",
            "checked\n##vso[task.setvariable variable=X]1",
        ),
        4,
        "safe_because",
    ),
    Hostile(
        "confirmation-not-a-string",
        with_confirmation("true"),
        ("review", "--base", "main"),
        4,
        "problem",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_refused(
    case: Hostile,
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
) -> None:
    import imagebot.gitops

    seen: list[list[str]] = []
    real = imagebot.gitops.run_git

    def recording(args: Any, cwd: Path, env: Any) -> Any:
        seen.append(list(args))
        return real(args, cwd, env)

    monkeypatch.setattr(imagebot.gitops, "run_git", recording)
    result = assert_refused(case, project, monkeypatch, run_cli)
    assert "safe_because" in result.err or case.id.startswith("base")
    given = case.argv[-1].removeprefix("--base=")
    if case.id.startswith("base-") and case.id != "base-unknown":
        assert seen == []  # refused before any git command ran
    assert not any(given in arg and arg != f"{given}^{{commit}}" for args in seen for arg in args)
    assert not project.path("PWNED").exists()
