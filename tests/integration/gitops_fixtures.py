"""Real bare git remotes and throwaway imagebot configs for the GitOps integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED = REPO_ROOT / "examples" / "platform-dev"
STAGING_FILE = "flux/staging-bip-app/dapla-spark/jupyter/jupyter.yaml"
PROD_FILE = "flux/prod-bip-app/dapla-spark/jupyter/jupyter.yaml"
IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}


def git(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **IDENTITY},
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def make_remote(tmp: Path, files: Mapping[str, str] | None = None, name: str = "remote") -> Path:
    """A bare repository (branch master) whose first commit holds `files` (default: the seed)."""
    bare = tmp / f"{name}.git"
    work = tmp / f"{name}-seed"
    git("init", "--quiet", "--bare", "--initial-branch=master", str(bare))
    git("init", "--quiet", "--initial-branch=master", str(work))
    if files is None:
        subprocess.run(["cp", "-a", f"{SEED}/.", str(work)], check=True)
    else:
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_bytes(text.encode())
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "seed", cwd=work)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/master", cwd=work)
    return bare


def remote_file(bare: Path, path: str, rev: str = "master") -> str:
    return git("--git-dir", str(bare), "show", f"{rev}:{path}")


def remote_log(bare: Path, rev: str = "master") -> list[str]:
    """Commit subjects, newest first."""
    return git("--git-dir", str(bare), "log", "--format=%s", rev).splitlines()


def remote_head(bare: Path, rev: str = "master") -> str:
    return git("--git-dir", str(bare), "rev-parse", rev).strip()


def push_change(bare: Path, tmp: Path, path: str, old: str, new: str, subject: str) -> None:
    """Someone else's commit: clone, replace `old` with `new` in `path`, push."""
    work = tmp / f"other-{len(list(tmp.iterdir()))}"
    git("clone", "--quiet", "--depth", "1", bare.as_uri(), str(work))
    file = work / path
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))
    git("commit", "--quiet", "-am", subject, cwd=work)
    git("push", "--quiet", "origin", "HEAD:master", cwd=work)


def write_config(
    tmp: Path,
    repo: str,
    environments: Mapping[str, Mapping[str, object]],
    images: Sequence[str] = ("jupyterlab", "jupyterhub"),
) -> Path:
    """An imagebot.toml in `tmp` with the given images and environments (repo shared)."""
    lines = [
        "[registry]",
        'url = "127.0.0.1:5555/jupyter"',
        'auth = "basic"',
        "insecure = true",
    ]
    for image in images:
        dockerfile = tmp / "images" / image / "Dockerfile"
        dockerfile.parent.mkdir(parents=True, exist_ok=True)
        dockerfile.write_text("FROM scratch\n")
        lines += [f"[images.{image}]", f'dockerfile = "images/{image}/Dockerfile"']
    for name, spec in environments.items():
        lines += [f"[environments.{name}]", f'repo = "{repo}"', 'branch = "master"']
        for key, value in spec.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {_toml(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {_toml(value)}")
    path = tmp / "imagebot.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


STAGING_TARGETS = {
    "jupyterlab": [
        "spec.values.singleuser.image",
        "spec.values.singleuser.profileList.1.kubespawner_override.image",
    ],
    "jupyterhub": "spec.values.hub.image",
}


def seed_config(tmp: Path, bare: Path) -> Path:
    """staging + prod (promote_from staging) over the platform-dev seed."""
    return write_config(
        tmp,
        str(bare),
        {
            "staging": {"file": STAGING_FILE, "targets": STAGING_TARGETS},
            "prod": {"file": PROD_FILE, "targets": STAGING_TARGETS, "promote_from": "staging"},
        },
    )


def run_imagebot(
    config: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEBOT_")}
    child.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "imagebot", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=child,
        timeout=timeout,
        check=False,
    )
