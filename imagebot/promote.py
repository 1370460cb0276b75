"""Promotion through the GitOps repository: orchestration that returns dataclasses.

    promote(config, "staging", {"jupyterlab": ref})   -> PromoteResult   (edit, commit, push)
    promote(config, "prod", None)                    -> PromoteResult   (staging's digests)
    current_refs(config, "staging")                  -> {"jupyterlab": ImageRef, ...}
    status(config)                                   -> [EnvironmentStatus, ...]
    rollback(config, "staging")                      -> PromoteResult   (previous refs, new commit)

Every edit goes through `imagebot.yamledit` (byte-exact), every git operation through
`imagebot.gitops`. A push rejected because someone pushed first is retried: fetch, reset to the
remote tip, re-read the file, re-apply the same new refs, commit, push, with jittered bounded
backoff. Nothing here prints; the CLI renders the results.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from imagebot import gitops, yamledit
from imagebot.errors import (
    ConfigError,
    GitOpsError,
    ImagebotError,
    RegistryError,
    UsageError,
    YamlEditError,
)
from imagebot.files import write_atomically
from imagebot.tags import ImageRef, image_ref

if TYPE_CHECKING:
    from concurrent.futures import Future

    from imagebot.config import Config, EnvironmentConfig

PUSH_ATTEMPTS = 12
SKIP_CI = "[skip ci]"
NO_PACKAGE_DIFF = "package diff unavailable"
ROLLBACK_DEEPEN_STEPS = (20, 200, 2000)


class Registry(Protocol):
    """What promotion needs from imagebot.registry: the digest a reference resolves to."""

    def digest(self, ref: ImageRef) -> str | None:
        """The manifest digest, or None when the registry does not have `ref`."""
        ...


PackageDiff = Callable[[ImageRef, ImageRef], str]


@dataclass(frozen=True)
class ImageChange:
    """One target set to a new reference. `old` is None when the file had no readable ref."""

    image: str
    target: str  # dotted YAML path or policy:NS:NAME
    old: ImageRef | None
    new: ImageRef


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


@dataclass(frozen=True)
class RefStatus:
    image: str
    ref: ImageRef | None
    exists: bool | None  # None: unknown (registry unreachable) or no ref
    note: str = ""


@dataclass(frozen=True)
class EnvironmentStatus:
    environment: str
    file: str
    refs: tuple[RefStatus, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Seams:
    """Injection points: tests pass fakes, production uses the defaults.

    `before_push(clone_dir, attempt)` runs right before each push (tests push a competing
    commit there). `registry` answers digests; `package_diff(old, new)` describes packages.
    """

    before_push: Callable[[Path, int], None] | None = None
    registry: Registry | None = None
    package_diff: PackageDiff | None = None
    sleep: Callable[[float], None] | None = None


# --- pure parts --------------------------------------------------------------------------


def plan_edit(
    text: str,
    environment: EnvironmentConfig,
    new_refs: Mapping[str, ImageRef],
    origin: str,
) -> tuple[str, tuple[ImageChange, ...]]:
    """Apply every target of every image in `new_refs`; the new text and what changed."""
    changes: list[ImageChange] = []
    for image, ref in new_refs.items():
        for target in targets_of(environment, image):
            old = _read_or_none(text, target, origin)
            result = yamledit.set_image(text, target, ref, origin)
            if result.changed:
                text = result.text
                changes.append(ImageChange(image, target, old, ref))
    return text, tuple(changes)


def targets_of(environment: EnvironmentConfig, image: str) -> tuple[str, ...]:
    try:
        return environment.targets[image]
    except KeyError:
        known = ", ".join(environment.targets) or "none"
        raise ConfigError(
            f"environment {environment.name!r} has no target for image {image!r}",
            f"images it deploys: {known}; add it to environments.{environment.name}.targets",
        ) from None


def _read_or_none(text: str, target: str, origin: str) -> ImageRef | None:
    try:
        return yamledit.read_image(text, target, origin)
    except ImagebotError:
        return None


def read_refs(text: str, environment: EnvironmentConfig, origin: str) -> dict[str, ImageRef]:
    """The ref each image's first target holds in `text`."""
    return {
        image: yamledit.read_image(text, targets[0], origin)
        for image, targets in environment.targets.items()
        if targets
    }


