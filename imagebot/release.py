"""Orchestration of `imagebot release ENV`: the whole path as one idempotent run.

verify (check, lock --check, render --check) -> audit -> index -> build -> test -> push -> promote.

A fresh environment (staging) gets the images built from the current tree: an image whose
content tag is already in the registry is neither rebuilt, re-tested nor re-pushed (it was
tested before its first push). Nothing is built from a tree whose locked or index-only versions
fail `imagebot audit` against `[advisories] source` (exit 15). An environment with `promote_from` (prod) builds nothing: it
takes the digest-pinned refs its source environment runs. When `[index] publish` is set, a
fresh environment's release builds the vetted index incrementally and publishes it before any
image is promoted, so a promoted image never points pods at an index without its own pins.
Returns a ReleaseResult; no typer,
no printing beyond the reporter's progress lines.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from imagebot.config import Config

if TYPE_CHECKING:
    from imagebot.build import ImageOutcome, Reporter
    from imagebot.manifest import ImagePackages
    from imagebot.promote import PromoteResult
    from imagebot.publish import PublishResult
    from imagebot.tags import ImageRef

Verification = tuple[str, Callable[[], None]]


@dataclass(frozen=True)
class StageTime:
    name: str
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class ReleaseResult:
    environment: str
    gitops_repo: str
    gitops_file: str
    images: tuple[ImageOutcome, ...]
    tested: tuple[str, ...]
    promotion: PromoteResult | None
    timings: tuple[StageTime, ...]
    refs: Mapping[str, str] = field(default_factory=dict)
    index: IndexRelease | None = None
    audit: str = ""  # the audit's summary line, or why it did not run

    @property
    def built(self) -> tuple[str, ...]:
        return tuple(o.image for o in self.images if o.built)

    def to_json(self) -> dict[str, object]:
        return {
            "environment": self.environment,
            "gitops_repo": self.gitops_repo,
            "gitops_file": self.gitops_file,
            "refs": dict(self.refs),
            "images": [o.to_json() for o in self.images],
            "tested": list(self.tested),
            "promotion": None if self.promotion is None else self.promotion.to_json(),
            "timings": {t.name: round(t.seconds, 2) for t in self.timings},
            "index": None if self.index is None else self.index.to_json(),
            "audit": self.audit or None,
        }

    def summary_lines(self) -> list[str]:
        """The human summary: images, tags, digests, promotion commit, package diff, timings."""
        lines = [f"release {self.environment}: summary"]
        if self.audit:
            lines.append(f"  {self.audit}")
        for outcome in self.images:
            if outcome.built:
                what = "built, tested and pushed"
            elif outcome.ref.digest:
                what = "already in the registry"
            else:
                what = "not built"
            lines.append(f"  {outcome.image:<12} {outcome.ref.with_digest(None)}")
            lines.append(f"  {'':<12} digest {outcome.ref.digest or '-'} ({what})")
        if self.index is not None:
            lines.append(self.index.summary_line())
        promotion = self.promotion
        if promotion is None or not promotion.changed:
            lines.append(f"  promotion: nothing to change in {self.gitops_file}; no commit")
        else:
            lines.append(f"  promotion: commit {promotion.commit} on {promotion.branch}")
            lines.extend(f"    {line}" for line in promotion.message.rstrip().splitlines())
        timing = ", ".join(f"{t.name} {t.seconds:.1f}s" for t in self.timings)
        total = sum(t.seconds for t in self.timings)
        lines.append(f"  time: {timing}; total {total:.1f}s")
        return lines


@dataclass(frozen=True)
class IndexRelease:
    """The index stage: an incremental build, then the publish, before any promotion."""

    destination: str
    build_seconds: float
    downloaded: int
    publish: PublishResult

    def summary_line(self) -> str:
        published = self.publish
        if not published.touched:
            return f"  index:       {self.destination} is up to date; nothing uploaded"
        uploaded = len(published.added) + len(published.changed)
        return (
            f"  index:       published to {self.destination}: {published.changes.summary()} "
            f"({uploaded} objects uploaded, {len(published.removed)} removed, "
            f"{published.bytes_uploaded / 1e6:.1f} MB)"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "destination": self.destination,
            "build_seconds": round(self.build_seconds, 2),
            "downloaded": self.downloaded,
            "publish": self.publish.to_json(),
        }


def release_index(
    config: Config, env: Mapping[str, str], echo: Callable[[str], None]
) -> IndexRelease:
    """Build the vetted index incrementally in the index cache and publish it.

    An empty cache starts from the published manifest (closures kept, files downloaded)."""
    from imagebot.destinations import index_cache_dir, publish_out, seed_from_published
    from imagebot.index import build_vetted_index
    from imagebot.publish import PublishOptions

    destination = config.index.publish
    out = index_cache_dir(env)
    if seed_from_published(out, destination, config.root):
        echo(f"index: {out} starts from the manifest published at {destination}")
    built = build_vetted_index(config, out, env=env, echo=echo)
    published = publish_out(
        out, destination, config.root, PublishOptions(echo=echo, log_steps=False)
    )
    return IndexRelease(destination, built.seconds, built.downloaded, published)


ABSENT_SOURCE_NOTE = "advisories: source absent, not checked"


def release_audit(config: Config, echo: Callable[[str], None]) -> str:
    """`imagebot audit` of the locked and index-only versions; returns its summary line.

    Raises VulnerabilityError (exit 15) on a finding that is not waived or an expired waiver.
    A directory source that does not exist is skipped only when `[advisories] optional` says so
    (the local profile on a machine without the checkout): the note says nothing was checked.
    """
    from datetime import UTC, datetime

    from imagebot.audit import audit, audit_failure, packages_to_audit
    from imagebot.osv import source_for
    from imagebot.waivers import load_waivers

    location = config.advisories.source
    if (
        config.advisories.optional
        and "://" not in location
        and not (config.root / location).exists()
    ):
        note = f"{ABSENT_SOURCE_NOTE} ({location} does not exist; [advisories] optional = true)"
        echo(note)
        return note
    waivers = load_waivers(config.requirements_dir)
    source = source_for(location, config.root, on_retry=echo)
    result = audit(packages_to_audit(config), source, waivers, datetime.now(UTC).date())
    for line in result.report_lines():
        echo(line)
    if not result.passed:
        raise audit_failure(result)
    return result.summary_line()


class _Clock:
    def __init__(self) -> None:
        self.timings: list[StageTime] = []

    @contextmanager
    def stage(self, name: str, reporter: Reporter) -> Iterator[None]:
        start = time.monotonic()
        with reporter.stage(name):
            yield
        self.timings.append(StageTime(name, time.monotonic() - start))


def release(
    config: Config,
    env_name: str,
    verifications: Sequence[Verification],
    *,
    force: bool = False,
    env: Mapping[str, str] | None = None,
    reporter: Reporter | None = None,
) -> ReleaseResult:
    """Run the whole path for one environment and return what happened."""
    from imagebot.build import QuietReporter
    from imagebot.promote import checkout_in_background, promote

    env = os.environ if env is None else env
    reporter = reporter or QuietReporter()
    environment = config.environment(env_name)
    clock = _Clock()

    outcomes: list[ImageOutcome] = []
    tested: list[str] = []
    new_refs: dict[str, ImageRef | None] | None = None
    index: IndexRelease | None = None
    audited = ""
    with ExitStack() as stack:
        checkout = None
        if environment.promote_from is None:
            for name, verify in verifications:
                with clock.stage(name, reporter):
                    verify()
            with clock.stage("audit", reporter):
                audited = release_audit(config, reporter.line)
            # The promotion's clone runs while the images build and are tested.
            checkout = stack.enter_context(checkout_in_background(config, env_name, env))
            if config.index.publish:
                with clock.stage("index", reporter):
                    index = release_index(config, env, reporter.line)
            names = list(environment.targets)
            outcomes = _build_test_push(config, names, force, env, reporter, clock, tested)
            new_refs = {o.image: o.ref for o in outcomes}
        with clock.stage(f"promote {env_name}", reporter):
            promotion = promote(config, env_name, new_refs, env=env, checkout=checkout)
    refs = {c.image: str(c.new) for c in promotion.changes}
    refs.update({o.image: str(o.ref) for o in outcomes})
    if not refs:
        from imagebot.promote import current_refs

        refs = {name: str(ref) for name, ref in current_refs(config, env_name, env=env).items()}
    return ReleaseResult(
        environment=env_name,
        gitops_repo=_repo_location(config, environment.repo),
        gitops_file=environment.file,
        images=tuple(outcomes),
        tested=tuple(tested),
        promotion=promotion,
        timings=tuple(clock.timings),
        refs=refs,
        index=index,
        audit=audited,
    )


def _build_test_push(
    config: Config,
    names: Sequence[str],
    force: bool,
    env: Mapping[str, str],
    reporter: Reporter,
    clock: _Clock,
    tested: list[str],
) -> list[ImageOutcome]:
    from imagebot.build import BuildOptions, build_images, push_refs
    from imagebot.smoke import smoke_test

    with clock.stage("build", reporter):
        outcomes = build_images(
            config, names, BuildOptions(force=force), env=env, reporter=reporter
        )
    fresh = [o.image for o in outcomes if o.built]
    if not fresh:
        return outcomes
    manifests: dict[str, ImagePackages | None] = {}
    with clock.stage("test", reporter):
        for name in fresh:
            report = smoke_test(config, name, env=env)
            for line in report.lines():
                reporter.line(line)
            report.raise_for_failures()
            tested.append(name)
            manifests[name] = report.manifest
    with clock.stage("push", reporter):
        pushed = {o.image: o for o in push_refs(config, fresh, env=env, reporter=reporter)}
    _remember_manifests(pushed, manifests, env)
    return [
        replace(o, ref=pushed[o.image].ref, pushed=True) if o.image in pushed else o
        for o in outcomes
    ]


def _remember_manifests(
    pushed: Mapping[str, ImageOutcome],
    manifests: Mapping[str, ImagePackages | None],
    env: Mapping[str, str],
) -> None:
    """The smoke test listed each image's packages; keep them under the pushed digest, so the
    promotion's package diff needs no container run of its own."""
    from imagebot.manifest import remember

    for name, outcome in pushed.items():
        manifest = manifests.get(name)
        if manifest is not None and outcome.ref.digest:
            remember(outcome.ref.digest, manifest, env)


def _repo_location(config: Config, repo: str) -> str:
    """Local paths are shown absolute (relative ones are relative to imagebot.toml)."""
    if "://" in repo or repo.startswith("git@"):
        from imagebot.redaction import redact

        return redact(repo)
    return str((config.root / repo).resolve())
