"""promote / rollback / status against REAL bare git remotes in temporary directories.

The registry is faked only where a test is about what lands in git (prod's refs, status rows);
where the registry's answer decides (prod refusing a digest, status with the registry down),
the real htpasswd registry of the local stack answers.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from imagebot import gitops
from imagebot import promote as promoting
from imagebot.config import load_config
from imagebot.errors import GitOpsError, RegistryError, UsageError
from imagebot.status import status
from imagebot.tags import ImageRef

from .conftest import Run, Stack
from .gitops_fixtures import (
    PROD_FILE,
    STAGING_FILE,
    SmartHttpGit,
    git,
    make_remote,
    push_change,
    remote_file,
    remote_head,
    remote_log,
    run_imagebot,
    seed_config,
    write_config,
)

pytestmark = pytest.mark.integration

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
LAB = "127.0.0.1:5555/jupyter/jupyterlab"
HUB = "127.0.0.1:5555/jupyter/jupyterhub"
SEED_HUB = "europe-north1-docker.pkg.dev/stat-platform/jupyter/jupyterhub"


def no_diff(old: ImageRef, new: ImageRef) -> str:
    return "(test: no package diff)"


def race_before_push(monkeypatch: pytest.MonkeyPatch, hook: Callable[[Path, int], None]) -> None:
    """Run `hook(clone_dir, attempt)` right before each push of gitops' push loop."""
    monkeypatch.setattr(gitops, "land", partial(gitops.land, before_push=hook))


class FakeRegistry:
    def __init__(self, digests: set[str]) -> None:
        self.digests = digests

    def digest(self, ref: ImageRef) -> str | None:
        return ref.digest if ref.digest in self.digests else None


