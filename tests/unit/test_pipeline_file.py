"""azure-pipelines.yml: triggers, stages and secret hygiene (its steps run for real in
tests/integration/test_pipeline.py)."""

from __future__ import annotations

import pytest
from paths import REPO_ROOT
from pipeline_steps import MACRO, load_pipeline, script_steps

SECRETS = {"IMAGEBOT_GIT_TOKEN", "garKey.secureFilePath", "indexReader.secureFilePath"}


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return load_pipeline(REPO_ROOT / "azure-pipelines.yml")


def test_merge_to_master_triggers_only_on_image_inputs(pipeline: dict) -> None:
    assert pipeline["trigger"]["branches"]["include"] == ["master"]
    assert set(pipeline["trigger"]["paths"]["include"]) == {
        "requirements",
        "jupyter",
        "jupyterhub",
        "imagebot.toml",
    }


def test_pull_requests_validate_without_pushing(pipeline: dict) -> None:
    steps = [s for s in script_steps(pipeline) if s.stage == "Validate"]
    commands = [s.script for s in steps]
    for expected in ("imagebot check", "imagebot lock --check", "imagebot render --check"):
        assert expected in commands
    assert any("pytest tests/unit" in c for c in commands)
    assert any(c.startswith("imagebot build") for c in commands)
    assert any(c.startswith("imagebot test") for c in commands)
    assert not any("push" in c or "release" in c or "promote" in c for c in commands)


def test_prod_is_a_gated_deployment_promoted_from_staging(pipeline: dict) -> None:
    prod = next(s for s in pipeline["stages"] if s["stage"] == "Prod")
    assert prod["dependsOn"] == "Staging"
    job = prod["jobs"][0]
    assert job["environment"] == "jupyter-prod"  # approvals live on the Azure environment
    assert [s.script for s in script_steps(pipeline) if s.stage == "Prod"][
        -1
    ] == "imagebot release prod"


def test_secrets_only_reach_steps_through_env(pipeline: dict) -> None:
    for step in script_steps(pipeline):
        used_on_command_line = set(MACRO.findall(step.script))
        assert not used_on_command_line & SECRETS, step.name
        assert "--password" not in step.script and "token" not in step.script.lower()


def test_every_checkout_sets_depth_and_credentials(pipeline: dict) -> None:
    for stage in pipeline["stages"]:
        for job in stage["jobs"]:
            steps = job.get("steps") or job["strategy"]["runOnce"]["deploy"]["steps"]
            checkout = steps[0]
            assert checkout["checkout"] == "self"
            # review needs the target branch's history for the merge base; nothing else does
            assert checkout["fetchDepth"] == (0 if stage["stage"] == "Validate" else 1)
            assert checkout["persistCredentials"] is False


def test_pull_requests_review_and_audit_before_building(pipeline: dict) -> None:
    commands = [s.script for s in script_steps(pipeline) if s.stage == "Validate"]
    review = next(i for i, c in enumerate(commands) if c.startswith("imagebot review"))
    audit = commands.index("imagebot audit")
    build = next(i for i, c in enumerate(commands) if c.startswith("imagebot build"))
    assert review < build and audit < build
    assert "--markdown" in commands[review]  # the report goes on the run's summary page


def test_a_scheduled_run_audits_what_staging_and_prod_run(pipeline: dict) -> None:
    stage = next(s for s in pipeline["stages"] if s["stage"] == "AuditDeployed")
    assert "'Schedule'" in stage["condition"] and "succeededOrFailed()" in stage["condition"]
    assert stage["dependsOn"] == "Staging"  # after the nightly staging release
    scripts = [s.script for s in script_steps(pipeline) if s.stage == "AuditDeployed"]
    assert scripts[-1] == "imagebot audit --deployed staging --deployed prod"


def test_the_vetted_index_is_dry_run_in_pull_requests_and_published_by_release(
    pipeline: dict,
) -> None:
    validate = [s for s in script_steps(pipeline) if s.stage == "Validate"]
    build = next(i for i, s in enumerate(validate) if s.script.startswith("imagebot index build"))
    dry = next(i for i, s in enumerate(validate) if s.script.startswith("imagebot index publish"))
    assert build < dry and validate[dry].script.endswith("--dry-run")
    assert validate[dry].env == {"GOOGLE_APPLICATION_CREDENTIALS": "$(indexReader.secureFilePath)"}
    staging = [s.script for s in script_steps(pipeline) if s.stage == "Staging"]
    assert staging[-1] == "imagebot release staging"  # the index is published before promotion
    # requirements/index-only.toml alone triggers the merge pipeline
    assert "requirements" in pipeline["trigger"]["paths"]["include"]
