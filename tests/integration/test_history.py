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


# --- R: sets' and index-only's [r], requirements/cran.lock, renv.lock environments, r: diffs ---

R_SETS = {
    "requirements/rcran.toml": (
        '[set]\ndescription = "R from the vetted repository"\nr_source = "cran"\n\n[r]\n'
        'here = { version = "1.0.1", reason = "paths", requested_by = "@anna" }\n'
    ),
    "requirements/r.toml": (
        '[set]\ndescription = "R with IRkernel"\nr_source = "debian"\n\n[r]\n'
        'data.table = {{ version = "1.14.8", reason = "tables", requested_by = "@platform" }}\n'
        'IRkernel = {{ version = "{irkernel}", reason = "kernel", requested_by = "@platform" }}\n'
    ),
}


def index_only(python_cli: str, *r_lines: str) -> str:
    return (
        "[python]\n"
        f'cli = {{ version = "{python_cli}", reason = "a Python cli", requested_by = "@ola" }}\n'
        "\n[r]\n" + "".join(f"{line}\n" for line in r_lines)
    )


R_CLI = 'cli = { version = "3.6.1", reason = "R\'s cli", requested_by = "@anna" }'
R_CLI_OLD = '"cli==3.5.0" = { reason = "the 2023 closure", requested_by = "@anna" }'


def cran_lock(*stanzas: tuple[str, str, str]) -> str:
    """requirements/cran.lock as `imagebot lock` writes it: (name, version, why) per stanza."""
    blocks = [
        f"Package: {name}\nVersion: {version}\nLicense: MIT + file LICENSE\n"
        f"NeedsCompilation: no\nMD5sum: {'0' * 32}\nUpstream: https://cran.example.org\n{why}\n"
        for name, version, why in stanzas
    ]
    header = "# Generated by `imagebot lock`: do not edit.\n# inputs: sha256:" + "0" * 64 + "\n"
    return header + "\n" + "\n".join(blocks)


HERE = ("here", "1.0.1", "VettedIn: rcran")
CLI = ("cli", "3.6.1", "VettedIn: index-only")


def rprojroot(version: str) -> tuple[str, str, str]:
    return ("rprojroot", version, "DependencyOf: here==1.0.1")


def renv(rprojroot_version: str) -> str:
    packages = {"here": "1.0.1", "rprojroot": rprojroot_version}
    entries = ",\n".join(
        f'    "{name}": {{\n      "Package": "{name}",\n      "Version": "{version}",\n'
        '      "Source": "Repository",\n      "Repository": "CRAN"\n    }'
        for name, version in packages.items()
    )
    return (
        '{\n  "Owner": "@stats/survey",\n  "R": {\n    "Version": "4.2.2"\n  },\n'
        f'  "Packages": {{\n{entries}\n  }}\n}}\n'
    )


