"""Hostile GitOps input against REAL bare git remotes (issue 10: items 7, 13, 16, commit messages).

Each refusal leaves the remote's branch where it was and every local file byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .gitops_fixtures import (
    STAGING_FILE,
    git,
    make_remote,
    push_change,
    push_symlink,
    recording_git,
    remote_file,
    remote_head,
    run_imagebot,
    seed_config,
    write_config,
)

pytestmark = pytest.mark.integration

HUB = "127.0.0.1:5555/jupyter/jupyterhub"


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


@pytest.fixture
def config_path(tmp_path: Path, remote: Path) -> Path:
    return seed_config(tmp_path, remote)


def assert_one_error(stderr: str) -> None:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].strip() != "error:", stderr


def test_a_symlinked_helmrelease_is_refused_and_nothing_is_written(
    tmp_path: Path, config_path: Path, remote: Path
) -> None:
    victim = tmp_path / "victim.yaml"
    victim.write_text(remote_file(remote, STAGING_FILE))
    push_symlink(remote, tmp_path, STAGING_FILE, victim)
    head, before = remote_head(remote), victim.read_bytes()

    proc = run_imagebot(
        config_path, "promote", "staging", f"jupyterhub={HUB}:9f9f", "--no-package-diff"
    )

    assert proc.returncode == 12, proc.stderr
    assert "jupyter.yaml is a symlink" in proc.stderr
    assert_one_error(proc.stderr)
    assert victim.read_bytes() == before
    assert remote_head(remote) == head


@pytest.mark.parametrize(
    "url",
    [
        "http://deploy:s3cr3t-pw@127.0.0.1:9/platform-dev.git",
        "https://deploy:s3cr3t@pw@127.0.0.1:9/platform-dev.git",
        "http://s3cr3t-token@127.0.0.1:9/platform-dev.git",
    ],
)
def test_a_url_with_credentials_is_refused_before_git_runs(tmp_path: Path, url: str) -> None:
    config = write_config(
        tmp_path,
        url,
        {"staging": {"file": STAGING_FILE, "targets": {"jupyterhub": "spec.values.hub.image"}}},
    )
    path_env, argv_log = recording_git(tmp_path)

    proc = run_imagebot(config, "promote", "staging", f"jupyterhub={HUB}:1", env=path_env)

    assert proc.returncode == 3, proc.stderr
    assert "user:password@" in proc.stderr
    assert_one_error(proc.stderr)
    assert "s3cr3t" not in proc.stderr + proc.stdout
    assert "s3cr3t" not in argv_log.read_text()
    assert "clone" not in argv_log.read_text()


def test_the_token_reaches_no_git_argv(config_path: Path, tmp_path: Path, remote: Path) -> None:
    path_env, argv_log = recording_git(tmp_path)

    proc = run_imagebot(
        config_path,
        "promote",
        "staging",
        f"jupyterhub={HUB}:9f9f",
        "--no-package-diff",
        env={**path_env, "IMAGEBOT_GIT_TOKEN": "tok-SECRET"},
    )

    assert proc.returncode == 0, proc.stderr
    calls = argv_log.read_text()
    assert "clone" in calls and "push" in calls
    assert "tok-SECRET" not in calls and "Authorization" not in calls


@pytest.mark.parametrize(
    "ref",
    [
        f"{HUB}:2\nmalicious: true",
        f'{HUB}:2"',
        "127.0.0.1:5555/jupyter/JupyterHub:2",
        "a:b:c",
        "127.0.0.1:5555/" + "a" * 20_000 + ":1",
    ],
    ids=["newline", "quote", "upper-case", "a:b:c", "20000-characters"],
)
def test_an_invalid_command_line_ref_is_refused(config_path: Path, remote: Path, ref: str) -> None:
    head = remote_head(remote)

    proc = run_imagebot(config_path, "promote", "staging", f"jupyterhub={ref}")

    assert proc.returncode == 2, proc.stderr
    assert "image reference" in proc.stderr
    assert_one_error(proc.stderr)
    assert remote_head(remote) == head


def test_duplicate_keys_on_the_target_path_are_refused(
    tmp_path: Path, config_path: Path, remote: Path
) -> None:
    push_change(remote, tmp_path, STAGING_FILE, "  values:\n", "  values:\n    hub: {}\n", "dup")
    head = remote_head(remote)

    proc = run_imagebot(config_path, "promote", "staging", f"jupyterhub={HUB}:9f9f")

    assert proc.returncode == 11, proc.stderr
    assert "'hub'" in proc.stderr and "appears twice" in proc.stderr
    assert_one_error(proc.stderr)
    assert remote_head(remote) == head


def test_a_hostile_revision_adds_no_line_or_trailer_to_the_commit(
    config_path: Path, remote: Path
) -> None:
    revision = "feedbeef\nSigned-off-by: mallory <m@example.org>\n\nskip-checks: true"

    proc = run_imagebot(
        config_path,
        "promote",
        "staging",
        f"jupyterhub={HUB}:9f9f",
        "--no-package-diff",
        env={"BUILD_SOURCEVERSION": revision},
    )

    assert proc.returncode == 0, proc.stderr
    message = git("--git-dir", str(remote), "log", "-1", "--format=%B", "master")
    assert message.rstrip("\n").splitlines()[-1] == (
        "Source revision: feedbeef\\nSigned-off-by: mallory <m@example.org>\\n\\nskip-checks: true"
    )
    assert (
        git("--git-dir", str(remote), "log", "-1", "--format=%(trailers)", "master").strip() == ""
    )
