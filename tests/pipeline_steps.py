"""Read azure-pipelines.yml into an ordered list of script steps, with Azure's $(macro) syntax.

Shared by the unit test (structure and secret hygiene) and the integration test (runs every
script step against the local stack).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MACRO = re.compile(r"\$\(([A-Za-z0-9_.]+)\)")


@dataclass(frozen=True)
class ScriptStep:
    stage: str
    job: str
    name: str
    script: str
    env: Mapping[str, str]


def _steps_of_job(job: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if "steps" in job:
        return list(job["steps"])
    # deployment jobs: strategy.runOnce.deploy.steps
    strategy = job.get("strategy", {})
    for phase in strategy.values():
        deploy = phase.get("deploy", {})
        if "steps" in deploy:
            return list(deploy["steps"])
    return []


def load_pipeline(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    data: dict[str, Any] = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    return data


def script_steps(pipeline: Mapping[str, Any]) -> Iterator[ScriptStep]:
    for stage in pipeline["stages"]:
        for job in stage["jobs"]:
            job_name = job.get("job") or job.get("deployment")
            for step in _steps_of_job(job):
                if "script" in step:
                    yield ScriptStep(
                        stage=stage["stage"],
                        job=job_name,
                        name=step.get("displayName", step["script"]),
                        script=step["script"],
                        env={k: str(v) for k, v in (step.get("env") or {}).items()},
                    )


def expand_macros(text: str, variables: Mapping[str, str]) -> str:
    """Replace $(name) like Azure does; an unmapped macro is an error so the map cannot rot."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise KeyError(f"pipeline macro $({name}) has no local value in the test's map")
        return variables[name]

    return MACRO.sub(sub, text)
