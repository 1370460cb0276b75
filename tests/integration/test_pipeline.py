"""Run every script step of azure-pipelines.yml, in order, against the local stack.

The pipeline's variables are mapped to local values (the local profile, the stack's registry
credentials, a throwaway GitOps remote). A step the pipeline adds without a local mapping fails
this test, so the pipeline file cannot rot unnoticed. Stages run in pipeline order as if a pull
request was validated, then merged, then approved for prod, then as if the nightly audit of what
the environments run followed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO_ROOT
from pipeline_steps import expand_macros, load_pipeline, script_steps

from imagebot.config import Config, load_config
from imagebot.promote_plan import read_refs
from imagebot.tags import ImageRef

from .conftest import Stack
from .gitops_fixtures import git, remote_file


@pytest.fixture
def gitops_remote(tmp_path: Path) -> Path:
    remote = tmp_path / "platform-dev.git"
    seed = REPO_ROOT / "scripts" / "seed-gitops"
    subprocess.run([str(seed), "--path", str(remote)], check=True, capture_output=True)
    return remote


def test_every_script_step_runs_against_the_local_stack(
    stack: Stack, gitops_remote: Path, tmp_path: Path
) -> None:
    revision = git("rev-parse", "HEAD", cwd=REPO_ROOT).strip()
    variables = {
        # Azure predefined and secret variables -> local values
        "Build.SourceVersion": revision,
        "IMAGEBOT_GIT_TOKEN": "",  # the local remote is a path; no token needed
        "garKey.secureFilePath": "",  # the local profile uses basic auth, not a Google key
        "indexReader.secureFilePath": "",  # the local profile publishes into a directory
        "Agent.TempDirectory": str(tmp_path),
    }
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **stack.env(),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "IMAGEBOT_PROFILE": "local",
        "IMAGEBOT_GITOPS_REPO": str(gitops_remote),
        "TF_BUILD": "True",  # imagebot logs like it does inside Azure Pipelines
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "IMAGEBOT_INDEX_DIR": str(tmp_path / "published"),  # not the stack's own directory
    }
    env.pop("IMAGEBOT_TEST_REGISTRY", None)

    steps = list(script_steps(load_pipeline(REPO_ROOT / "azure-pipelines.yml")))
    assert steps, "azure-pipelines.yml has no script steps"
    ran = []
    for step in steps:
        script = expand_macros(step.script, variables)
        step_env = {**env, **{k: expand_macros(v, variables) for k, v in step.env.items()}}
        step_env = {k: v for k, v in step_env.items() if v != ""}
        if script.startswith("python3 -m pip install"):
            # The agent installs imagebot; here it is installed already (scripts/bootstrap).
            script = script.replace("python3 -m pip install", f"{sys.executable} -m pip install -q")
        result = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", script],
            cwd=REPO_ROOT,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        failed = (
            f"[{step.stage}/{step.job}] {step.name!r} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
        if step.stage == NIGHTLY_AUDIT and script.startswith("imagebot audit"):
            # What the environments run may hold an advisory published after its release:
            # that is the finding this stage exists for (exit 15), not a broken step.
            assert result.returncode in (0, 15), failed
            _assert_deployed_audit(result.returncode, result.stderr)
            continue
        assert result.returncode == 0, failed
        ran.append((step.stage, step.name, result.stderr))

    stages = list(dict.fromkeys(stage for stage, _, _ in ran))
    assert stages == ["Validate", "Staging", "Prod", NIGHTLY_AUDIT]
    # Every stage folded its output and no step raised an Azure error.
    logs = "\n".join(stderr for _, _, stderr in ran)
    assert "##vso[task.logissue type=error]" not in logs
    assert "##[group]" in logs

    # Staging got a fresh build; prod got exactly the digest-pinned refs staging runs.
    assert "[skip ci]" in git("--git-dir", str(gitops_remote), "log", "-1", "--format=%B", "master")
    config = load_config(REPO_ROOT / "imagebot.toml", "local", env)
    staging = _refs(config, "staging", gitops_remote)
    prod = _refs(config, "prod", gitops_remote)
    assert set(staging) == {"jupyterlab", "jupyterhub"}
    assert all(ref.digest for ref in staging.values())
    assert prod == staging
    # Review and audit ran before the pull request's build; release audited before it built.
    names = [name for _, name, _ in ran]
    build = next(i for i, name in enumerate(names) if name.startswith("Build images"))
    assert names.index("Audit the locked versions against known vulnerabilities") < build
    assert (tmp_path / "imagebot-review.md").is_file()
    release_log = next(err for _, name, err in ran if name.startswith("Release to staging"))
    assert "audit: " in release_log or "advisories: source absent, not checked" in release_log
    # The merge published the vetted index (release staging, before promoting).
    assert (tmp_path / "published" / "imagebot-index.json").is_file()


NIGHTLY_AUDIT = "AuditDeployed"


def _assert_deployed_audit(code: int, stderr: str) -> None:
    """The audit read what staging and prod run; every finding names where it runs."""
    assert any(line.startswith("audit: ") for line in stderr.splitlines()), stderr
    findings = [line for line in stderr.splitlines() if ": PYSEC-" in line or ": GHSA-" in line]
    assert (code == 15) == bool(findings), stderr
    for line in findings:
        origins = line.split(" (", 1)[1].split("):", 1)[0].split(", ")
        assert all(o.startswith(("staging:", "prod:")) for o in origins), line


def _refs(config: Config, env_name: str, remote: Path) -> dict[str, ImageRef]:
    environment = config.environment(env_name)
    text = remote_file(remote, environment.file)
    return read_refs(text, environment, environment.file)
