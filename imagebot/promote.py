"""Promotion through the GitOps repository: orchestration that returns dataclasses.

    promote(config, "staging", {"jupyterlab": ref})   -> PromoteResult   (edit, commit, push)
    promote(config, "prod", None)                    -> PromoteResult   (staging's digests)
    current_refs(config, "staging")                  -> {"jupyterlab": ImageRef, ...}

What changes, and the commit message, are planned by `imagebot.promote_plan` (pure); the clone
and the push-and-retry loop are `imagebot.gitops`. `imagebot.status` and `imagebot.rollback`
use `clone_environment` and `apply_refs` defined here. Nothing here prints; the CLI renders results.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from imagebot import gitops, promote_plan
from imagebot.base_image import content_ref
from imagebot.errors import GitOpsError, RegistryError, UsageError, YamlEditError
from imagebot.files import Unreadable, read_text
from imagebot.promote_plan import NO_PACKAGE_DIFF, ImageChange, Plan
from imagebot.redaction import redact
from imagebot.tags import ImageRef

if TYPE_CHECKING:
    from concurrent.futures import Future

    from imagebot.config import Config, EnvironmentConfig


class DigestLookup(Protocol):
    """What promotion needs from a registry: the digest a reference resolves to."""

    def digest(self, ref: ImageRef) -> str | None:
        """The manifest digest, or None when the registry does not have `ref`."""
        ...


PackageDiff = Callable[[ImageRef, ImageRef], str]


def no_package_diff(old: ImageRef, new: ImageRef) -> str:
    """A PackageDiff that describes nothing (`--no-package-diff`)."""
    return NO_PACKAGE_DIFF


@dataclass(frozen=True)
class PromoteResult:
    """What a promote or rollback did (or, with dry_run, would do).

    `commit` is None when nothing changed or on a dry run; `pushed` says whether the commit
    reached the remote (on `branch`). `attempts` counts push attempts (races lost + 1).
    """

    environment: str
    file: str
    branch: str
    changes: tuple[ImageChange, ...]
    diff: str
    message: str
    commit: str | None = None
    pushed: bool = False
    attempts: int = 0
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def to_json(self) -> dict[str, object]:
        return {
            "commit": self.commit,
            "branch": self.branch,
            "changes": [change.to_json() for change in self.changes],
            "message": self.message,
        }


# --- the clone ----------------------------------------------------------------------------


@contextmanager
def clone_environment(
    config: Config, environment: EnvironmentConfig, env: Mapping[str, str]
) -> Iterator[gitops.Git]:
    """A shallow clone of the environment's branch with only the files imagebot reads."""
    key = f"environments.{environment.name}.repo"
    url = gitops.remote_url(environment.repo, config.root, key)
    paths = [environment.file]
    if environment.promote_from:
        paths.append(config.environment(environment.promote_from).file)
    with tempfile.TemporaryDirectory(prefix="imagebot-gitops-") as tmp:
        yield gitops.clone(url, environment.branch, Path(tmp) / "repo", env, paths=paths)


@contextmanager
def checkout_in_background(
    config: Config, env_name: str, env: Mapping[str, str]
) -> Iterator[Future[gitops.Git]]:
    """Start the promotion's clone now; pass the future to promote(checkout=...).

    The release starts it before building, so the clone costs no time of its own. A clone
    that is stale by the time of the push is no problem: the push loop fetches and re-applies.
    The executor is shut down (the clone awaited) before the temporary directory is removed.
    """
    from concurrent.futures import ThreadPoolExecutor

    environment = config.environment(env_name)
    with ExitStack() as cleanup, ThreadPoolExecutor(1, "imagebot-checkout") as pool:
        yield pool.submit(cleanup.enter_context, clone_environment(config, environment, env))


def read_file(git: gitops.Git, environment: EnvironmentConfig) -> str:
    """The environment's file in the clone (a regular file inside it, UTF-8)."""
    try:
        return read_text(gitops.worktree_file(git, environment.file))
    except Unreadable as exc:
        if exc.missing:
            raise GitOpsError(
                f"{environment.file} does not exist on {environment.branch} of {redact(git.url)}",
                f"check environments.{environment.name}.file in imagebot.toml",
            ) from None
        raise YamlEditError(
            f"{environment.file}: {exc.reason}",
            f"point environments.{environment.name}.file at a UTF-8 HelmRelease file",
        ) from None


