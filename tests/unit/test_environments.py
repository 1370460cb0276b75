"""Registered environments: environments/<team>/<name>.txt with an owner line, checked by
`imagebot check`; `imagebot impact` names their owners."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from imagebot import environments
from imagebot.environments import EnvironmentPin, Vetted, parse_environment, vetted_from
from tests.unit.conftest import Project, Result

PY, PLATFORM = "3.11", "x86_64-manylinux_2_36"
SURVEY = """\
# owner: @kari.nordmann
# The 2024 survey's replay environment.
numpy==2.4.6   # arrays
jupyterlab==4.6.6
"""


def parse(text: str, path: str = "environments/methods/survey.txt") -> tuple[object, list[str]]:
    found, problems = parse_environment(path, text, PY, PLATFORM)
    return found, [p.render() for p in problems]


def test_a_registered_environment() -> None:
    found, problems = parse(SURVEY)
    assert problems == []
    assert found == environments.RegisteredEnvironment(
        "environments/methods/survey.txt",
        "methods",
        "survey",
        "@kari.nordmann",
        (EnvironmentPin("numpy", "2.4.6", 3), EnvironmentPin("jupyterlab", "4.6.6", 4)),
    )


def test_pip_compile_output_goes_through_envfile() -> None:
    text = (
        "# owner: @org/methods-team\n"
        "NumPy==2.4.6 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via pandas\n"
        "tornado==6.5.2 ; python_version >= '3.9'\n"
        "pywin32==306 ; sys_platform == 'win32'\n"
    )
    found, problems = parse(text)
    assert problems == []
    assert isinstance(found, environments.RegisteredEnvironment)
    assert [(p.name, p.version) for p in found.pins] == [("numpy", "2.4.6"), ("tornado", "6.5.2")]
    assert found.owner == "@org/methods-team"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("numpy==2.4.6\n", "environments/methods/survey.txt: no owner line"),
        ("# owner: kari\nnumpy==2.4.6\n", "survey.txt:1: owner 'kari' is not a GitHub handle"),
        (
            "# owner: @a\n# owner: @b\nnumpy==2.4.6\n",
            "survey.txt:2: a second owner line (first at line 1)",
        ),
        ("# owner: @a ##vso[task.complete]\nx==1\n", "is not a GitHub handle"),
        ("# owner: @a\n", "no pinned packages"),
        ("# owner: @a\nnumpy>=2\n", "survey.txt:2: numpy is not pinned to one version"),
        ("# owner: @a\nnumpy==2.4.6\nNumPy==2.4.7\n", "survey.txt:3: numpy is listed twice"),
        ("# owner: @a\n--index-url https://evil.example/simple\n", "is not allowed"),
        ("# owner: @a\nevil @ https://evil.example/e.whl\n", "installs from a URL"),
    ],
)
def test_bad_files(text: str, problem: str) -> None:
    found, problems = parse(text)
    assert found is None
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    "path",
    [
        "environments/survey.txt",
        "environments/a/b/survey.txt",
        "environments/Methods/survey.txt",
        "environments/methods/survey.in",
        "environments/methods/bad\nname.txt",
        "environments/methods/../x.txt",
    ],
)
def test_only_team_and_name_paths_register(path: str) -> None:
    found, problems = parse(SURVEY, path)
    assert found is None
    assert len(problems) == 1 and "not a registered environment's path" in problems[0]
    assert "\n" not in problems[0]


def test_vetted_means_in_a_lock_or_index_only_and_old_versions_are_kept() -> None:
    vetted = vetted_from([("numpy", "2.5.0"), ("jupyterlab", "4.6.6")], [("tabulate", "0.9.0")])
    found, _ = parse(SURVEY + "tabulate==0.9.0\nleftpad==1.0\n")
    assert isinstance(found, environments.RegisteredEnvironment)
    assert [p.message for p in environments.vetting_problems(found, vetted)] == [
        "leftpad==1.0 is not vetted: no set or lock pins leftpad and index-only.toml does not list it"
    ]
    assert environments.kept_versions(found, vetted) == [EnvironmentPin("numpy", "2.4.6", 3)]
    assert Vetted({}, {}).names() == frozenset()


def register(
    project: Project, text: str = SURVEY, path: str = "environments/methods/survey.txt"
) -> None:
    project.write(path, text)


def test_check_validates_registered_environments(
    locked_project: Project, run_cli: Callable[..., Result]
) -> None:
    register(locked_project, SURVEY.replace("numpy==2.4.6", "numpy==2.3.0"))
    result = run_cli("--config", locked_project.config, "check")
    assert result.code == 0, result.err
    assert (
        "environments/methods/survey.txt:3: numpy==2.3.0 is kept for this environment" in result.err
    )
    assert "ok: 1 registered environment\n" in result.err

    register(locked_project, SURVEY + "leftpad==1.0\n", "environments/web/app.txt")
    result = run_cli("--config", locked_project.config, "check")
    assert result.code == 14
    assert "environments/web/app.txt:5: leftpad==1.0 is not vetted" in result.err


def test_check_without_environments_says_nothing_of_them(
    locked_project: Project, run_cli: Callable[..., Result]
) -> None:
    result = run_cli("--config", locked_project.config, "check")
    assert result.code == 0
    assert "registered" not in result.err


def test_impact_names_owners_and_requesters(
    locked_project: Project, run_cli: Callable[..., Result]
) -> None:
    register(locked_project)
    lock = locked_project.path("requirements/base.lock")
    # the fake resolver annotates every pin `# via -r x.in`; uv says who needs tornado
    lock.write_text(
        lock.read_text().replace(
            "6.5.2 \\\n    --hash=sha256:" + "ab" * 32 + "\n    # via -r x.in",
            "6.5.2 \\\n    --hash=sha256:" + "ab" * 32 + "\n    # via jupyterlab",
        )
    )
    result = run_cli("--config", locked_project.config, "impact", "tornado==7.0")
    assert result.code == 0, result.err
    assert result.out == (
        "tornado 6.5.2 -> 7.0: major\n"
        "  needed by @platform-team: jupyterlab==4.6.6 in base (the UI): jupyterlab -> tornado\n"
    )
    result = run_cli("--config", locked_project.config, "impact", "numpy", "--json")
    report = json.loads(result.out)
    assert report["set"] == "extra"
    assert [e["owner"] for e in report["environments"]] == ["@kari.nordmann"]
    assert [(n["requested_by"], n["direct"]) for n in report["needed_by"]] == [("@anna", True)]


def test_impact_of_an_unknown_package_is_an_error(
    locked_project: Project, run_cli: Callable[..., Result]
) -> None:
    result = run_cli("--config", locked_project.config, "impact", "nump")
    assert result.code == 1
    assert result.error_lines == ["error: nump is in no lock, entry or registered environment"]


def test_the_index_keeps_serving_registered_pins_with_the_environment_as_reason() -> None:
    found, _ = parse(SURVEY + "pandas==3.1.1\n")
    assert isinstance(found, environments.RegisteredEnvironment)
    served = {("jupyterlab", "4.6.6")}

    roots = environments.index_roots([found], served, blocked={("pandas", "3.1.1")})

    assert [(r.key, r.version, r.source, r.requested_by) for r in roots] == [
        ("numpy", "2.4.6", "environment methods/survey", "@kari.nordmann")
    ]
    assert roots[0].reason == "pinned by the registered environment environments/methods/survey.txt"


def test_a_pin_an_unwaived_advisory_affects_is_blocked(tmp_path: Path) -> None:
    from datetime import date

    from imagebot.osv import DirectorySource

    record = {
        "id": "PYSEC-2099-7",
        "modified": "2099-01-01T00:00:00Z",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "numpy"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.5.0"}]}
                ],
            }
        ],
    }
    (tmp_path / "vulns" / "numpy").mkdir(parents=True)
    (tmp_path / "vulns" / "numpy" / "PYSEC-2099-7.json").write_text(json.dumps(record))
    found, _ = parse(SURVEY)
    assert isinstance(found, environments.RegisteredEnvironment)
    candidates = environments.index_roots([found], served=set())

    blocked = environments.blocked_pins(
        candidates, DirectorySource(tmp_path), [], date(2026, 11, 30)
    )

    assert blocked == {("numpy", "2.4.6"): ("PYSEC-2099-7",)}
    kept = environments.index_roots([found], set(), blocked)
    assert [(r.key, r.version) for r in kept] == [("jupyterlab", "4.6.6")]


def test_index_build_keeps_serving_registered_pins_unless_blocked(locked_project: Project) -> None:
    from datetime import date

    from imagebot.config import load_config
    from imagebot.index import load_roots

    record = {
        "id": "PYSEC-2099-8",
        "modified": "2099-01-01T00:00:00Z",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "zmq-kernel"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0"}]}
                ],
            }
        ],
    }
    locked_project.write("osv/vulns/zmq-kernel/PYSEC-2099-8.json", json.dumps(record))
    config_text = locked_project.config.read_text() + '\n[advisories]\nsource = "osv"\n'
    locked_project.config.write_text(config_text)
    register(locked_project, SURVEY.replace("numpy==2.4.6", "numpy==2.3.0") + "zmq-kernel==0.9\n")
    config = load_config(locked_project.config, None, {})
    roots = load_roots(config.requirements_dir)

    kept = environments.keep_serving(config, roots, date(2026, 11, 30))

    assert [(r.key, r.version, r.source) for r in kept.roots] == [
        ("numpy", "2.3.0", "environment methods/survey")
    ]
    assert kept.lines() == [
        "environments/methods/survey.txt:5: zmq-kernel==0.9 is not served: PYSEC-2099-8 "
        "(not waived); @kari.nordmann must move"
    ]


def test_index_build_inputs_name_the_environment_as_reason(locked_project: Project) -> None:
    from imagebot.config import load_config
    from imagebot.index import vetted_inputs

    register(locked_project, SURVEY.replace("numpy==2.4.6", "numpy==2.3.0"))
    locked_project.write("osv/vulns/other/PYSEC-2099-9.json", '{"id": "PYSEC-2099-9"}')
    config_text = locked_project.config.read_text() + '\n[advisories]\nsource = "osv"\n'
    locked_project.config.write_text(config_text)
    inputs = vetted_inputs(load_config(locked_project.config, None, {}))
    kept = [r for r in inputs.roots if r.source.startswith("environment ")]
    assert [(r.key, r.version, r.source, r.requested_by) for r in kept] == [
        ("numpy", "2.3.0", "environment methods/survey", "@kari.nordmann")
    ]
    assert inputs.not_served == ()