def unified_diff(old: str, new: str, path: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def commit_message(
    verb: str,
    environment: str,
    changes: Sequence[ImageChange],
    package_diffs: Mapping[tuple[str, str], str],
    source_revision: str,
) -> str:
    """Subject names images and environment; body: old -> new per target, package diffs, source."""
    images = list(dict.fromkeys(change.image for change in changes))
    subject = f"imagebot: {verb} {', '.join(images)} in {environment} {SKIP_CI}"
    body = []
    for change in changes:
        body.append(f"{change.image} ({change.target}):")
        body.append(f"  {change.old or '(unset)'}")
        body.append(f"  -> {change.new}")
    seen: set[tuple[str, str]] = set()
    for change in changes:
        key = (str(change.old), str(change.new))
        if key in seen or change.old is None:
            continue
        seen.add(key)
        body += ["", f"Package diff for {change.image}:", package_diffs.get(key, NO_PACKAGE_DIFF)]
    body += ["", f"Source revision: {source_revision}"]
    return subject + "\n\n" + "\n".join(body).rstrip() + "\n"


def parse_image_args(args: Sequence[str]) -> dict[str, ImageRef | None]:
    """`IMAGE` or `IMAGE=REF` command-line arguments; None means "the current build's ref"."""
    refs: dict[str, ImageRef | None] = {}
    for arg in args:
        image, sep, ref = arg.partition("=")
        if not image or (sep and not ref):
            raise UsageError(f"invalid image argument {arg!r}", "write IMAGE or IMAGE=REF")
        refs[image] = ImageRef.parse(ref) if sep else None
    return refs


# --- I/O orchestration -------------------------------------------------------------------


@contextmanager
def _checkout(
    config: Config, environment: EnvironmentConfig, env: Mapping[str, str]
) -> Iterator[gitops.Git]:
    """A shallow clone of the environment's branch with only the files imagebot reads."""
    url = gitops.remote_url(environment.repo, config.root)
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
        yield pool.submit(cleanup.enter_context, _checkout(config, environment, env))


def _read_file(git: gitops.Git, environment: EnvironmentConfig) -> str:
    path = git.cwd / environment.file
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise GitOpsError(
            f"{environment.file} does not exist on {environment.branch} of "
            f"{gitops.redact(git.url)}",
            f"check environments.{environment.name}.file in imagebot.toml",
        ) from None
    except UnicodeDecodeError:
        raise YamlEditError(
            f"{environment.file} is not UTF-8 text", "imagebot edits UTF-8 YAML files only"
        ) from None


def _open_registry(config: Config, seams: Seams, env: Mapping[str, str]) -> Registry:
    if seams.registry is not None:
        return seams.registry
    from imagebot.registry import open_registry  # late: it imports requests

    return open_registry(config, env)


def _package_diffs(
    changes: Sequence[ImageChange], seams: Seams, config: Config, env: Mapping[str, str]
) -> dict[tuple[str, str], str]:
    """Best-effort package diffs; any failure reads "package diff unavailable"."""
    describe = seams.package_diff
    if describe is None:
        from imagebot.manifest import package_diff

        def describe(old: ImageRef, new: ImageRef) -> str:
            return package_diff(old, new, config=config, env=env).rstrip("\n")

    diffs = {}
    for change in changes:
        if change.old is None:
            continue
        try:
            diffs[(str(change.old), str(change.new))] = describe(change.old, change.new)
        except Exception:  # a diff is nice to have: never fail a promotion over it
            diffs[(str(change.old), str(change.new))] = NO_PACKAGE_DIFF
    return diffs


def _build_refs(
    config: Config, images: Sequence[str], seams: Seams, env: Mapping[str, str]
) -> dict[str, ImageRef]:
    """The current build's content-tag refs, pinned to the digest the registry has."""
    registry = _open_registry(config, seams, env)
    refs = {}
    for image in images:
        ref = image_ref(config, image)
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
    seams: Seams,
    env: Mapping[str, str],
) -> dict[str, ImageRef]:
    """Build once, promote many: the digest-pinned refs the source environment runs."""
    source = config.environment(environment.promote_from or "")
    same_repo = (source.repo, source.branch) == (environment.repo, environment.branch)
    if same_repo:
        refs = read_refs(_read_file(git, source), source, source.file)
    else:
        with _checkout(config, source, env) as source_git:
            refs = read_refs(_read_file(source_git, source), source, source.file)
    refs = {image: ref for image, ref in refs.items() if image in environment.targets}
    registry = _open_registry(config, seams, env)
    for image, ref in refs.items():
        if not ref.digest:
            raise RegistryError(
                f"{source.name} runs {image} as {ref}, which has no digest",
                f"promote {source.name} with a digest-pinned ref first; "
                f"{environment.name} only takes digests",
            )
        found = registry.digest(ImageRef(ref.name, None, ref.digest))
        if found != ref.digest:
            raise RegistryError(
                f"{source.name} runs {image} as {ref}, but the registry does not have that digest",
                f"rebuild and push, then promote {source.name} again",
            )
    return refs


