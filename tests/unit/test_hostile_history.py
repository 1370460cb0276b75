"""Hostile-input rows for `imagebot history [--r] PACKAGE`: PACKAGE is a command-line value
that sits next to git's arguments, and the git history itself is hostile (a pull request's
commits carry any file text and any message). Each refused row: its exit code, one `error:`
line, no traceback, every file byte-identical."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from cli_runner import Result

from tests.unit.conftest import Hostile, Project, assert_refused
from tests.unit.test_hostile_impact import git_repo, nothing

RENV = "environments/methods/survey.renv.lock"


def committed(path: str, data: bytes) -> Callable[[Project, pytest.MonkeyPatch], None]:
    """The project as a git repository, then one more commit that writes `data` to `path`."""

    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        git_repo(project, monkeypatch)
        commit_file(project, path, data)

    return setup


def commit_file(project: Project, path: str, data: bytes) -> None:
    target = project.path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    for args in (["add", "--all"], ["commit", "--quiet", "-m", f"write {path}"]):
        subprocess.run(["git", *args], cwd=project.root, check=True, capture_output=True)


NO_DEPLOYMENTS = "--no-deployments"
CASES = [
    Hostile("r-vso", git_repo, ("history", "--r", "##vso[task.complete]"), 2, "PACKAGE"),
    Hostile("r-newline", git_repo, ("history", "--r", "R6\n==1"), 2, "PACKAGE"),
    Hostile("r-python-name", git_repo, ("history", "--r", "data_table"), 2, "R package name"),
    Hostile(
        "r-option", git_repo, ("history", "--r", "--", "--upload-pack=touch PWNED"), 2, "PACKAGE"
    ),
    Hostile("r-pathspec", git_repo, ("history", "--r", ":(glob)**"), 2, "PACKAGE"),
    Hostile("r-version", git_repo, ("history", "--r", "R6==2.5.1"), 2, "NAME, not NAME==VERSION"),
    Hostile(
        "not-utf8-in-history",
        committed(RENV, b'{"Owner": "@kari", "Packages": {"R6": {"Version": "2.5.1\xff"}}}\n'),
        ("history", "--r", "R6", NO_DEPLOYMENTS),
        12,
        "not UTF-8",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_history_input_is_refused(
    case: Hostile,
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
) -> None:
    assert_refused(case, project, monkeypatch, run_cli)
    assert not project.path("PWNED").exists()


RENV_LOCK = """\
{
  "Owner": "@kari",
  "Packages": {
    "R6": {"Package": "R6", "Version": "%s", "Source": "Repository"}
  }
}
"""


def test_hostile_versions_in_the_history_are_not_reported(
    project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., Result]
) -> None:
    """A renv.lock or [r] entry in the history with a version that is no R version (a log
    command, a newline escape) is dropped by the file's own parser: it never reaches stdout."""
    hostile = "##vso[task.setvariable variable=x]1"
    committed(RENV, (RENV_LOCK % "2.5.1").encode())(project, monkeypatch)
    commit_file(project, RENV, (RENV_LOCK % hostile).encode())
    monkeypatch.setenv("TF_BUILD", "True")

    result = run_cli("--config", project.config, "history", "--r", "R6", NO_DEPLOYMENTS, "--json")

    assert result.code == 0, result.err
    assert "vso" not in result.out
    assert "2.5.1" in result.out


def test_nothing_names_it(
    project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., Result]
) -> None:
    nothing(project, monkeypatch)
    git_repo(project, monkeypatch)
    result = run_cli("--config", project.config, "history", "--r", "numpy", NO_DEPLOYMENTS)
    assert result.code == 0, result.err
    assert result.out.startswith("R package numpy: no set or index-only [r] entry")
