"""Registered R environments: environments/<team>/<name>.renv.lock, renv's own lock with a
top-level "Owner"; `imagebot check` vets every package against requirements/cran.lock, and
`imagebot impact --r` names the owner."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from imagebot import cran, cranlock, environments
from imagebot.environments import EnvironmentPin, parse_environment, vetted_from
from tests.unit.conftest import Project, Result

PATH = "environments/methods/survey.renv.lock"
SURVEY = """\
{
  "Owner": "@stats/survey",
  "R": {
    "Version": "4.2.2",
    "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]
  },
  "Packages": {
    "R6": {"Package": "R6", "Version": "2.5.1", "Source": "Repository", "Repository": "CRAN"},
    "cli": {"Package": "cli", "Version": "3.6.1", "Source": "Repository", "Repository": "CRAN"},
    "utils": {"Package": "utils", "Version": "4.2.2", "Source": "Repository"}
  }
}
"""
CLI_LINE = (
    '    "cli": {"Package": "cli", "Version": "3.6.1", "Source": "Repository", '
    '"Repository": "CRAN"},\n'
)


def parse(text: str, path: str = PATH) -> tuple[object, list[str]]:
    found, problems = parse_environment(path, text, "3.11", "x86_64-manylinux_2_36")
    return found, [p.render() for p in problems]


def with_owner(owner: object) -> str:
    return SURVEY.replace('"@stats/survey"', json.dumps(owner))


def test_a_registered_r_environment() -> None:
    found, problems = parse(SURVEY)
    assert problems == []
    assert found == environments.RegisteredEnvironment(
        PATH,
        "methods",
        "survey",
        "@stats/survey",
        (EnvironmentPin("R6", "2.5.1", 8), EnvironmentPin("cli", "3.6.1", 9)),
        "r",
    )  # utils comes with R: not a pin


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (SURVEY.replace('  "Owner": "@stats/survey",\n', ""), f'{PATH}: no "Owner" field'),
        (with_owner("kari"), f"{PATH}:2: owner 'kari' is not a GitHub handle or team"),
        (with_owner(["@a"]), "owner ['@a'] is not a GitHub handle"),
        (with_owner("@a\n##vso[task.complete]"), "is not a GitHub handle"),
        (
            SURVEY.replace('"Owner": "@stats/survey",', '"Owner": "@a", "Owner": "@b",'),
            'a second "Owner" field',
        ),
        (SURVEY.replace('"Version": "3.6.1"', '"Version": "3.6.1; rm -rf /"'), "cli: Version"),
        (
            SURVEY.replace('"Source": "Repository", "Repository": "CRAN"}', '"Source": "GitHub"}'),
            "installs from outside the vetted repository",
        ),
        ("[1, 2]", 'no "Packages" object'),
        ("{not json", "not JSON"),
    ],
)
def test_bad_r_environments(text: str, problem: str) -> None:
    found, problems = parse(text)
    assert found is None
    assert any(problem in p for p in problems), problems
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize(
    "path",
    [
        "environments/methods/survey.lock",
        "environments/methods/Survey.renv.lock",
        "environments/methods/.renv.lock",
        "environments/survey.renv.lock",
    ],
)
def test_only_team_and_name_renv_paths_register(path: str) -> None:
    found, problems = parse(SURVEY, path)
    assert found is None
    assert len(problems) == 1 and "not a registered environment's path" in problems[0]


def test_r_pins_must_be_served_by_cran_lock_exactly() -> None:
    found, _ = parse(SURVEY)
    assert isinstance(found, environments.RegisteredEnvironment)
    vetted = vetted_from([("cli", "3.6.1")], [], [("R6", "2.6.1"), ("R6", "2.5.2")])
    assert [p.render() for p in environments.vetting_problems(found, vetted)] == [
        f"{PATH}:8: R package R6 2.5.1 is not served: the vetted R repository serves 2.5.2, "
        '2.6.1 (hint: renv::install("R6@VERSION") a served version and snapshot, or vet 2.5.1 '
        "in index-only.toml [r])",
        f"{PATH}:9: R package cli 3.6.1 is not vetted: requirements/cran.lock lacks it (hint: "
        + environments.R_ASK_HINT
        + ")",
    ]  # a Python cli does not vet the R package cli
    served = vetted_from([], [], [("R6", "2.5-1"), ("cli", "3.6.1")])
    assert environments.vetting_problems(found, served) == []  # R's "2.5-1" is 2.5.1
    assert environments.kept_versions(found, served) == []


def test_the_index_keeps_serving_python_pins_only() -> None:
    found, _ = parse(SURVEY)
    assert isinstance(found, environments.RegisteredEnvironment)
    assert environments.index_roots([found], served=set()) == []


CRAN_ENTRY = """\

[r]
R6 = { version = "2.5.1", reason = "classes", requested_by = "@kari" }
"""


def write_cran_lock(project: Project) -> None:
    package = cran.RPackage(
        "R6", "2.5.1", "0" * 32, {"Package": "R6", "Version": "2.5.1"}, "https://cran.example"
    )
    roots = [cran.RRoot("R6", "2.5.1", "index-only", "classes", "@kari")]
    closures = cran.closure(roots, cran.Available.from_upstreams([[package]]))
    text = cranlock.format_cran_lock(roots, closures, "sha256:" + "0" * 64)
    project.write("requirements/cran.lock", text)


@pytest.fixture
def r_project(locked_project: Project) -> Project:
    locked_project.write("requirements/index-only.toml", CRAN_ENTRY)
    write_cran_lock(locked_project)
    return locked_project


def test_check_vets_a_registered_r_environment_against_cran_lock(
    r_project: Project, run_cli: Callable[..., Result]
) -> None:
    r_project.write(PATH, SURVEY.replace(CLI_LINE, ""))
    result = run_cli("--config", r_project.config, "check")
    assert result.code == 0, result.err
    assert "ok: 1 registered environment\n" in result.err

    r_project.write(PATH, SURVEY)
    result = run_cli("--config", r_project.config, "check")
    assert result.code == 14
    assert f"{PATH}:9: R package cli 3.6.1 is not vetted" in result.err


def test_impact_r_names_the_owner_and_the_requester(
    r_project: Project, run_cli: Callable[..., Result]
) -> None:
    r_project.write(PATH, SURVEY.replace(CLI_LINE, ""))
    result = run_cli("--config", r_project.config, "impact", "--r", "R6==2.6.0")
    assert result.code == 0, result.err
    assert result.out == (
        "R package R6 2.5.1 -> 2.6.0: minor\n"
        f"  owner @stats/survey of methods/survey ({PATH}:8) pins R6==2.5.1: works: 2.5.1 is "
        "still served, but differs from the image's 2.6.0\n"
        "  requested by @kari: R6==2.5.1 in index-only (classes)\n"
    )
    result = run_cli("--config", r_project.config, "impact", "R6", "--json", "--r")
    report = json.loads(result.out)
    assert (report["ecosystem"], report["package"], report["set"]) == ("r", "R6", None)
    assert [e["owner"] for e in report["environments"]] == ["@stats/survey"]

    python = run_cli("--config", r_project.config, "impact", "R6")
    assert python.code == 1
    assert python.error_lines == ["error: r6 is in no lock, entry or registered environment"]
    assert "R6 is an R package: imagebot impact --r R6" in python.err