def changed_lines(old: str, new: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


@pytest.fixture
def config_path(tmp_path: Path, remote: Path) -> Path:
    return seed_config(tmp_path, remote)


def test_promote_commits_exactly_the_image_bytes_and_pushes(
    config_path: Path, remote: Path
) -> None:
    before = remote_file(remote, STAGING_FILE)
    tree_before = git("--git-dir", str(remote), "ls-tree", "-r", "master")

    proc = run_imagebot(
        config_path,
        "promote",
        "staging",
        f"jupyterlab={LAB}:abc123@{D1}",
        "--no-package-diff",
        env={"BUILD_SOURCEVERSION": "feedbeef"},
    )

    assert proc.returncode == 0, proc.stderr
    after = remote_file(remote, STAGING_FILE)
    assert changed_lines(before, after) == [
        "-        name: europe-north1-docker.pkg.dev/stat-platform/jupyter/jupyterlab",
        "-        tag: 7c1e0b2a44d1",
        f"+        name: {LAB}",
        f"+        tag: abc123@{D1}",
        "-            image: europe-north1-docker.pkg.dev/stat-platform/jupyter/jupyterlab:7c1e0b2a44d1",
        f"+            image: {LAB}:abc123@{D1}",
    ]
    message = git("--git-dir", str(remote), "log", "-1", "--format=%B", "master")
    assert message.startswith("imagebot: promote jupyterlab in staging [skip ci]")
    assert "jupyterlab:7c1e0b2a44d1\n  -> 127.0.0.1:5555" in message
    assert "Source revision: feedbeef" in message
    assert "package diff unavailable" in message
    assert proc.stdout.strip() == remote_head(remote)
    assert len(remote_log(remote)) == 2
    # The sparse clone commits one file; every other file of the tree is unchanged.
    tree_after = git("--git-dir", str(remote), "ls-tree", "-r", "master")
    changed = set(tree_after.splitlines()) ^ set(tree_before.splitlines())
    assert {line.split("\t")[1] for line in changed} == {STAGING_FILE}


def test_nothing_to_change_makes_no_commit(config_path: Path, remote: Path) -> None:
    ref = f"jupyterlab={LAB}:abc123@{D1}"
    assert run_imagebot(config_path, "promote", "staging", ref, "--no-package-diff").returncode == 0
    head = remote_head(remote)

    proc = run_imagebot(config_path, "promote", "staging", ref, "--no-package-diff")

    assert proc.returncode == 0
    assert "nothing to commit" in proc.stderr
    assert remote_head(remote) == head


def test_dry_run_prints_diff_and_message_and_touches_nothing(
    config_path: Path, remote: Path
) -> None:
    head = remote_head(remote)

    proc = run_imagebot(
        config_path,
        "promote",
        "staging",
        f"jupyterhub={HUB}:9f9f",
        "--dry-run",
        "--no-package-diff",
    )

    assert proc.returncode == 0, proc.stderr
    assert f"+++ b/{STAGING_FILE}" in proc.stdout
    assert '-        tag: "2f4e6a8c0b1d"' in proc.stdout
    assert '+        tag: "9f9f"' in proc.stdout
    assert "imagebot: promote jupyterhub in staging [skip ci]" in proc.stdout
    assert remote_head(remote) == head


def test_branch_pushes_a_new_branch_and_refuses_an_existing_one(
    config_path: Path, remote: Path
) -> None:
    head = remote_head(remote)
    args = ("promote", "staging", f"jupyterhub={HUB}:9f9f", "--branch", "imagebot/hub-9f9f")

    first = run_imagebot(config_path, *args, "--no-package-diff")
    second = run_imagebot(
        config_path,
        "promote",
        "staging",
        f"jupyterhub={HUB}:aaaa",
        "--branch",
        "imagebot/hub-9f9f",
        "--no-package-diff",
    )

    assert first.returncode == 0, first.stderr
    assert remote_head(remote) == head
    assert 'tag: "9f9f"' in remote_file(remote, STAGING_FILE, "imagebot/hub-9f9f")
    assert second.returncode == 12
    assert "already exists" in second.stderr


def test_eight_concurrent_promotions_all_land(tmp_path: Path) -> None:
    images = [f"img{i}" for i in range(8)]
    values = "".join(
        f"  img{i}:\n    image: registry.example.org/img{i}:old # img {i}\n" for i in range(8)
    )
    remote = make_remote(tmp_path, {"values.yaml": "# eight images\nimages:\n" + values})
    config = write_config(
        tmp_path,
        str(remote),
        {"staging": {"file": "values.yaml", "targets": {i: f"images.{i}.image" for i in images}}},
        images=images,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEBOT_")}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imagebot",
                "--config",
                str(config),
                "promote",
                "staging",
                f"{image}=registry.example.org/{image}:new-{image}",
                "--no-package-diff",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for image in images
    ]
    results = [
        (proc.wait(timeout=240), proc.stderr.read() if proc.stderr else "") for proc in procs
    ]

    assert [code for code, _ in results] == [0] * 8, results
    final = remote_file(remote, "values.yaml")
    expected = "# eight images\nimages:\n" + values.replace(":old #", ":new-X #")
    for i in range(8):
        expected = expected.replace(f"img{i}:new-X", f"img{i}:new-img{i}")
    assert final == expected
    assert len(remote_log(remote)) == 9


def test_competing_commit_between_fetch_and_push_is_reapplied(
    tmp_path: Path, config_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def compete(clone: Path, attempt: int) -> None:
        if attempt == 1:
            push_change(remote, tmp_path, STAGING_FILE, "timeout: 3600", "timeout: 7200", "cull")

    race_before_push(monkeypatch, compete)
    config = load_config(config_path)

    result = promoting.promote(
        config,
        "staging",
        {"jupyterhub": ImageRef.parse(f"{HUB}:9f9f")},
        package_diff=no_diff,
        env={},
    )

    assert result.pushed and result.attempts == 2
    final = remote_file(remote, STAGING_FILE)
    assert "timeout: 7200" in final and 'tag: "9f9f"' in final
    assert remote_log(remote)[:2] == [
        "imagebot: promote jupyterhub in staging [skip ci]",
        "cull",
    ]


def test_a_clone_started_early_that_went_stale_is_reapplied(
    tmp_path: Path, config_path: Path, remote: Path
) -> None:
    """The release clones while it builds; others may push before its promotion does."""
    config = load_config(config_path)
    with promoting.checkout_in_background(config, "staging", {}) as checkout:
        clone = checkout.result().cwd
        push_change(remote, tmp_path, STAGING_FILE, "timeout: 3600", "timeout: 7200", "cull")
        result = promoting.promote(
            config,
            "staging",
            {"jupyterhub": ImageRef.parse(f"{HUB}:9f9f")},
            package_diff=no_diff,
            env={},
            checkout=checkout,
        )

    assert result.pushed and result.attempts == 2
    final = remote_file(remote, STAGING_FILE)
    assert "timeout: 7200" in final and 'tag: "9f9f"' in final
    assert not clone.exists(), "the early clone's directory is removed"


def test_competitor_setting_the_same_value_means_no_commit(
    tmp_path: Path, config_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def compete(clone: Path, attempt: int) -> None:
        if attempt == 1:
            push_change(remote, tmp_path, STAGING_FILE, '"2f4e6a8c0b1d"', '"9f9f"', "same")

    race_before_push(monkeypatch, compete)
    config = load_config(config_path)
    result = promoting.promote(
        config,
        "staging",
        {"jupyterhub": ImageRef.parse(f"{SEED_HUB}:9f9f")},
        package_diff=no_diff,
        env={},
    )

    assert not result.changed and result.commit is None
    assert remote_log(remote)[0] == "same"


def test_rejected_push_is_a_clear_error_and_nothing_lands(config_path: Path, remote: Path) -> None:
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'master is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    head = remote_head(remote)

    proc = run_imagebot(
        config_path, "promote", "staging", f"jupyterhub={HUB}:9f9f", "--no-package-diff"
    )

    assert proc.returncode == 12
    assert "rejected by the remote" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert remote_head(remote) == head


def test_unreachable_remote_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "http://127.0.0.1:9/platform-dev.git",
        {"staging": {"file": STAGING_FILE, "targets": {"jupyterhub": "spec.values.hub.image"}}},
    )

    proc = run_imagebot(
        config, "promote", "staging", f"jupyterhub={HUB}:1", env={"IMAGEBOT_GIT_TOKEN": "tok-XYZ"}
    )

    assert proc.returncode == 12
    assert "unreachable" in proc.stderr
    assert "127.0.0.1:9" in proc.stderr
    assert "tok-XYZ" not in proc.stderr + proc.stdout


def test_missing_local_remote_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "nowhere.git",
        {"staging": {"file": STAGING_FILE, "targets": {"jupyterhub": "spec.values.hub.image"}}},
    )
    proc = run_imagebot(config, "promote", "staging", f"jupyterhub={HUB}:1")
    assert proc.returncode == 12, proc.stderr
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_token_never_lands_in_the_clone_config(
    config_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def inspect(clone: Path, attempt: int) -> None:
        seen.append((clone / ".git" / "config").read_text())

    race_before_push(monkeypatch, inspect)
    promoting.promote(
        load_config(config_path),
        "staging",
        {"jupyterhub": ImageRef.parse(f"{HUB}:1")},
        env={"IMAGEBOT_GIT_TOKEN": "tok-SECRET"},
        package_diff=no_diff,
    )

    assert seen and all(
        "tok-SECRET" not in text and "extraheader" not in text.lower() for text in seen
    )


def test_prod_takes_stagings_digests(config_path: Path, remote: Path) -> None:
    config = load_config(config_path)
    staged = {
        "jupyterlab": ImageRef.parse(f"{LAB}:lab1@{D1}"),
        "jupyterhub": ImageRef.parse(f"{HUB}:hub1@{D2}"),
    }
    promoting.promote(config, "staging", staged, env={}, package_diff=no_diff)

    result = promoting.promote(
        config, "prod", None, env={}, registry=FakeRegistry({D1, D2}), package_diff=no_diff
    )

    assert result.pushed
    assert promoting.current_refs(config, "prod", env={}) == staged
    prod = remote_file(remote, PROD_FILE)
    assert f'tag: "hub1@{D2}"' in prod and f"image: {LAB}:lab1@{D1}" in prod


def test_prod_refuses_a_digest_the_registry_does_not_have(
    config_path: Path, remote: Path, stack: Stack, small_pushed: Run
) -> None:
    """Against the real registry: staging runs one image it has and one digest it lacks."""
    config = load_config(config_path)
    pushed = json.loads(small_pushed.stdout)[0]
    staged = {
        "jupyterlab": ImageRef.parse(f"{pushed['ref']}@{pushed['digest']}"),
        "jupyterhub": ImageRef.parse(f"{stack.namespace}/small:gone@{D2}"),
    }
    promoting.promote(config, "staging", staged, env={}, package_diff=no_diff)
    head = remote_head(remote)

    with pytest.raises(RegistryError, match="does not have that digest") as caught:
        promoting.promote(config, "prod", None, env=stack.env(), package_diff=no_diff)
    assert "jupyterhub" in caught.value.message and "jupyterlab" not in caught.value.message
    assert remote_head(remote) == head


def test_prod_refuses_staging_refs_without_digest_and_explicit_refs(config_path: Path) -> None:
    config = load_config(config_path)
    fake = FakeRegistry(set())
    with pytest.raises(RegistryError, match="has no digest"):
        promoting.promote(config, "prod", None, env={}, registry=fake, package_diff=no_diff)
    with pytest.raises(UsageError, match="promotes from staging"):
        promoting.promote(
            config,
            "prod",
            {"jupyterhub": ImageRef.parse(f"{HUB}:1")},
            env={},
            registry=fake,
            package_diff=no_diff,
        )


def test_rollback_restores_the_previous_refs_as_a_new_commit(
    tmp_path: Path, config_path: Path, remote: Path
) -> None:
    config = load_config(config_path)
    for n, tag in enumerate(("one", "two")):
        promoting.promote(
            config,
            "staging",
            {"jupyterhub": ImageRef.parse(f"{HUB}:{tag}")},
            env={},
            package_diff=no_diff,
        )
        push_change(
            remote, tmp_path, STAGING_FILE, f"every: 30{n}", f"every: 30{n + 1}", "unrelated"
        )
    assert promoting.current_refs(config, "staging", env={})["jupyterhub"].tag == "two"

    proc = run_imagebot(config_path, "rollback", "staging", "--no-package-diff")

    assert proc.returncode == 0, proc.stderr
    final = remote_file(remote, STAGING_FILE)
    assert 'tag: "one"' in final and "every: 302" in final  # the later unrelated edit stays
    assert remote_log(remote)[0] == "imagebot: roll back jupyterhub in staging [skip ci]"


def test_status_reports_refs_and_registry_presence(config_path: Path) -> None:
    config = load_config(config_path)
    promoting.promote(
        config,
        "staging",
        {"jupyterlab": ImageRef.parse(f"{LAB}:lab1@{D1}")},
        env={},
        package_diff=no_diff,
    )

    statuses = status(config, env={}, registry=FakeRegistry({D1}))

    staging = {row.image: row for row in statuses[0].refs}
    assert statuses[0].environment == "staging"
    assert staging["jupyterlab"].exists is True
    assert staging["jupyterhub"].exists is False


def test_status_with_unreachable_registry_is_unknown_not_an_error(config_path: Path) -> None:
    # Credentials resolve, so status really asks; nothing listens on the discard port.
    config_path.write_text(config_path.read_text().replace("127.0.0.1:5555", "127.0.0.1:9"))
    credentials = {"IMAGEBOT_REGISTRY_USERNAME": "u", "IMAGEBOT_REGISTRY_PASSWORD": "p"}
    proc = run_imagebot(
        config_path,
        "status",
        "--json",
        env={"IMAGEBOT_RETRY_SECONDS": "0", **credentials},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr
    assert "127.0.0.1:9" in proc.stderr and "no credentials" not in proc.stderr
    assert '"exists": null' in proc.stdout


@pytest.fixture
def http_remote(tmp_path: Path) -> Iterator[tuple[SmartHttpGit, Path]]:
    bare = make_remote(tmp_path)
    server = SmartHttpGit(tmp_path, "x-access-token", "tok-RIGHT")
    yield server, bare
    server.close()


def test_token_from_the_environment_authenticates_over_http(
    tmp_path: Path, http_remote: tuple[SmartHttpGit, Path]
) -> None:
    server, bare = http_remote
    config = seed_config(tmp_path, Path("unused"))
    config.write_text(
        config.read_text().replace('repo = "unused"', f'repo = "{server.url(bare.name)}"')
    )

    proc = run_imagebot(
        config,
        "promote",
        "staging",
        f"jupyterhub={HUB}:9f9f",
        "--no-package-diff",
        env={"IMAGEBOT_GIT_TOKEN": "tok-RIGHT"},
    )

    assert proc.returncode == 0, proc.stderr
    assert 'tag: "9f9f"' in remote_file(bare, STAGING_FILE)
    assert server.expected in server.auth_headers
    assert "tok-RIGHT" not in proc.stdout + proc.stderr


def test_wrong_token_is_an_authentication_error(
    tmp_path: Path, http_remote: tuple[SmartHttpGit, Path]
) -> None:
    server, bare = http_remote
    config = seed_config(tmp_path, Path("unused"))
    config.write_text(
        config.read_text().replace('repo = "unused"', f'repo = "{server.url(bare.name)}"')
    )
    head = remote_head(bare)

    wrong = run_imagebot(
        config, "promote", "staging", f"jupyterhub={HUB}:1", env={"IMAGEBOT_GIT_TOKEN": "tok-WRONG"}
    )
    missing = run_imagebot(config, "promote", "staging", f"jupyterhub={HUB}:1")

    for proc in (wrong, missing):
        assert proc.returncode == 12, proc.stderr
        assert "authentication failed" in proc.stderr
        assert "IMAGEBOT_GIT_TOKEN" in proc.stderr  # the hint says what to set
        assert "tok-WRONG" not in proc.stdout + proc.stderr
    assert remote_head(bare) == head


def test_remote_vanishing_before_the_push_is_a_clear_error(
    tmp_path: Path, config_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = tmp_path / "moved.git"

    def vanish(clone: Path, attempt: int) -> None:
        remote.rename(moved)

    race_before_push(monkeypatch, vanish)
    with pytest.raises(GitOpsError, match="unreachable"):
        promoting.promote(
            load_config(config_path),
            "staging",
            {"jupyterhub": ImageRef.parse(f"{HUB}:9f9f")},
            env={},
            package_diff=no_diff,
        )
    assert len(remote_log(moved)) == 1  # nothing landed
