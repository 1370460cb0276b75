"""The error boundary (imagebot.main): exit codes for signals, generic environment failures,
and the Azure Pipelines output guard (imagebot.console)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from paths import REPO_ROOT

from tests.unit.conftest import Project, Result

Run = Callable[..., Result]

# A child imagebot whose command is a slow operation holding an imagebot-* temporary directory.
_SLOW_CHILD = textwrap.dedent(
    """
    import sys, tempfile, time
    import imagebot.main as entry

    def slow(args):
        with tempfile.TemporaryDirectory(prefix="imagebot-slow-") as scratch:
            print(scratch, flush=True)
            try:
                time.sleep(60)
            finally:
                if "--slow-cleanup" in args:
                    time.sleep(0.5)  # a second signal lands in here and must not cut it short
        return 0

    entry._dispatch = slow
    entry.main(sys.argv[1:])
    """
)


def _start_slow(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("TF_BUILD", None)
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    scratch = Path(child.stdout.readline().strip())
    assert scratch.is_dir() and scratch.parent == tmp_path
    return child, scratch


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
def test_a_signal_unwinds_the_stack_and_exits_128_plus_its_number(
    tmp_path: Path, signum: int, code: int, said: str
) -> None:
    child, scratch = _start_slow(tmp_path)
    child.send_signal(signum)
    _, err = child.communicate(timeout=30)
    assert child.returncode == code, err
    assert err.strip() == said
    assert not scratch.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_second_signal_does_not_cut_the_cleanup_short(tmp_path: Path) -> None:
    child, _ = _start_slow(tmp_path, "--slow-cleanup")
    child.send_signal(signal.SIGINT)  # what an Azure agent sends first on cancel ...
    time.sleep(0.2)
    child.send_signal(signal.SIGTERM)  # ... and then, while imagebot cleans up
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_during_a_typer_command_is_not_exit_0(
    project: Project,
    run_cli: Run,
    monkeypatch: pytest.MonkeyPatch,
    signum: int,
    code: int,
    said: str,
) -> None:
    """typer turns KeyboardInterrupt into Exit(130) and returns it; `imagebot build && ...`
    must not carry on."""
    import imagebot.build

    def interrupted(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("the signal did not interrupt the command")

    monkeypatch.setattr(imagebot.build, "build_images", interrupted)
    before = signal.getsignal(signum)
    result = run_cli("--config", project.config, "build")
    assert result.code == code, result.err
    assert result.err.strip().splitlines()[-1] == said
    assert signal.getsignal(signum) is before  # main gives the handlers back


def test_a_signal_on_the_fast_path_exits_like_any_other(
    project: Project, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imagebot.checks

    def interrupted(state: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setitem(imagebot.checks._FAST, ("check",), interrupted)
    result = run_cli("--config", project.config, "check")
    assert (result.code, result.err.strip()) == (143, "terminated")


def test_typer_exit_codes_returned_in_non_standalone_mode_reach_the_shell(
    project: Project, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    import imagebot.build

    def exits(*args: object, **kwargs: object) -> None:
        raise typer.Exit(3)

    monkeypatch.setattr(imagebot.build, "build_images", exits)
    result = run_cli("--config", project.config, "build")
    assert result.code == 3


def _boundary(body: object, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from imagebot.main import run_with_boundary

    capsys.readouterr()
    code = run_with_boundary(body)  # type: ignore[arg-type]
    return code, capsys.readouterr().err


def test_a_directory_where_a_file_is_expected_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _boundary(lambda: (tmp_path / "").read_text(), capsys)
    assert code == 1
    assert err.splitlines()[0] == f"error: {tmp_path}: Is a directory"
    assert err.splitlines()[1].startswith("hint: ")
    assert "Traceback" not in err


def test_a_missing_file_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _boundary(lambda: (tmp_path / "nope.toml").read_text(), capsys)
    assert code == 1
    assert f"error: {tmp_path / 'nope.toml'}: No such file or directory" in err
    assert "Traceback" not in err


def test_a_non_utf8_file_is_one_error_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "base.toml"
    path.write_bytes(b'[set]\ndescription = "caf\xe9"\n')
    code, err = _boundary(lambda: path.read_text(encoding="utf-8"), capsys)
    assert code == 1
    assert f"error: {path}: not UTF-8 text (byte 0xe9 at offset 24)" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "bug",
    [
        lambda: b"\xff".decode("utf-8"),  # bytes from a tool: no file to blame
        lambda: os.close(987654),  # EBADF: imagebot's own mistake
        lambda: int("not a number"),
    ],
)
def test_bugs_stay_bugs(bug: object, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _boundary(bug, capsys)
    assert code == 70
    assert "Traceback" in err and "this is a bug in imagebot" in err


def test_verbose_adds_the_traceback_to_an_environment_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from imagebot.main import run_with_boundary

    capsys.readouterr()
    code = run_with_boundary(lambda: (tmp_path / "x").read_text(), verbose=True)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "internal error" not in err


# --- Azure Pipelines: only console writes logging commands --------------------------------


def _guarded(monkeypatch: pytest.MonkeyPatch, writes: list[str]) -> str:
    from imagebot import console

    monkeypatch.setenv("TF_BUILD", "True")
    raw = io.StringIO()
    monkeypatch.setattr(sys, "stdout", raw)
    with console.pipeline_output():
        for text in writes:
            sys.stdout.write(text)
            sys.stdout.flush()
    return raw.getvalue()


@pytest.mark.parametrize(
    "writes",
    [
        ["table ##vso[task.setvariable variable=X]evil\n"],
        ["##[error]fake\n"],
        ["x #", "#vso[task.complete result=Failed]\n"],
        ["x ##", "[group]y\n"],
        ["x ##v", "so[task.setvariable variable=A]b\n"],
        ["a\r##VSO[task.setvariable variable=A]b\n"],
        ["end ##"],
    ],
)
def test_no_data_line_carries_a_command_marker(
    monkeypatch: pytest.MonkeyPatch, writes: list[str]
) -> None:
    out = _guarded(monkeypatch, writes)
    assert "##vso[" not in out.lower() and "##[" not in out
    assert out.replace("**", "##") == "".join(writes)  # nothing else changes


def test_console_alone_writes_real_commands_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from imagebot import console

    monkeypatch.setenv("TF_BUILD", "True")
    with console.pipeline_output(), console.group("stage\n##vso[task.setvariable variable=A]b"):
        console.error("bad 100%; x]\r\ny ##vso[task.complete]", "fix ##[it]")
    lines = capsys.readouterr().err.splitlines()
    commands = [line for line in lines if "##" in line]
    assert commands == [
        "##[group]stage **vso[task.setvariable variable=A]b",
        "##vso[task.logissue type=error]bad 100%AZP25%3B x%5D%0D%0Ay **vso[task.complete%5D"
        " (hint: fix **[it%5D)",
        "##[endgroup]",
    ]
    assert "error: bad 100%; x]" in lines


def test_nothing_changes_outside_a_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagebot import console

    monkeypatch.delenv("TF_BUILD", raising=False)
    raw = io.StringIO()
    monkeypatch.setattr(sys, "stdout", raw)
    with console.pipeline_output():
        print("##vso[task.setvariable variable=A]b")
    assert raw.getvalue() == "##vso[task.setvariable variable=A]b\n"


def test_print_json_is_the_bytes_json_dump_wrote(capsys: pytest.CaptureFixture[str]) -> None:
    from imagebot import console

    value = {"b": [1, None, "é"], "a": {"x": True}}
    console.print_json(value)
    console.print_json(value, sort_keys=True)
    out = capsys.readouterr().out
    assert (
        out
        == json.dumps(value, indent=2) + "\n" + json.dumps(value, indent=2, sort_keys=True) + "\n"
    )


@pytest.mark.parametrize(
    ("argv", "message", "command"),
    [
        (("no-such-command",), "No such command 'no-such-command'.", "imagebot"),
        (("build", "--bogus"), "No such option: --bogus", "imagebot build"),
        (("release",), "Missing argument 'environment'.", "imagebot release"),
        (
            ("build", "--ca-bundle", "/no/such/ca.pem"),
            "file '/no/such/ca.pem' does not exist",
            "imagebot build",
        ),
    ],
)
def test_usage_errors_are_one_error_line_and_a_hint(
    run_cli: Run, argv: tuple[str, ...], message: str, command: str
) -> None:
    result = run_cli(*argv)
    assert result.code == 2
    assert len(result.error_lines) == 1 and message in result.error_lines[0]
    assert result.hint_lines == [f"hint: run `{command} --help` for its arguments"]


def test_upload_summary_is_a_real_command_with_the_path_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from imagebot import console

    summary = tmp_path / "a;b]%.md"
    monkeypatch.setenv("TF_BUILD", "True")
    with console.pipeline_output():
        console.upload_summary(summary)
    assert capsys.readouterr().err == (f"##vso[task.uploadsummary]{tmp_path}/a%3Bb%5D%AZP25.md\n")
    monkeypatch.delenv("TF_BUILD")
    console.upload_summary(summary)
    assert capsys.readouterr().err == ""


def test_command_modules_never_import_the_app() -> None:
    """cli imports the command modules; they take `state` from imagebot.state (no cycle)."""
    import ast

    for path in sorted((REPO_ROOT / "imagebot" / "commands").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "imagebot.cli", f"{path.name} imports imagebot.cli"
            if isinstance(node, ast.Import):
                assert all(a.name != "imagebot.cli" for a in node.names), path.name
