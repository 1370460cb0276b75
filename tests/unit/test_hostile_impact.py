"""Hostile-input rows for registered environments (`imagebot check` reads every file under
environments/) and for `imagebot impact` / `imagebot history` (PACKAGE is a command-line value
next to git). Each row: its exit code, one `error:` line, no traceback, every file
byte-identical.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.conftest import Hostile, Project, Result, assert_refused, git_repo

OWNED = "# owner: @kari\n"
ENV = "environments/methods/survey.txt"


def env_file(text: str | bytes, path: str = ENV) -> Callable[[Project, pytest.MonkeyPatch], None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        target = project.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text, encoding="utf-8")

    return setup


def symlinked_file(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = project.path("secret.txt")
    secret.write_text(OWNED + "numpy==2.4.6\n", encoding="utf-8")
    project.path("environments/methods").mkdir(parents=True)
    os.symlink(secret, project.path(ENV))


def symlinked_team(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = project.path("elsewhere")
    elsewhere.mkdir()
    (elsewhere / "survey.txt").write_text(OWNED + "numpy==2.4.6\n", encoding="utf-8")
    project.path("environments").mkdir()
    os.symlink(elsewhere, project.path("environments/methods"))


def nothing(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    return None


RENV = "environments/methods/survey.renv.lock"


def renv_file(
    owner: str = '"@kari"', package: str = '"R6"', source: str = '"Repository"', path: str = RENV
) -> Callable[[Project, pytest.MonkeyPatch], None]:
    """A registered R environment (renv.lock with a top-level Owner), values as JSON text."""
    return env_file(
        f'{{"Owner": {owner}, "R": {{"Version": "4.2.2", "Repositories": []}},\n'
        f' "Packages": {{{package}: {{"Package": {package}, "Version": "2.5.1", '
        f'"Source": {source}}}}}}}\n',
        path,
    )


CHECK = ("check",)
R_CASES = [
    Hostile("renv-owner-missing", env_file('{"Packages": {}}\n', RENV), CHECK, 14, 'no "Owner"'),
    Hostile("renv-owner-vso", renv_file('"##vso[task.complete]"'), CHECK, 14, "GitHub handle"),
    Hostile("renv-owner-newline", renv_file('"@kari\\n@evil"'), CHECK, 14, "GitHub handle"),
    Hostile("renv-owner-object", renv_file('{"a": 1}'), CHECK, 14, "GitHub handle"),
    Hostile(
        "renv-owner-twice",
        env_file('{"Owner": "@a", "Owner": "@b", "Packages": {}}\n', RENV),
        CHECK,
        14,
        'a second "Owner" field',
    ),
    Hostile("renv-name-vso", renv_file(package='"##vso[x]"'), CHECK, 14, "R package name"),
    Hostile(
        "renv-source-url",
        renv_file(source='"https://evil.example/R6.tar.gz"'),
        CHECK,
        14,
        "installs from outside the vetted repository",
    ),
    Hostile("renv-unvetted", renv_file(), CHECK, 14, "R package R6 2.5.1 is not vetted"),
    Hostile("renv-not-json", env_file('{"Owner": "@a",\n', RENV), CHECK, 14, "not JSON"),
    Hostile("renv-deep", env_file("[" * 100_000 + "]" * 100_000, RENV), CHECK, 14, "too deeply"),
    Hostile(
        "renv-path-newline",
        renv_file(path="environments/methods/a\nb.renv.lock"),
        CHECK,
        14,
        "not a registered environment's path",
    ),
    Hostile("impact-r-newline", nothing, ("impact", "--r", "R6\n==1"), 2, "PACKAGE"),
    Hostile("impact-r-python-name", nothing, ("impact", "--r", "data_table"), 2, "R package name"),
    Hostile("impact-r-bad-version", nothing, ("impact", "--r", "R6==$(touch PWNED)"), 2, "PACKAGE"),
    Hostile("impact-r-vso", nothing, ("impact", "##vso[x]", "--r"), 2, "PACKAGE"),
    Hostile("impact-r-broken-renv", renv_file(owner='"x"'), ("impact", "--r", "R6"), 14, "handle"),
]
CASES = [
    Hostile("owner-missing", env_file("numpy==2.4.6\n"), CHECK, 14, "no owner line"),
    Hostile(
        "owner-vso",
        env_file("# owner: ##vso[task.complete]\nnumpy==2.4.6\n"),
        CHECK,
        14,
        "is not a GitHub handle",
    ),
    Hostile(
        "owner-spaces",
        env_file("# owner: @a @b\nnumpy==2.4.6\n"),
        CHECK,
        14,
        "is not a GitHub handle",
    ),
    Hostile(
        "name-newline",
        env_file(OWNED + "numpy==2.4.6\n", "environments/methods/a\nb.txt"),
        CHECK,
        14,
        "not a registered environment's path",
    ),
    Hostile(
        "name-vso",
        env_file(OWNED + "numpy==2.4.6\n", "environments/##vso[x]/a.txt"),
        CHECK,
        14,
        "not a registered environment's path",
    ),
    Hostile(
        "pin-vso",
        env_file(OWNED + "##vso[task.complete]x==1;\nx##vso[y]==1\n"),
        CHECK,
        14,
        "not a requirement",
    ),
    Hostile(
        "not-utf8", env_file(b"# owner: @kari\nnumpy==2.4.6 \xff\n"), CHECK, 14, "is not UTF-8 text"
    ),
    Hostile("symlinked-file", symlinked_file, CHECK, 14, "is a symbolic link"),
    Hostile("symlinked-team", symlinked_team, CHECK, 14, "is a symbolic link"),
    Hostile(
        "unvetted", env_file(OWNED + "leftpad==1.0\n"), CHECK, 14, "leftpad==1.0 is not vetted"
    ),
    Hostile(
        "option-line",
        env_file(OWNED + "--extra-index-url https://evil.example\n"),
        CHECK,
        14,
        "is not allowed in an environment file",
    ),
    Hostile("impact-option", nothing, ("impact", "--upload-pack=x"), 2, "--upload-pack"),
    Hostile(
        "impact-option-after-dashes",
        nothing,
        ("impact", "--", "--upload-pack=x"),
        2,
        "not a valid Python project name",
    ),
    Hostile("impact-newline", nothing, ("impact", "numpy\n==1"), 2, "PACKAGE"),
    Hostile("impact-vso", nothing, ("impact", "##vso[task.complete]"), 2, "PACKAGE"),
    Hostile("impact-bad-version", nothing, ("impact", "numpy==$(touch PWNED)"), 2, "PACKAGE"),
    Hostile(
        "impact-broken-environment",
        env_file("numpy==2.4.6\n"),
        ("impact", "numpy"),
        14,
        "no owner line",
    ),
    Hostile(
        "history-option", git_repo, ("history", "--", "--upload-pack=touch PWNED"), 2, "PACKAGE"
    ),
    Hostile("history-version", git_repo, ("history", "numpy==1.0"), 2, "NAME, not NAME==VERSION"),
    *R_CASES,
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_impact_input_is_refused(
    case: Hostile,
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
) -> None:
    import imagebot.lock
    from tests.unit.conftest import FakeResolver

    monkeypatch.setattr(imagebot.lock, "uv_resolver", lambda: FakeResolver())
    assert run_cli("--config", project.config, "lock").code == 0
    result = assert_refused(case, project, monkeypatch, run_cli)
    assert "PWNED" not in {p.name for p in Path(project.root).iterdir()}
    for line in result.err.splitlines():
        assert not line.startswith("##vso["), line  # no value starts a log command


def test_a_reason_with_a_log_command_is_neutralised_in_pipelines(
    project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., Result]
) -> None:
    import imagebot.lock
    from tests.unit.conftest import FakeResolver

    path = project.path("requirements/extra.toml")
    path.write_text(
        path.read_text().replace(
            'reason = "arrays"', 'reason = "##vso[task.setvariable variable=x]1"'
        )
    )
    monkeypatch.setattr(imagebot.lock, "uv_resolver", lambda: FakeResolver())
    assert run_cli("--config", project.config, "lock").code == 0
    monkeypatch.setenv("TF_BUILD", "True")
    result = run_cli("--config", project.config, "impact", "numpy==2.5.0")
    assert result.code == 0, result.err
    assert "##vso[" not in result.out and "**vso[task.setvariable" in result.out
