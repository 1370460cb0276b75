"""Hostile-input rows for GitOps (issue 10: items 7, 13, 16 and the commit-message and YAML sinks).

The GitOps clone is faked: `gitops.clone` copies `platform-dev/` of the project (symlinks kept),
so the rows run without git and every byte of the "remote" is in the project's snapshot.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from imagebot import gitops, promote_plan
from imagebot.promote_plan import ImageChange
from imagebot.redaction import redact
from imagebot.tags import ImageRef
from tests.unit.conftest import Hostile, Project, Result, assert_refused

Run = Callable[..., Result]
D1 = "sha256:" + "1" * 64
LAB = "registry.example.org/jupyter/lab"
HELMRELEASE = f"""\
spec:
  values:
    singleuser:
      image:
        name: {LAB}
        tag: "1"
"""
ENVIRONMENTS = """
[environments.staging]
repo = "{repo}"
branch = "master"
file = "{file}"
targets = {{ lab = "spec.values.singleuser.image" }}

[environments.prod]
repo = "platform-dev"
branch = "master"
file = "flux/prod.yaml"
targets = {{ lab = "spec.values.singleuser.image" }}
promote_from = "staging"
"""


def gitops_repo(
    repo: str = "platform-dev", file: str = "flux/jupyter.yaml"
) -> Callable[[Project, pytest.MonkeyPatch], None]:
    """Setup: environments in imagebot.toml, a fake clone of platform-dev/ with the files."""

    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        with project.config.open("a", encoding="utf-8") as config:
            config.write(ENVIRONMENTS.format(repo=repo, file=file))
        project.write("platform-dev/flux/jupyter.yaml", HELMRELEASE)
        project.write("platform-dev/flux/prod.yaml", HELMRELEASE)
        monkeypatch.setenv("BUILD_SOURCEVERSION", "feedbeef")

        def clone(
            url: str,
            branch: str,
            dest: Path,
            env: Mapping[str, str],
            *,
            depth: int = 1,
            paths: Sequence[str] = (),
        ) -> gitops.Git:
            shutil.copytree(project.path("platform-dev"), dest, symlinks=True)
            return gitops.Git(dest, url, {})

        monkeypatch.setattr(gitops, "clone", clone)

    return setup


def then(
    first: Callable[[Project, pytest.MonkeyPatch], None],
    second: Callable[[Project], None],
) -> Callable[[Project, pytest.MonkeyPatch], None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        first(project, monkeypatch)
        second(project)

    return setup


def symlinked_file(project: Project) -> None:
    project.write("victim.yaml", HELMRELEASE)
    link = project.path("platform-dev/flux/jupyter.yaml")
    link.unlink()
    link.symlink_to(project.path("victim.yaml"))


def symlinked_directory(project: Project) -> None:
    project.write("elsewhere/jupyter.yaml", HELMRELEASE)
    shutil.rmtree(project.path("platform-dev/flux"))
    project.path("platform-dev/flux").symlink_to(project.path("elsewhere"))
    project.write("platform-dev/prod/prod.yaml", HELMRELEASE)


def staging_runs(ref: str) -> Callable[[Project], None]:
    def write(project: Project) -> None:
        project.write(
            "platform-dev/flux/jupyter.yaml",
            f"spec:\n  values:\n    singleuser:\n      image: {ref}\n",
        )

    return write


class FoundEverything:
    def digest(self, ref: ImageRef) -> str | None:
        return ref.digest


def registry_has_everything(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    gitops_repo()(project, monkeypatch)
    staging_runs(f"registry.example.org/jupyter/LAB:1@{D1}")(project)
    import imagebot.promote

    monkeypatch.setattr(imagebot.promote, "open_registry", lambda c, r, e: FoundEverything())


def yaml_file(text: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        project.write("hr.yaml", text)
        monkeypatch.chdir(project.root)

    return setup


SET_IMAGE = ("set-image", "hr.yaml", "--path", "image")
PROMOTE = ("promote", "staging", "--no-package-diff")
BAD_REFS = {
    "newline": f"{LAB}:2\nmalicious: true",
    "quote": f'{LAB}:2"',
    "upper-case-repository": "registry.example.org/jupyter/LAB:2",
    "two-tags": "a:b:c",
    "20000-character-name": "registry.example.org/" + "a" * 20_000 + ":1",
}
HOSTILE: list[Hostile] = [
    Hostile(
        "promote-target-is-a-symlink",
        then(gitops_repo(), symlinked_file),
        (*PROMOTE, f"lab={LAB}:2"),
        12,
        "flux/jupyter.yaml is a symlink",
    ),
    Hostile(
        "promote-target-under-a-symlinked-directory",
        then(gitops_repo(), symlinked_directory),
        (*PROMOTE, f"lab={LAB}:2"),
        12,
        "flux is a symlink",
    ),
    Hostile(
        "promote-target-outside-the-clone",
        then(gitops_repo(file="../victim.yaml"), lambda p: p.write("victim.yaml", HELMRELEASE)),
        (*PROMOTE, f"lab={LAB}:2"),
        12,
        "leads outside the repository",
    ),
    Hostile(
        "promote-url-with-password",
        gitops_repo(repo="https://deploy:s3cr3t-pw@git.example.org/platform-dev.git"),
        (*PROMOTE, f"lab={LAB}:2"),
        3,
        "user:password@",
    ),
    Hostile(
        "promote-url-with-password-holding-an-at-sign",
        gitops_repo(repo="https://deploy:s3cr3t@pw@git.example.org/platform-dev.git"),
        (*PROMOTE, f"lab={LAB}:2"),
        3,
        "user:password@",
    ),
    Hostile(
        "promote-url-with-token-only",
        gitops_repo(repo="https://s3cr3t-pw@git.example.org/platform-dev.git"),
        (*PROMOTE, f"lab={LAB}:2"),
        3,
        "user:password@",
    ),
    Hostile(
        "promote-scp-remote-with-password",
        gitops_repo(repo="deploy:s3cr3t-pw@git.example.org:platform-dev.git"),
        (*PROMOTE, f"lab={LAB}:2"),
        3,
        "user:password@",
    ),
    Hostile(
        "promote-command-line-ref-upper-case",
        gitops_repo(),
        (*PROMOTE, "lab=registry.example.org/jupyter/LAB:2"),
        2,
        "not a valid image reference",
    ),
    Hostile(
        "promote-command-line-ref-newline",
        gitops_repo(),
        (*PROMOTE, f"lab={BAD_REFS['newline']}"),
        2,
        "not a valid image reference",
    ),
    Hostile(
        "promote-image-name-with-newline",
        gitops_repo(),
        (*PROMOTE, f"lab\n[skip ci]={LAB}:2"),
        2,
        "invalid image argument",
    ),
    Hostile(
        "prod-refuses-to-splice-an-invalid-ref-from-staging",
        registry_has_everything,
        ("promote", "prod", "--no-package-diff"),
        11,
        "not a valid image reference",
    ),
    Hostile(
        "set-image-duplicate-keys-on-the-path",
        yaml_file("image:\n  name: r.example.org/a\n  tag: '1'\nimage:\n  name: r.example.org/b\n"),
        (*SET_IMAGE, "r.example.org/a:2"),
        11,
        "appears twice",
    ),
    Hostile(
        "set-image-duplicate-tag-keys",
        yaml_file("image:\n  name: r.example.org/a\n  tag: '1'\n  tag: '2'\n"),
        (*SET_IMAGE, "r.example.org/a:3"),
        11,
        "appears twice",
    ),
    *(
        Hostile(
            f"set-image-ref-{name}",
            yaml_file("image: r.example.org/a:1\n"),
            (*SET_IMAGE, ref),
            2,
            "image reference",
        )
        for name, ref in BAD_REFS.items()
    ),
]


@pytest.mark.parametrize("case", HOSTILE, ids=lambda case: case.id)
def test_hostile_gitops_input_is_refused(
    case: Hostile, project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    result = assert_refused(case, project, monkeypatch, run_cli)
    assert "s3cr3t" not in result.err + result.out
    assert len(result.hint_lines) == 1, result.err


def test_dry_run_message_cannot_gain_lines_or_trailers(
    project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    gitops_repo()(project, monkeypatch)
    monkeypatch.setenv("BUILD_SOURCEVERSION", "feedbeef\nSigned-off-by: mallory\n[skip ci]")

    result = run_cli("--config", project.config, *PROMOTE, f"lab={LAB}:2", "--dry-run")

    assert result.code == 0, result.err
    message = result.out[result.out.index("imagebot: promote") :]
    assert message.splitlines()[-1] == (
        "Source revision: feedbeef\\nSigned-off-by: mallory\\n[skip ci]"
    )
    assert not any(line.startswith("Signed-off-by") for line in message.splitlines())


def test_commit_message_escapes_every_interpolated_value() -> None:
    old = ImageRef.parse(f"{LAB}:1")
    change = ImageChange("lab\nCo-authored-by: x", "a.image\r\nx", old, ImageRef.parse(f"{LAB}:2"))
    diffs = {(str(old), str(change.new)): "+ numpy 2.1.0\n+ evil\x1b[31m\u2028Signed-off-by: y"}

    message = promote_plan.commit_message("promote", "stag\ning", [change], diffs, "r\n[ci skip]")

    lines = message.splitlines()
    assert lines[0] == "imagebot: promote lab\\nCo-authored-by: x in stag\\ning [skip ci]"
    assert "+ evil\\x1b[31m\\u2028Signed-off-by: y" in lines
    assert lines[-1] == "Source revision: r\\n[ci skip]"
    assert not any(line.startswith(("Co-authored-by", "Signed-off-by", "[ci")) for line in lines)


def test_git_failure_messages_are_never_empty() -> None:
    error = gitops._classify("", "push", "https://h/r.git", 128)
    assert error.message.endswith("git exited with status 128")


@pytest.mark.parametrize(
    "text",
    [
        "fatal: unable to access 'https://deploy:p@ss@word@git.example.org/r.git/': 403",
        "https://deploy:s3cr3t@git.example.org/r.git and http://t0k@h/x",
    ],
)
def test_redaction_survives_at_signs_in_passwords(text: str) -> None:
    shown = redact(text)
    assert "ss@word" not in shown and "s3cr3t" not in shown and "t0k" not in shown
    assert "***@git.example.org" in shown


def test_ssh_user_names_are_not_credentials(tmp_path: Path) -> None:
    assert gitops.remote_url("git@github.com:o/r.git", tmp_path) == "git@github.com:o/r.git"
    assert gitops.remote_url("ssh://git@h:22/r.git", tmp_path) == "ssh://git@h:22/r.git"