def merge(work: Path, day: int, branch: str) -> None:
    date = f"2026-01-{day:02d}T12:00:00+00:00"
    env = {**os.environ, **IDENTITY, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    subprocess.run(
        ["git", "merge", "--quiet", "--no-ff", "-m", f"Merge {branch}", branch],
        cwd=work,
        env=env,
        check=True,
    )


@pytest.fixture
def r_repos(tmp_path: Path) -> Path:
    remote = make_remote(tmp_path, {STAGING_FILE: HELMRELEASE, PROD_FILE: HELMRELEASE})
    seed = tmp_path / "gitops-work"
    git("clone", "--quiet", str(remote), str(seed))
    lab = "r.example.org/jupyter/lab"
    first = python_diff(
        "  ~ cli 0.1.0 -> 0.2.0", r="0 added, 0 removed, 1 changed\n  ~ cli 3.6.0 -> 3.6.1"
    )
    commit(
        seed,
        3,
        promotion("staging", f"{lab}:1", f"{lab}:2", first),
        {STAGING_FILE: HELMRELEASE.replace(":1", ":2")},
    )
    second = python_diff(
        r="1 added, 0 removed, 1 changed\n  ~ rprojroot 2.0.3 -> 2.1.0\n  + CLI 1.0"
    )
    commit(
        seed,
        5,
        promotion("staging", f"{lab}:2", f"{lab}:3", second),
        {STAGING_FILE: HELMRELEASE.replace(":1", ":3")},
    )
    git("push", "--quiet", "origin", "HEAD:master", cwd=seed)

    project = tmp_path / "project"
    project.mkdir()
    git("init", "--quiet", "--initial-branch=main", str(project))
    config = CONFIG.format(remote=remote, staging=STAGING_FILE, prod=PROD_FILE)
    commit(
        project,
        1,
        "R sets, index-only [r] and the R lock",
        {
            "imagebot.toml": config,
            "requirements/base.toml": BASE_SET.format(numpy="2.4.6"),
            "requirements/base.lock": lock("numpy==2.4.6"),
            "requirements/rcran.toml": R_SETS["requirements/rcran.toml"],
            "requirements/r.toml": R_SETS["requirements/r.toml"].format(irkernel="1.3.2"),
            "requirements/index-only.toml": index_only("0.2.0", R_CLI),
            "requirements/cran.lock": cran_lock(CLI, HERE, rprojroot("2.0.3")),
        },
    )
    commit(project, 2, "register survey", {"environments/methods/survey.renv.lock": renv("2.0.3")})
    commit(
        project,
        4,
        "rprojroot 2.1.0",
        {"requirements/cran.lock": cran_lock(CLI, HERE, rprojroot("2.1.0"))},
    )
    commit(project, 5, "survey moves on", {"environments/methods/survey.renv.lock": renv("2.1.0")})
    commit(
        project,
        6,
        "IRkernel 1.4.0",
        {"requirements/r.toml": R_SETS["requirements/r.toml"].format(irkernel="1.4.0")},
    )
    git("checkout", "--quiet", "-b", "old-cli", cwd=project)
    commit(
        project,
        7,
        "vet cli 3.5.0 for the 2023 closure",
        {
            "requirements/index-only.toml": index_only("0.2.0", R_CLI_OLD, R_CLI),
            "requirements/cran.lock": cran_lock(
                ("cli", "3.5.0", "VettedIn: index-only"), CLI, HERE, rprojroot("2.1.0")
            ),
        },
    )
    git("checkout", "--quiet", "main", cwd=project)
    merge(project, 8, "old-cli")
    commit(
        project,
        9,
        "Python cli 0.3.0",
        {"requirements/index-only.toml": index_only("0.3.0", R_CLI_OLD, R_CLI)},
    )
    return project


def test_r_history_of_every_place_from_two_git_logs(
    r_repos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(r_repos / "imagebot.toml", None, {})
    commands: list[str] = []
    run_git = gitops.run_git

    def counted(
        args: list[str], cwd: Path, env: dict[str, str]
    ) -> subprocess.CompletedProcess[str]:
        commands.append(args[0])
        return run_git(args, cwd, env)

    monkeypatch.setattr(gitops, "run_git", counted)

    cli = read_history(config, "cli", {}, ecosystem="r")
    rprojroot_history = read_history(config, "rprojroot", {}, ecosystem="r")

    # the merged branch's change is dated by the merge that landed it (first parent)
    assert [(e.date[:10], e.where, e.change, e.version) for e in cli.events] == [
        ("2026-01-01", "index-only", "entered", "3.6.1"),
        ("2026-01-01", "index", "entered", "3.6.1"),
        ("2026-01-03", "staging jupyterlab", "left", "3.6.0"),
        ("2026-01-03", "staging jupyterlab", "entered", "3.6.1"),
        ("2026-01-08", "index-only", "entered", "3.5.0"),
        ("2026-01-08", "index", "entered", "3.5.0"),
    ]
    assert cli.events[-1].subject == "Merge old-cli"
    assert [(e.date[:10], e.where, e.change, e.version) for e in rprojroot_history.events] == [
        ("2026-01-01", "index", "entered", "2.0.3"),
        ("2026-01-02", "environment methods/survey", "entered", "2.0.3"),
        ("2026-01-04", "index", "left", "2.0.3"),
        ("2026-01-04", "index", "entered", "2.1.0"),
        ("2026-01-05", "environment methods/survey", "left", "2.0.3"),
        ("2026-01-05", "environment methods/survey", "entered", "2.1.0"),
        ("2026-01-05", "staging jupyterlab", "left", "2.0.3"),
        ("2026-01-05", "staging jupyterlab", "entered", "2.1.0"),
    ]
    # the project's: 1, 2, 4, 5, 6, the merge (first parent: not the branch's own commit) and 9
    # (index-only.toml holds [r] too); the GitOps repository's three, with its seed
    assert rprojroot_history.commits_read == 7 + 3
    assert commands == ["log", "clone", "sparse-checkout", "checkout", "log"] * 2

    python_cli = read_history(config, "cli", {}, deployments=False)
    assert [(e.date[:10], e.where, e.change, e.version) for e in python_cli.events] == [
        ("2026-01-01", "index-only", "entered", "0.2.0"),
        ("2026-01-01", "index", "entered", "0.2.0"),
        ("2026-01-09", "index-only", "left", "0.2.0"),
        ("2026-01-09", "index-only", "entered", "0.3.0"),
        ("2026-01-09", "index", "left", "0.2.0"),
        ("2026-01-09", "index", "entered", "0.3.0"),
    ]


def test_r_history_command(r_repos: Path) -> None:
    env = {**os.environ, "IMAGEBOT_CONFIG": str(r_repos / "imagebot.toml")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "imagebot", "history", *args],
            cwd=r_repos,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    done = run("--r", "IRkernel", "--json", "--no-deployments")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["package"], report["ecosystem"]) == ("IRkernel", "r")
    assert [(e["where"], e["change"], e["version"]) for e in report["events"]] == [
        ("set r", "entered", "1.3.2"),
        ("set r", "left", "1.3.2"),
        ("set r", "entered", "1.4.0"),
    ]
    # exact and case-sensitive: the image's R package "CLI" is not cli
    upper = run("--r", "CLI")
    assert upper.returncode == 0, upper.stderr
    assert upper.stdout.split()[2:] == ["staging", "jupyterlab", "entered", "1.0"]
    assert run("--r", "irkernel", "--no-deployments").stdout.startswith(
        "R package irkernel: no set"
    )