def _new_refs(
    config: Config,
    environment: EnvironmentConfig,
    requested: Mapping[str, ImageRef | None] | None,
    git: gitops.Git,
    seams: Seams,
    env: Mapping[str, str],
) -> dict[str, ImageRef]:
    if environment.promote_from:
        explicit = {k: v for k, v in (requested or {}).items() if v is not None}
        if explicit:
            raise UsageError(
                f"{environment.name} promotes from {environment.promote_from}; "
                f"it takes no explicit refs ({', '.join(explicit)})",
                f"promote {environment.promote_from} instead, then {environment.name}",
            )
        refs = _source_refs(config, environment, git, seams, env)
        wanted = set(requested or refs)
        return {image: ref for image, ref in refs.items() if image in wanted}
    requested = dict(requested) if requested else dict.fromkeys(environment.targets)
    for image in requested:
        targets_of(environment, image)
    missing = [image for image, ref in requested.items() if ref is None]
    built = _build_refs(config, missing, seams, env) if missing else {}
    return {image: ref or built[image] for image, ref in requested.items()}


@dataclass
class _Attempt:
    """Mutable state of the push loop."""

    number: int = 0
    text: str = ""
    new_text: str = ""
    changes: tuple[ImageChange, ...] = ()
    commit: str | None = None
    diffs: dict[tuple[str, str], str] = field(default_factory=dict)


class _Stale(Exception):
    """The push lost a race; the loop fetches and re-applies."""


def _commit_and_push(
    config: Config,
    env: Mapping[str, str],
    git: gitops.Git,
    environment: EnvironmentConfig,
    new_refs: Mapping[str, ImageRef],
    *,
    verb: str,
    branch: str | None,
    source_revision: str,
    seams: Seams,
) -> tuple[_Attempt, str]:
    """Edit, commit, push; on a lost race fetch, reset, re-apply and retry (bounded, jittered)."""
    import tenacity

    state = _Attempt()
    target_branch = branch or environment.branch
    message = ""

    def attempt() -> None:
        nonlocal message
        state.number += 1
        state.commit = None
        if state.number > 1:
            gitops.fetch_reset(git, environment.branch)
        state.text = _read_file(git, environment)
        state.new_text, state.changes = plan_edit(
            state.text, environment, new_refs, environment.file
        )
        if not state.changes:
            return
        missing = [c for c in state.changes if (str(c.old), str(c.new)) not in state.diffs]
        state.diffs.update(_package_diffs(missing, seams, config, env))
        message = commit_message(
            verb, environment.name, state.changes, state.diffs, source_revision
        )
        write_atomically({git.cwd / environment.file: state.new_text})
        state.commit = gitops.commit_all(git, [environment.file], message, environment.author)
        if seams.before_push:
            seams.before_push(git.cwd, state.number)
        outcome = gitops.push(git, target_branch, new_branch=branch is not None)
        if outcome is gitops.PushOutcome.STALE:
            raise _Stale()

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_Stale),
        stop=tenacity.stop_after_attempt(PUSH_ATTEMPTS),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=2.0),
        sleep=seams.sleep or tenacity.nap.sleep,
        reraise=True,
    )
    try:
        retrying(attempt)
    except _Stale:
        raise GitOpsError(
            f"push to {environment.branch} of {gitops.redact(git.url)} was rejected "
            f"{PUSH_ATTEMPTS} times: others keep pushing first",
            "run the promotion again; nothing was pushed",
        ) from None
    return state, message