def current_refs(
    config: Config, env_name: str, *, env: Mapping[str, str] = os.environ
) -> dict[str, ImageRef]:
    """Image name -> the ref the environment's GitOps file holds now (first target per image)."""
    environment = config.environment(env_name)
    with clone_environment(config, environment, env) as git:
        return promote_plan.read_refs(read_file(git, environment), environment, environment.file)


# --- the new refs -------------------------------------------------------------------------


def open_registry(
    config: Config, registry: DigestLookup | None, env: Mapping[str, str]
) -> DigestLookup:
    """`registry` when given (tests pass a fake), else the configured registry."""
    if registry is not None:
        return registry
    from imagebot.registry import open_registry as open_configured  # late: it imports requests

    return open_configured(config, env)


def _build_refs(
    config: Config, images: Sequence[str], registry: DigestLookup
) -> dict[str, ImageRef]:
    """The current build's content-tag refs, pinned to the digest the registry has."""
    refs = {}
    for image in images:
        ref = content_ref(config, image)  # the base image's digest included
        digest = registry.digest(ref)
        if digest is None:
            raise RegistryError(
                f"{ref} is not in the registry", f"build and push it first: imagebot push {image}"
            )
        refs[image] = ref.with_digest(digest)
    return refs


def _source_refs(
    config: Config,
    environment: EnvironmentConfig,
    git: gitops.Git,
    registry: DigestLookup,
    env: Mapping[str, str],
) -> dict[str, ImageRef]:
    """Build once, promote many: the digest-pinned refs the source environment runs."""
    source = config.environment(environment.promote_from or "")
    if (source.repo, source.branch) == (environment.repo, environment.branch):
        refs = promote_plan.read_refs(read_file(git, source), source, source.file)
    else:
        with clone_environment(config, source, env) as source_git:
            refs = promote_plan.read_refs(read_file(source_git, source), source, source.file)
    refs = {image: ref for image, ref in refs.items() if image in environment.targets}
    for image, ref in refs.items():
        if not ref.digest:
            raise RegistryError(
                f"{source.name} runs {image} as {ref}, which has no digest",
                f"promote {source.name} with a digest-pinned ref first; "
                f"{environment.name} only takes digests",
            )
        if registry.digest(ImageRef(ref.name, None, ref.digest)) != ref.digest:
            raise RegistryError(
                f"{source.name} runs {image} as {ref}, but the registry does not have that digest",
                f"rebuild and push, then promote {source.name} again",
            )
    return refs


def resolve_refs(
    config: Config,
    environment: EnvironmentConfig,
    requested: Mapping[str, ImageRef | None] | None,
    git: gitops.Git,
    registry: DigestLookup | None,
    env: Mapping[str, str],
) -> dict[str, ImageRef]:
    """The refs to promote: explicit ones as given, the rest from the build or the source."""
    if environment.promote_from:
        explicit = {k: v for k, v in (requested or {}).items() if v is not None}
        if explicit:
            raise UsageError(
                f"{environment.name} promotes from {environment.promote_from}; "
                f"it takes no explicit refs ({', '.join(explicit)})",
                f"promote {environment.promote_from} instead, then {environment.name}",
            )
        lookup = open_registry(config, registry, env)
        refs = _source_refs(config, environment, git, lookup, env)
        wanted = set(requested or refs)
        return {image: ref for image, ref in refs.items() if image in wanted}
    requested = dict(requested) if requested else dict.fromkeys(environment.targets)
    for image in requested:
        promote_plan.targets_of(environment, image)
    missing = [image for image, ref in requested.items() if ref is None]
    built = _build_refs(config, missing, open_registry(config, registry, env)) if missing else {}
    return {image: ref or built[image] for image, ref in requested.items()}


# --- edit, commit, push --------------------------------------------------------------------


def _describer(config: Config, env: Mapping[str, str]) -> PackageDiff:
    from imagebot.impact import promotion_impact
    from imagebot.manifest import package_diff

    def describe(old: ImageRef, new: ImageRef) -> str:
        diff = package_diff(old, new, config=config, env=env)
        return promote_plan.with_impact(diff, promotion_impact(config, old, new, env))

    return describe


def _package_diffs(
    changes: Sequence[ImageChange], describe: PackageDiff
) -> dict[tuple[str, str], str]:
    """Best-effort package diffs; any failure reads "package diff unavailable"."""
    diffs = {}
    for change in changes:
        if change.old is None:
            continue
        try:
            diffs[(str(change.old), str(change.new))] = describe(change.old, change.new)
        except Exception:  # a diff is nice to have: never fail a promotion over it
            diffs[(str(change.old), str(change.new))] = NO_PACKAGE_DIFF
    return diffs


