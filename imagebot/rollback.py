"""Roll an environment back: the refs its file held before the current ones, as a new commit.

rollback(config, "staging") -> PromoteResult
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from imagebot import gitops
from imagebot.errors import GitOpsError, ImagebotError
from imagebot.promote import (
    PackageDiff,
    PromoteResult,
    apply_refs,
    clone_environment,
    read_file,
)
from imagebot.promote_plan import read_refs
from imagebot.tags import ImageRef

if TYPE_CHECKING:
    from imagebot.config import Config, EnvironmentConfig

DEEPEN_STEPS = (20, 200, 2000)


def rollback(
    config: Config,
    env_name: str,
    *,
    dry_run: bool = False,
    branch: str | None = None,
    env: Mapping[str, str] = os.environ,
    package_diff: PackageDiff | None = None,
) -> PromoteResult:
    """Restore the refs the environment's file held before its current ones, as a new commit.

    Walks the file's git history (deepening the shallow clone as needed) to the newest commit
    whose refs differ from the current ones, and sets those refs with byte-exact edits, so
    unrelated changes made to the file since then are kept.
    """
    environment = config.environment(env_name)
    with clone_environment(config, environment, env) as git:
        current = read_refs(read_file(git, environment), environment, environment.file)
        previous = previous_refs(git, environment, current)
        return apply_refs(
            config,
            environment,
            git,
            previous,
            verb="roll back",
            dry_run=dry_run,
            branch=branch,
            env=env,
            package_diff=package_diff,
        )


def previous_refs(
    git: gitops.Git, environment: EnvironmentConfig, current: Mapping[str, ImageRef]
) -> dict[str, ImageRef]:
    """The refs of the newest earlier version of the file that differ from `current`."""
    checked: set[str] = set()
    steps = iter(DEEPEN_STEPS)
    while True:
        for sha in gitops.file_commits(git, environment.file):
            if sha in checked:
                continue
            checked.add(sha)
            refs = _refs_or_none(gitops.file_at(git, sha, environment.file), environment, sha)
            if refs is not None and refs != dict(current):
                return {image: ref for image, ref in refs.items() if current.get(image) != ref}
        if not gitops.deepen(git, environment.branch, next(steps, 0) or 1_000_000):
            raise GitOpsError(
                f"{environment.file} has no earlier commit with different image refs",
                "nothing to roll back to; promote an explicit ref instead",
            )


def _refs_or_none(
    text: str | None, environment: EnvironmentConfig, sha: str
) -> dict[str, ImageRef] | None:
    if text is None:
        return None
    try:
        return read_refs(text, environment, f"{environment.file}@{sha[:12]}")
    except ImagebotError:
        return None
