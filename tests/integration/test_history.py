"""`imagebot history PACKAGE` on real git repositories: the project (several lock, index-only
and environment commits) and a bare GitOps remote (several promotion commits). The whole
history comes from one `git log` of the project and one clone + log of the GitOps repository,
however many commits there are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagebot import gitops, promote_plan
from imagebot.config import load_config
from imagebot.history import read_history
from imagebot.promote_plan import ImageChange
from imagebot.tags import ImageRef
from tests.integration.gitops_fixtures import IDENTITY, STAGING_FILE, git, make_remote

PROD_FILE = STAGING_FILE.replace("staging", "prod")
HELMRELEASE = "spec:\n  values:\n    singleuser:\n      image: r.example.org/jupyter/lab:1\n"
CONFIG = """\
[project]
source = "https://example.org/stats/images"

[registry]
url = "r.example.org/jupyter"
auth = "basic"

[images.jupyterlab]
dockerfile = "jupyter/Dockerfile"
base = "docker.io/library/python:3.11-slim-bookworm"
sets = ["base"]

[index]
url = "https://index.example.org/simple"

[environments.staging]
repo = "{remote}"
branch = "master"
file = "{staging}"
targets = {{ jupyterlab = "spec.values.singleuser.image" }}

[environments.prod]
repo = "{remote}"
branch = "master"
file = "{prod}"
targets = {{ jupyterlab = "spec.values.singleuser.image" }}
promote_from = "staging"
"""
BASE_SET = """\
[python]
numpy = {{ version = "{numpy}", reason = "arrays", requested_by = "@anna" }}
"""


def lock(*pins: str) -> str:
    body = "".join(
        f"{pin} \\\n    --hash=sha256:{'ab' * 32}\n    # via -r base.in\n" for pin in pins
    )
    return "# inputs: sha256:" + "0" * 64 + "\n" + body


def commit(work: Path, day: int, message: str, files: dict[str, str | None]) -> None:
    for path, text in files.items():
        target = work / path
        if text is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    date = f"2026-01-{day:02d}T12:00:00+00:00"
    env = {**os.environ, **IDENTITY, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    subprocess.run(["git", "add", "--all"], cwd=work, env=env, check=True)
    subprocess.run(["git", "commit", "--quiet", "-m", message], cwd=work, env=env, check=True)


def promotion(env_name: str, old: str, new: str, diff: str, verb: str = "promote") -> str:
    before, after = ImageRef.parse(old), ImageRef.parse(new)
    change = ImageChange("jupyterlab", "spec.values.singleuser.image", before, after)
    text = promote_plan.with_impact(diff, "numpy 2.4.6 -> 2.5.0: minor\n  requested by @anna")
    return promote_plan.commit_message(verb, env_name, [change], {(old, new): text}, "abc")


def python_diff(*changes: str, r: str = "no changes") -> str:
    lines = "\n".join(changes)
    return (
        f"packages: a -> b\npython: 0 added, 0 removed, {len(changes)} changed\n{lines}\n"
        f"r: {r}\ndpkg: no changes\n"
    )


@pytest.fixture
def repos(tmp_path: Path) -> Path:
    remote = make_remote(tmp_path, {STAGING_FILE: HELMRELEASE, PROD_FILE: HELMRELEASE})
    seed = tmp_path / "gitops-work"
    git("clone", "--quiet", str(remote), str(seed))
    lab = "r.example.org/jupyter/lab"
    commit(
        seed,
        3,
        promotion("staging", f"{lab}:1", f"{lab}:2", python_diff("  ~ numpy 2.4.6 -> 2.5.0")),
        {STAGING_FILE: HELMRELEASE.replace(":1", ":2")},
    )
    commit(
        seed,
        4,
        "hand edit: numpy 9.9.9 mentioned, not a promotion",
        {PROD_FILE: HELMRELEASE + "# note\n"},
    )
    commit(
        seed,
        5,
        promotion("prod", f"{lab}:1", f"{lab}:2", python_diff("  ~ numpy 2.4.6 -> 2.5.0")),
        {PROD_FILE: HELMRELEASE.replace(":1", ":2")},
    )
    commit(
        seed,
        7,
        promotion(
            "staging",
            f"{lab}:2",
            f"{lab}:1",
            python_diff("  ~ numpy 2.5.0 -> 2.4.6", r="1 changed\n  ~ numpy 1.0 -> 2.0"),
            "rollback",
        ),
        {STAGING_FILE: HELMRELEASE},
    )
    git("push", "--quiet", "origin", "HEAD:master", cwd=seed)

    project = tmp_path / "project"
    project.mkdir()
    git("init", "--quiet", "--initial-branch=main", str(project))
    config = CONFIG.format(remote=remote, staging=STAGING_FILE, prod=PROD_FILE)
    commit(
        project,
        1,
        "first sets",
        {
            "imagebot.toml": config,
            "requirements/base.toml": BASE_SET.format(numpy="2.4.6"),
            "requirements/base.lock": lock("numpy==2.4.6", "pandas==3.1.1"),
            "requirements/index-only.toml": '[python]\ntabulate = { version = "0.9.0", reason = "r", requested_by = "@a" }\n',
        },
    )
    commit(
        project,
        2,
        "numpy 2.5.0",
        {
            "requirements/base.toml": BASE_SET.format(numpy="2.5.0"),
            "requirements/base.lock": lock("numpy==2.5.0", "pandas==3.1.1"),
        },
    )
    commit(
        project,
        3,
        "register survey",
        {"environments/methods/survey.txt": "# owner: @kari\nnumpy==2.4.6\n"},
    )
    commit(
        project,
        6,
        "numpy 2.5.1, no pandas",
        {"requirements/base.lock": lock("numpy==2.5.1"), "README.md": "numpy==1.0 is not a lock\n"},
    )
    commit(
        project,
        8,
        "survey moves on",
        {"environments/methods/survey.txt": "# owner: @kari\nnumpy==2.5.1\n"},
    )
    commit(
        project,
        9,
        "index-only numpy for old projects",
        {
            "requirements/index-only.toml": '[python]\n"numpy==2.4.6" = { reason = "old", requested_by = "@a" }\n'
        },
    )
    return project


def test_history_of_every_place_from_two_git_logs(
    repos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(repos / "imagebot.toml", None, {})
    commands: list[str] = []
    run_git = gitops.run_git

    def counted(
        args: list[str], cwd: Path, env: dict[str, str]
    ) -> subprocess.CompletedProcess[str]:
        commands.append(args[0])
        return run_git(args, cwd, env)

    monkeypatch.setattr(gitops, "run_git", counted)

    result = read_history(config, "NumPy", {})

    assert [(e.date[:10], e.where, e.change, e.version) for e in result.events] == [
        ("2026-01-01", "set base", "entered", "2.4.6"),
        ("2026-01-01", "index", "entered", "2.4.6"),
        ("2026-01-02", "set base", "left", "2.4.6"),
        ("2026-01-02", "set base", "entered", "2.5.0"),
        ("2026-01-02", "index", "left", "2.4.6"),
        ("2026-01-02", "index", "entered", "2.5.0"),
        ("2026-01-03", "environment methods/survey", "entered", "2.4.6"),
        ("2026-01-03", "staging jupyterlab", "left", "2.4.6"),
        ("2026-01-03", "staging jupyterlab", "entered", "2.5.0"),
        ("2026-01-03", "index", "entered", "2.4.6"),
        ("2026-01-05", "prod jupyterlab", "left", "2.4.6"),
        ("2026-01-05", "prod jupyterlab", "entered", "2.5.0"),
        ("2026-01-06", "set base", "left", "2.5.0"),
        ("2026-01-06", "set base", "entered", "2.5.1"),
        ("2026-01-06", "index", "left", "2.5.0"),
        ("2026-01-06", "index", "entered", "2.5.1"),
        ("2026-01-07", "staging jupyterlab", "left", "2.5.0"),
        ("2026-01-07", "staging jupyterlab", "entered", "2.4.6"),
        ("2026-01-08", "environment methods/survey", "left", "2.4.6"),
        ("2026-01-08", "environment methods/survey", "entered", "2.5.1"),
        ("2026-01-08", "index", "left", "2.4.6"),
        ("2026-01-09", "index-only", "entered", "2.4.6"),
        ("2026-01-09", "index", "entered", "2.4.6"),
    ]
    assert result.commits_read == 6 + 5  # the project's, and the GitOps repo's with its seed
    # one log of the project; one clone (clone, sparse-checkout, checkout) and one log of the
    # GitOps repository that both environments share
    assert commands == ["log", "clone", "sparse-checkout", "checkout", "log"]


def test_history_command(repos: Path) -> None:
    env = {**os.environ, "IMAGEBOT_CONFIG": str(repos / "imagebot.toml")}
    done = subprocess.run(
        [sys.executable, "-m", "imagebot", "history", "pandas", "--json"],
        cwd=repos,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)["events"]
    assert [(e["where"], e["change"], e["version"]) for e in events] == [
        ("set base", "entered", "3.1.1"),
        ("index", "entered", "3.1.1"),
        ("set base", "left", "3.1.1"),
        ("index", "left", "3.1.1"),
    ]
    text = subprocess.run(
        [sys.executable, "-m", "imagebot", "history", "tabulate", "--no-deployments"],
        cwd=repos,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert text.stdout.splitlines()[0].split()[2:] == ["index-only", "entered", "0.9.0"]
    assert "read 6 commits" in text.stderr