def promote(
    config: Config,
    env_name: str,
    new_refs: Mapping[str, ImageRef | None] | None = None,
    *,
    dry_run: bool = False,
    branch: str | None = None,
    env: Mapping[str, str] = os.environ,
    seams: Seams = Seams(),
    checkout: Future[gitops.Git] | None = None,
) -> PromoteResult:
    """Set the environment's image targets to new refs in its GitOps repo; commit and push.

    `new_refs` maps image name -> ref; a None ref (or `new_refs=None` for every image the
    environment deploys) means the current build's content-tag ref, pinned to the registry's
    digest. An environment with `promote_from` takes the source environment's digest-pinned
    refs instead (and refuses explicit refs, or a digest the registry does not have).

    Shallow single-branch clone into a temporary directory; nothing to change -> no commit
    (`result.changed` is False). `dry_run` returns the diff and message without committing.
    `branch` pushes to that new branch (for a pull request) instead of the environment's.
    `checkout` is a clone started earlier by checkout_in_background.
    Raises GitOpsError (exit 12) for unreachable remotes, auth failures and pushes still
    rejected after PUSH_ATTEMPTS; YamlEditError (11) for a bad target; RegistryError (10).
    """
    environment = config.environment(env_name)
    clone = nullcontext(checkout.result()) if checkout else _checkout(config, environment, env)
    with clone as git:
        refs = _new_refs(config, environment, new_refs, git, seams, env)
        return _apply(
            config,
            environment,
            git,
            refs,
            verb="promote",
            dry_run=dry_run,
            branch=branch,
            env=env,
            seams=seams,
        )


def _apply(
    config: Config,
    environment: EnvironmentConfig,
    git: gitops.Git,
    refs: Mapping[str, ImageRef],
    *,
    verb: str,
    dry_run: bool,
    branch: str | None,
    env: Mapping[str, str],
    seams: Seams,
) -> PromoteResult:
    source_revision = gitops.source_revision(config.root, env)
    result = PromoteResult(
        environment=environment.name,
        file=environment.file,
        branch=branch or environment.branch,
        changes=(),
        diff="",
        message="",
        dry_run=dry_run,
    )
    if dry_run:
        text = _read_file(git, environment)
        new_text, changes = plan_edit(text, environment, refs, environment.file)
        if not changes:
            return result
        diffs = _package_diffs(changes, seams, config, env)
        message = commit_message(verb, environment.name, changes, diffs, source_revision)
        diff = unified_diff(text, new_text, environment.file)
        return replace(result, changes=changes, diff=diff, message=message)
    state, message = _commit_and_push(
        config,
        env,
        git,
        environment,
        refs,
        verb=verb,
        branch=branch,
        source_revision=source_revision,
        seams=seams,
    )
    if not state.changes:
        return replace(result, attempts=state.number)
    return replace(
        result,
        changes=state.changes,
        diff=unified_diff(state.text, state.new_text, environment.file),
        message=message,
        commit=state.commit,
        pushed=True,
        attempts=state.number,
    )


