"""Hostile-input suite, the CLI's share (issue 10): Azure log commands from data (item 11),
Ctrl-C on every path (item 4) and SIGTERM cleaning up like SIGINT (item 9).

A cancelled CI job and a user's Ctrl-C must never look like success to `imagebot lock && ...`,
and no value from a pull request may reach the Azure agent as a logging command.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from tests.unit.conftest import Hostile, Project, Result, assert_refused

Run = Callable[..., Result]

SETVARIABLE = "##vso[task.setvariable variable=IMAGEBOT_TAG]evil"
COMPLETE = "##vso[task.complete result=Succeeded]done"


def _append(relative: str, text: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TF_BUILD", "True")
        path = project.path(relative)
        path.write_text(path.read_text() + text)

    return setup


def _in_pipeline(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_BUILD", "True")


# item 11: every line printed under TF_BUILD, whatever value it carries.
AZURE_COMMANDS = [
    Hostile(
        "table-name-on-the-fast-path",
        _append("requirements/base.toml", f'\n["{SETVARIABLE}"]\na = 1\n'),
        ("check",),
        4,
        "unknown table",
    ),
    Hostile(
        "package-name-on-the-fast-path",
        _append("requirements/extra.toml", f'"{COMPLETE}" = {{ version = "1.0" }}\n'),
        ("check",),
        4,
        "problem",
    ),
    Hostile(
        "table-name-through-typer",
        _append("requirements/base.toml", f'\n["{SETVARIABLE}"]\na = 1\n'),
        ("lock",),
        4,
        "problem",
    ),
    Hostile(
        "profile-name-in-the-error-line",
        _in_pipeline,
        ("--profile", SETVARIABLE, "check"),
        3,
        "unknown profile",
    ),
    Hostile(
        "image-name-in-the-error-line-and-its-hint",
        _in_pipeline,
        ("build", f"x\n{COMPLETE}"),
        3,
        "unknown image",
    ),
    Hostile(
        "formatting-command-in-a-table-name",
        _append("requirements/base.toml", '\n["##[error]forged"]\na = 1\n'),
        ("check",),
        4,
        "unknown table",
    ),
]


def _only_console_commands(result: Result) -> None:
    """The agent would run a line with `##vso[` anywhere in it; only console's own may."""
    for line in (result.out + result.err).splitlines():
        if line.startswith("##vso[task.logissue type="):
            body = line.split("]", 1)[1]
            assert "]" not in body and "##vso[" not in body and "##[" not in body, line
            continue
        assert "##vso[" not in line.lower() and "##[" not in line, line


@pytest.mark.parametrize("case", AZURE_COMMANDS, ids=lambda c: c.id)
def test_no_value_emits_an_azure_command(
    case: Hostile, project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    result = assert_refused(case, project, monkeypatch, run_cli)
    _only_console_commands(result)
    issues = [line for line in result.err.splitlines() if line.startswith("##vso[")]
    assert len(issues) == 1 and issues[0].startswith("##vso[task.logissue type=error]")


def test_typer_usage_errors_are_neutralised_too(
    project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    monkeypatch.setenv("TF_BUILD", "True")
    result = run_cli("--config", project.config, f"no-such-{SETVARIABLE}")
    assert result.code == 2
    assert "No such command" in result.err
    _only_console_commands(result)


# items 4 and 9: a signal during a command, on the typer path and on the fast path.
class _SignalledResolver:
    """Stands in for uv: the signal arrives while the lock is being resolved."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def compile(self, *args: object, **kwargs: object) -> str:
        os.kill(os.getpid(), self.signum)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("the signal did not interrupt the resolution")


def _signal_in_lock(monkeypatch: pytest.MonkeyPatch, signum: int) -> None:
    import imagebot.lock

    monkeypatch.setattr(imagebot.lock, "uv_resolver", lambda: _SignalledResolver(signum))


def _signal_in_check(monkeypatch: pytest.MonkeyPatch, signum: int) -> None:
    import imagebot.checks

    def check(state: object) -> None:
        os.kill(os.getpid(), signum)
        time.sleep(5)

    for key in list(imagebot.checks._FAST):
        monkeypatch.setitem(imagebot.checks._FAST, key, check)


SIGNALS = [
    ("lock-ctrl-c", ("lock",), _signal_in_lock, signal.SIGINT, 130, "interrupted"),
    ("lock-sigterm", ("lock",), _signal_in_lock, signal.SIGTERM, 143, "terminated"),
    (
        "lock-upgrade-sigterm",
        ("lock", "--upgrade"),
        _signal_in_lock,
        signal.SIGTERM,
        143,
        "terminated",
    ),
    ("check-ctrl-c", ("check",), _signal_in_check, signal.SIGINT, 130, "interrupted"),
    (
        "lock-check-sigterm",
        ("lock", "--check"),
        _signal_in_check,
        signal.SIGTERM,
        143,
        "terminated",
    ),
]


@pytest.mark.parametrize(
    ("argv", "arrange", "signum", "code", "said"),
    [row[1:] for row in SIGNALS],
    ids=[row[0] for row in SIGNALS],
)
def test_a_signal_is_never_success_and_writes_nothing(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Run,
    argv: tuple[str, ...],
    arrange: Callable[[pytest.MonkeyPatch, int], None],
    signum: int,
    code: int,
    said: str,
) -> None:
    arrange(monkeypatch, signum)
    before = project.snapshot()
    handler = signal.getsignal(signum)
    result = run_cli("--config", project.config, *argv)
    assert result.code == code, result.err
    assert result.err.strip().splitlines()[-1] == said
    assert result.error_lines == []
    assert project.snapshot() == before  # no lock or Dockerfile half-written
    assert signal.getsignal(signum) is handler
