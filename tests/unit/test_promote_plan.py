"""promote's pure parts: planning edits, commit messages, argument parsing, ref resolution."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from imagebot import gitops, promote_plan
from imagebot import promote as promoting
from imagebot.config import EnvironmentConfig
from imagebot.errors import ConfigError, RegistryError, UsageError
from imagebot.promote_plan import ImageChange
from imagebot.redaction import redact
from imagebot.tags import ImageRef

D1 = "sha256:" + "1" * 64
HELMRELEASE = """\
spec:
  values:
    hub:
      image:
        name: r.example.org/jupyter/jupyterhub
        tag: "hub1"
    singleuser:
      image:
        name: r.example.org/jupyter/jupyterlab
        tag: lab1 # pinned
      profileList:
        - kubespawner_override:
            image: r.example.org/jupyter/jupyterlab:lab1
"""
STAGING = EnvironmentConfig(
    name="staging",
    repo="platform-dev.git",
    branch="master",
    file="jupyter.yaml",
    targets={
        "jupyterlab": (
            "spec.values.singleuser.image",
            "spec.values.singleuser.profileList.0.kubespawner_override.image",
        ),
        "jupyterhub": ("spec.values.hub.image",),
    },
)
PROD = EnvironmentConfig(
    name="prod",
    repo="platform-dev.git",
    branch="master",
    file="prod.yaml",
    targets=STAGING.targets,
    promote_from="staging",
)


def test_plan_edit_sets_every_target_of_an_image() -> None:
    new = ImageRef.parse("r.example.org/jupyter/jupyterlab:lab2")
    text, changes = promote_plan.plan_edit(HELMRELEASE, STAGING, {"jupyterlab": new}, "f")

    assert text == HELMRELEASE.replace("tag: lab1 #", "tag: lab2 #").replace(
        "jupyterlab:lab1\n", "jupyterlab:lab2\n"
    )
    old = ImageRef.parse("r.example.org/jupyter/jupyterlab:lab1")
    assert changes == (
        ImageChange("jupyterlab", STAGING.targets["jupyterlab"][0], old, new),
        ImageChange("jupyterlab", STAGING.targets["jupyterlab"][1], old, new),
    )


def test_plan_edit_with_current_refs_changes_nothing() -> None:
    current = promote_plan.read_refs(HELMRELEASE, STAGING, "f")
    text, changes = promote_plan.plan_edit(HELMRELEASE, STAGING, current, "f")
    assert (text, changes) == (HELMRELEASE, ())


def test_unknown_image_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no target for image 'jupyterlabx'"):
        promote_plan.plan_edit(HELMRELEASE, STAGING, {"jupyterlabx": ImageRef.parse("x:1")}, "f")


def test_commit_message_names_images_refs_diff_and_source() -> None:
    old, new = ImageRef.parse("r/lab:1"), ImageRef.parse(f"r/lab:2@{D1}")
    changes = [
        ImageChange("jupyterlab", "a.image", old, new),
        ImageChange("jupyterlab", "b", old, new),
    ]

    message = promote_plan.commit_message(
        "promote", "staging", changes, {(str(old), str(new)): "+ numpy 2.1.0"}, "abc123"
    )

    assert message == (
        "imagebot: promote jupyterlab in staging [skip ci]\n\n"
        "jupyterlab (a.image):\n  r/lab:1\n  -> r/lab:2@" + D1 + "\n"
        "jupyterlab (b):\n  r/lab:1\n  -> r/lab:2@" + D1 + "\n\n"
        "Package diff for jupyterlab:\n+ numpy 2.1.0\n\n"
        "Source revision: abc123\n"
    )


def test_commit_message_without_package_diff_says_so() -> None:
    change = ImageChange("hub", "p", ImageRef.parse("r/h:1"), ImageRef.parse("r/h:2"))
    message = promote_plan.commit_message("promote", "prod", [change], {}, "unknown")
    assert promote_plan.NO_PACKAGE_DIFF in message


def test_parse_image_args() -> None:
    assert promote_plan.parse_image_args(["jupyterlab", f"jupyterhub=r/h:2@{D1}"]) == {
        "jupyterlab": None,
        "jupyterhub": ImageRef("r/h", "2", D1),
    }
    with pytest.raises(UsageError):
        promote_plan.parse_image_args(["jupyterlab="])


def test_unified_diff_has_file_headers() -> None:
    diff = promote_plan.unified_diff("a: 1\n", "a: 2\n", "x.yaml")
    assert diff.splitlines()[:2] == ["--- a/x.yaml", "+++ b/x.yaml"]


class FakeRegistry:
    def __init__(self, digests: dict[str, str]) -> None:
        self.digests = digests  # "name:tag" or "name@digest" -> digest
        self.asked: list[str] = []

    def digest(self, ref: ImageRef) -> str | None:
        self.asked.append(str(ref))
        return self.digests.get(str(ref))


def _workdir(tmp_path: Path, files: dict[str, str]) -> gitops.Git:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return gitops.Git(tmp_path, "file:///nowhere", {})


class _Config:
    """Just enough of Config for promote_from resolution (no file system, no registry)."""

    root = Path("/")
    environments: ClassVar[dict[str, EnvironmentConfig]] = {"staging": STAGING, "prod": PROD}

    def environment(self, name: str) -> EnvironmentConfig:
        return self.environments[name]


def test_prod_takes_stagings_digest_pinned_refs(tmp_path: Path) -> None:
    staged = HELMRELEASE.replace('"hub1"', f'"hub1@{D1}"').replace(
        "tag: lab1 #", f"tag: lab1@{D1} #"
    )
    git = _workdir(tmp_path, {"jupyter.yaml": staged})
    registry = FakeRegistry(
        {f"r.example.org/jupyter/jupyterhub@{D1}": D1, f"r.example.org/jupyter/jupyterlab@{D1}": D1}
    )

    refs = promoting.resolve_refs(_Config(), PROD, None, git, registry, {})

    assert refs == {
        "jupyterlab": ImageRef("r.example.org/jupyter/jupyterlab", "lab1", D1),
        "jupyterhub": ImageRef("r.example.org/jupyter/jupyterhub", "hub1", D1),
    }
    assert registry.asked and all("@" in asked for asked in registry.asked)


def test_prod_refuses_a_staging_ref_without_digest(tmp_path: Path) -> None:
    git = _workdir(tmp_path, {"jupyter.yaml": HELMRELEASE})
    with pytest.raises(RegistryError, match="has no digest"):
        promoting.resolve_refs(_Config(), PROD, None, git, FakeRegistry({}), {})


def test_prod_refuses_a_digest_missing_from_the_registry(tmp_path: Path) -> None:
    staged = HELMRELEASE.replace('"hub1"', f'"hub1@{D1}"').replace(
        "tag: lab1 #", f"tag: lab1@{D1} #"
    )
    git = _workdir(tmp_path, {"jupyter.yaml": staged})
    with pytest.raises(RegistryError, match="does not have that digest"):
        promoting.resolve_refs(_Config(), PROD, None, git, FakeRegistry({}), {})


def test_explicit_refs_need_no_registry(tmp_path: Path) -> None:
    git = _workdir(tmp_path, {"jupyter.yaml": HELMRELEASE})
    ref = ImageRef.parse("r/lab:9")
    refs = promoting.resolve_refs(_Config(), STAGING, {"jupyterlab": ref}, git, None, {})
    assert refs == {"jupyterlab": ref}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "fatal: unable to access 'https://bot:ghp_secret@github.com/o/r.git/'",
            "https://***@github.com",
        ),
        ("http://u@h/x and ssh://git:pw@h:22/r", "http://***@h/x and ssh://***@h:22/r"),
    ],
)
def test_redact_hides_userinfo(text: str, expected: str) -> None:
    assert expected in redact(text)
    assert "secret" not in redact(text) and ":pw@" not in redact(text)


def test_credentials_go_through_env_config_never_the_url() -> None:
    env = gitops.credential_env({"IMAGEBOT_GIT_TOKEN": "tok"})
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"] == "Authorization: Basic eC1hY2Nlc3MtdG9rZW46dG9r"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    bearer = gitops.credential_env({"IMAGEBOT_GIT_AUTH_HEADER": "Authorization: Bearer abc"})
    assert bearer["GIT_CONFIG_VALUE_0"] == "Authorization: Bearer abc"
    assert "GIT_CONFIG_COUNT" not in gitops.credential_env({})


def test_remote_url_resolves_relative_paths_against_the_config_root(tmp_path: Path) -> None:
    assert gitops.remote_url("repo.git", tmp_path) == (tmp_path / "repo.git").as_uri()
    assert gitops.remote_url("https://h/r.git", tmp_path) == "https://h/r.git"
    assert gitops.remote_url("git@github.com:o/r.git", tmp_path) == "git@github.com:o/r.git"


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            "remote: master is protected\n ! [remote rejected] HEAD -> master (pre-receive hook declined)",
            "rejected by the remote",
        ),
        ("fatal: Authentication failed for 'https://h/r.git/'", "authentication failed"),
        (
            "fatal: could not read Username for 'https://h': terminal prompts disabled",
            "authentication failed",
        ),
        (
            "fatal: unable to access 'http://u:pw@127.0.0.1:9/r.git/': Failed to connect",
            "unreachable",
        ),
        ("fatal: '/x/r.git' does not appear to be a git repository", "unreachable"),
    ],
)
def test_git_failures_are_classified(stderr: str, expected: str) -> None:
    error = gitops._classify(stderr, "push", "http://u:pw@127.0.0.1:9/r.git")
    assert expected in error.message
    assert "pw" not in error.message and error.exit_code == 12


def test_credentials_are_appended_after_the_callers_git_config_env() -> None:
    env = gitops.credential_env({"IMAGEBOT_GIT_TOKEN": "tok", "GIT_CONFIG_COUNT": "2"})
    assert env["GIT_CONFIG_COUNT"] == "3"
    assert env["GIT_CONFIG_KEY_2"] == "http.extraHeader"
    assert "GIT_ASKPASS" not in env


def test_policy_targets_set_every_marked_field() -> None:
    text = (
        "image:\n"
        '  repository: r.example.org/lab # {"$imagepolicy": "flux-system:lab:name"}\n'
        '  tag: "1.0" # {"$imagepolicy": "flux-system:lab:tag"}\n'
    )
    environment = EnvironmentConfig(
        name="dev",
        repo="r.git",
        branch="main",
        file="hr.yaml",
        targets={"jupyterlab": ("policy:flux-system:lab",)},
    )
    new = ImageRef.parse("r.example.org/lab:1.10")

    result, changes = promote_plan.plan_edit(text, environment, {"jupyterlab": new}, "hr.yaml")

    assert result == text.replace('"1.0"', '"1.10"')
    assert changes == (
        ImageChange(
            "jupyterlab", "policy:flux-system:lab", ImageRef.parse("r.example.org/lab:1.0"), new
        ),
    )
    assert promote_plan.read_refs(result, environment, "hr.yaml") == {"jupyterlab": new}