def current_refs(
    config: Config, env_name: str, *, env: Mapping[str, str] = os.environ
) -> dict[str, ImageRef]:
    """Image name -> the ref the environment's GitOps file holds now (first target per image)."""
    environment = config.environment(env_name)
    with _checkout(config, environment, env) as git:
        return read_refs(_read_file(git, environment), environment, environment.file)


def status(
    config: Config, *, env: Mapping[str, str] = os.environ, seams: Seams = Seams()
) -> list[EnvironmentStatus]:
    """Per environment: the refs it runs and whether the registry has them.

    An unreachable registry gives `exists=None` and a warning instead of failing.
    """
    statuses = []
    registry: Registry | None = None
    registry_error: str | None = None
    for name, environment in config.environments.items():
        refs = current_refs(config, name, env=env)
        rows, warnings = [], []
        for image, ref in refs.items():
            if registry is None and registry_error is None:
                try:
                    registry = _open_registry(config, seams, env)
                except ImagebotError as exc:
                    registry_error = exc.message
            row = _ref_status(image, ref, registry)
            rows.append(row)
            if row.exists is None and registry is not None:
                registry, registry_error = None, row.note  # unreachable: stop asking
        if registry_error:
            warnings.append(f"registry unavailable: {registry_error}; existence unknown")
        else:
            warnings += [f"{row.image}: {row.note}" for row in rows if row.exists is None]
        statuses.append(EnvironmentStatus(name, environment.file, tuple(rows), tuple(warnings)))
    return statuses


def _ref_status(image: str, ref: ImageRef, registry: Registry | None) -> RefStatus:
    from imagebot.errors import RegistryAuthError

    if registry is None:
        return RefStatus(image, ref, None, "registry unavailable")
    lookup = ImageRef(ref.name, None, ref.digest) if ref.digest else ref
    try:
        found = registry.digest(lookup)
    except RegistryAuthError as exc:
        return RefStatus(image, ref, None, f"unknown: {exc.message}")
    except RegistryError as exc:
        if _is_missing(exc):
            return RefStatus(image, ref, False, "not in the registry")
        return RefStatus(image, ref, None, f"unknown: {exc.message}")
    if found is None:
        return RefStatus(image, ref, False, "not in the registry")
    if ref.digest and found != ref.digest:
        return RefStatus(image, ref, False, f"registry has {found}")
    return RefStatus(image, ref, True, found)


def _is_missing(exc: RegistryError) -> bool:
    text = exc.message.lower()
    return any(word in text for word in ("not found", "unknown", "does not exist", "404"))


def rollback(
    config: Config,
    env_name: str,
    *,
    dry_run: bool = False,
    branch: str | None = None,
    env: Mapping[str, str] = os.environ,
    seams: Seams = Seams(),
) -> PromoteResult:
    """Restore the refs the environment's file held before its current ones, as a new commit.

    Walks the file's git history (deepening the shallow clone as needed) to the newest commit
    whose refs differ from the current ones, and sets those refs with byte-exact edits, so
    unrelated changes made to the file since then are kept.
    """
    environment = config.environment(env_name)
    with _checkout(config, environment, env) as git:
        current = read_refs(_read_file(git, environment), environment, environment.file)
        previous = _previous_refs(git, environment, current)
        return _apply(
            config,
            environment,
            git,
            previous,
            verb="roll back",
            dry_run=dry_run,
            branch=branch,
            env=env,
            seams=seams,
        )


def _previous_refs(
    git: gitops.Git, environment: EnvironmentConfig, current: Mapping[str, ImageRef]
) -> dict[str, ImageRef]:
    checked: set[str] = set()
    steps = iter(ROLLBACK_DEEPEN_STEPS)
    while True:
        for sha in gitops.file_commits(git, environment.file):
            if sha in checked:
                continue
            checked.add(sha)
            text = gitops.file_at(git, sha, environment.file)
            refs = _refs_or_none(text, environment, sha)
            if refs is not None and refs != dict(current):
                return {image: ref for image, ref in refs.items() if current.get(image) != ref}
        by = next(steps, 0)
        if not gitops.deepen(git, environment.branch, by or 1_000_000):
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