def promote(
    config: Config,
    env_name: str,
    new_refs: Mapping[str, ImageRef | None] | None = None,
    *,
    dry_run: bool = False,
    branch: str | None = None,
    env: Mapping[str, str] = os.environ,
    registry: DigestLookup | None = None,
    package_diff: PackageDiff | None = None,
    checkout: Future[gitops.Git] | None = None,
) -> PromoteResult:
    """Set the environment's image targets to new refs in its GitOps repo; commit and push.

    `new_refs` maps image name -> ref; a None ref (or `new_refs=None` for every image the
    environment deploys) means the current build's content-tag ref, pinned to the registry's
    digest. An environment with `promote_from` takes the source environment's digest-pinned
    refs instead (and refuses explicit refs, or a digest the registry does not have).

    Nothing to change -> no commit (`result.changed` is False). `dry_run` returns the diff and
    message of the same plan without committing. `branch` pushes to that new branch (for a
    pull request). `checkout` is a clone started earlier by checkout_in_background.
    `registry` and `package_diff` default to the configured registry and the image manifests.
    Raises GitOpsError (exit 12) for unreachable remotes, auth failures and pushes still
    rejected after gitops.PUSH_ATTEMPTS; YamlEditError (11) for a bad target; RegistryError (10).
    """
    environment = config.environment(env_name)
    clone = (
        nullcontext(checkout.result()) if checkout else clone_environment(config, environment, env)
    )
    with clone as git:
        refs = resolve_refs(config, environment, new_refs, git, registry, env)
        return apply_refs(
            config,
            environment,
            git,
            refs,
            verb="promote",
            dry_run=dry_run,
            branch=branch,
            env=env,
            package_diff=package_diff,
        )


@dataclass
class _Planner:
    """Plans the edit of the clone's file as it is now; package diffs are computed once."""

    git: gitops.Git
    environment: EnvironmentConfig
    refs: Mapping[str, ImageRef]
    verb: str
    revision: str
    describe: PackageDiff
    diffs: dict[tuple[str, str], str] = field(default_factory=dict)
    last: tuple[Plan, str] = (Plan("", "", "", ()), "")

    def plan(self) -> tuple[Plan, str]:
        """The plan and its commit message ("" when nothing changes)."""
        environment = self.environment
        text = read_file(self.git, environment)
        plan = promote_plan.plan(text, environment, self.refs, environment.file)
        new = [c for c in plan.changes if (str(c.old), str(c.new)) not in self.diffs]
        self.diffs.update(_package_diffs(new, self.describe))
        message = ""
        if plan.changes:
            message = promote_plan.commit_message(
                self.verb, environment.name, plan.changes, self.diffs, self.revision
            )
        self.last = (plan, message)
        return self.last

    def change(self) -> gitops.Change | None:
        """What the push loop commits; None when the file already holds every ref."""
        plan, message = self.plan()
        if not plan.changes:
            return None
        return gitops.Change({plan.file: plan.new_text}, message, self.environment.author)


def apply_refs(
    config: Config,
    environment: EnvironmentConfig,
    git: gitops.Git,
    refs: Mapping[str, ImageRef],
    *,
    verb: str,
    dry_run: bool,
    branch: str | None,
    env: Mapping[str, str],
    package_diff: PackageDiff | None,
) -> PromoteResult:
    """Plan the edit of the clone's file and, unless `dry_run`, commit and push it."""
    revision = gitops.source_revision(config.root, env)
    describe = package_diff or _describer(config, env)
    planner = _Planner(git, environment, refs, verb, revision, describe)
    result = PromoteResult(
        environment.name,
        environment.file,
        branch or environment.branch,
        (),
        "",
        "",
        dry_run=dry_run,
    )
    if dry_run:
        plan, message = planner.plan()
        return replace(result, changes=plan.changes, diff=plan.diff, message=message)
    landed = gitops.land(git, result.branch, planner.change, new_branch=branch is not None)
    result = replace(result, attempts=landed.attempts)
    if landed.commit is None:
        return result
    plan, message = planner.last
    return replace(
        result,
        changes=plan.changes,
        diff=plan.diff,
        message=message,
        commit=landed.commit,
        pushed=True,
    )
