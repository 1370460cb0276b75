"""Publishing a built index: what to upload, in which order, and what to delete.

The plan is pure: it compares the objects of a local index (`imagebot index build OUT`) with
the destination's listing, by sha256, and orders the work so that a client reading during a
publish never gets a page that links a missing file:

    1. files/<wheel>                       new and changed distributions
    2. simple/<project>/index.html|.json   project pages (they link files of step 1)
    3. simple/index.html|.json             root pages (they link the pages of step 2)
    4. imagebot-index.json                 the manifest: what the index now holds
    5. removals, last: project pages no longer linked by the root, then files no longer linked

`execute` runs a plan against a `Destination` port (imagebot.destinations has a local directory
and a Google Cloud Storage bucket), each step retried on transient faults by the one retry
policy. Every step is idempotent, so a publish interrupted anywhere is finished by running it
again; objects that already match are never touched, so a publish with nothing to change
uploads nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from imagebot import validate
from imagebot.cran import CRAN_DIR, repository_object
from imagebot.errors import PackageIndexError, TransientError
from imagebot.index_pages import FILES_DIR, MANIFEST_NAME, SIMPLE_DIR, IndexManifest

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

GCS_SCHEME = "gs://"
# A project directory or file name as `index build` writes them: no dot files, no separators.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*", re.ASCII)
_PAGES = ("index.html", "index.json")
STEP_ATTEMPTS = 5
T = TypeVar("T")


class Phase(IntEnum):
    """Where an object of the index goes in the upload order."""

    FILES = 0
    PROJECTS = 1
    ROOT = 2
    MANIFEST = 3


def phase_of(key: str) -> Phase | None:
    """The phase of an index object's key (`files/x.whl`), None for a key no index holds."""
    parts = key.split("/")
    if parts == [MANIFEST_NAME]:
        return Phase.MANIFEST
    if parts[0] == CRAN_DIR:  # the R repository: tarballs first, then the PACKAGES listing them
        kind = repository_object(key)
        return None if kind is None else (Phase.FILES if kind == "file" else Phase.ROOT)
    if len(parts) == 2 and parts[0] == FILES_DIR and _NAME.fullmatch(parts[1]):
        return Phase.FILES
    if len(parts) == 2 and parts[0] == SIMPLE_DIR and parts[1] in _PAGES:
        return Phase.ROOT
    if (
        len(parts) == 3
        and parts[0] == SIMPLE_DIR
        and _NAME.fullmatch(parts[1])
        and parts[2] in _PAGES
    ):
        return Phase.PROJECTS
    return None


# --- destinations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DestinationSpec:
    """Where `[index] publish` points: a bucket and prefix, or a local directory."""

    bucket: str | None  # None: a local directory
    path: str  # the prefix inside the bucket ("" for the bucket's root), or the directory

    @property
    def url(self) -> str:
        if self.bucket is None:
            return self.path
        return f"{GCS_SCHEME}{self.bucket}/{self.path}".rstrip("/")


def parse_destination(text: str) -> DestinationSpec:
    """`gs://bucket/prefix` or a directory path, checked by `validate.publish_destination`
    (raises its InvalidValue, a ValueError, when malformed)."""
    validate.publish_destination(text)
    if text.startswith(GCS_SCHEME):
        bucket, _, prefix = text[len(GCS_SCHEME) :].partition("/")
        return DestinationSpec(bucket, prefix.rstrip("/"))
    return DestinationSpec(None, text.rstrip("/") or "/")


# --- model -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One object of an index, local or at the destination."""

    key: str  # path relative to the index root, '/'-separated
    sha256: str | None  # None: the destination cannot say (written by another tool)
    size: int


@dataclass(frozen=True)
class Step:
    action: str  # "add" | "change" | "remove"
    key: str
    size: int


@dataclass(frozen=True)
class PublishPlan:
    """Batches of steps, in order. The steps of one batch are independent of each other."""

    batches: tuple[tuple[Step, ...], ...]
    unchanged: int

    @property
    def steps(self) -> list[Step]:
        return [step for batch in self.batches for step in batch]

    def keys(self, action: str) -> tuple[str, ...]:
        return tuple(step.key for step in self.steps if step.action == action)

    @property
    def bytes_to_upload(self) -> int:
        return sum(step.size for step in self.steps if step.action != "remove")


def foreign_keys(remote: Iterable[str]) -> list[str]:
    """Objects at the destination that are no part of an index (publish would not own them)."""
    return sorted(key for key in remote if phase_of(key) is None)


def plan_publish(local: Mapping[str, Entry], remote: Mapping[str, Entry]) -> PublishPlan:
    """Upload what differs (files, project pages, root pages, manifest), then remove the rest.

    `local` must hold only index keys (phase_of is not None) and a manifest; `remote` objects
    that are no part of an index must have been refused by the caller (foreign_keys).
    """
    uploads: dict[Phase, list[Step]] = {phase: [] for phase in Phase}
    unchanged = 0
    for key in sorted(local):
        entry = local[key]
        phase = phase_of(key)
        if phase is None:
            raise ValueError(f"{key} is not an index object")
        old = remote.get(key)
        if old is None:
            uploads[phase].append(Step("add", key, entry.size))
        elif old.sha256 is None or old.sha256 != entry.sha256 or old.size != entry.size:
            uploads[phase].append(Step("change", key, entry.size))
        else:
            unchanged += 1
    gone = sorted(key for key in remote if key not in local and phase_of(key) is not None)
    pages_gone = tuple(Step("remove", k, 0) for k in gone if phase_of(k) != Phase.FILES)
    files_gone = tuple(Step("remove", k, 0) for k in gone if phase_of(k) == Phase.FILES)
    batches = [tuple(uploads[phase]) for phase in Phase] + [pages_gone, files_gone]
    return PublishPlan(tuple(batch for batch in batches if batch), unchanged)


@dataclass(frozen=True)
class IndexChanges:
    """What a publish changes for users: projects and name==version pins."""

    projects_added: tuple[str, ...] = ()
    projects_removed: tuple[str, ...] = ()
    versions_added: tuple[str, ...] = ()
    versions_removed: tuple[str, ...] = ()

    def summary(self, shown: int = 8) -> str:
        """One line: counts, then the first `shown` versions added and removed."""
        parts = [
            f"{label} {', '.join(items[:shown])}"
            + (f" and {len(items) - shown} more" if len(items) > shown else "")
            for label, items in (
                ("+", self.versions_added),
                ("-", self.versions_removed),
            )
            if items
        ]
        projects = (
            f"projects +{len(self.projects_added)} -{len(self.projects_removed)}, "
            f"versions +{len(self.versions_added)} -{len(self.versions_removed)}"
        )
        return f"{projects}" + (f": {'; '.join(parts)}" if parts else "")

    def to_json(self) -> dict[str, list[str]]:
        return {
            "projects_added": list(self.projects_added),
            "projects_removed": list(self.projects_removed),
            "versions_added": list(self.versions_added),
            "versions_removed": list(self.versions_removed),
        }


def index_changes(old: IndexManifest | None, new: IndexManifest) -> IndexChanges:
    """The projects and versions `new` adds to or removes from `old` (None: an empty index)."""
    before = {(p.pin.name, p.version) for p in old.packages} if old else set()
    after = {(p.pin.name, p.version) for p in new.packages}
    names_before = {name for name, _ in before}
    names_after = {name for name, _ in after}
    return IndexChanges(
        projects_added=tuple(sorted(names_after - names_before)),
        projects_removed=tuple(sorted(names_before - names_after)),
        versions_added=tuple(f"{n}=={v}" for n, v in sorted(after - before)),
        versions_removed=tuple(f"{n}=={v}" for n, v in sorted(before - after)),
    )


# --- ports and results -------------------------------------------------------------------------


class Destination(Protocol):
    """Where an index is published. Each method is idempotent; transient faults raise
    errors.TransientError, everything else PackageIndexError."""

    url: str

    def list(self) -> dict[str, Entry]: ...

    def read(self, key: str) -> bytes | None: ...

    def upload(self, key: str, source: Path, sha256: str) -> None:
        """Write `source` as `key`, atomically; refuse it when its sha256 is not `sha256`."""
        ...

    def remove(self, key: str) -> None: ...

    def close(self) -> None:
        """Finish up (a local directory records the hashes it now holds)."""
        ...


@dataclass(frozen=True)
class LocalIndex:
    """A built index on disk: its objects with their hashes, and its manifest."""

    root: Path
    entries: Mapping[str, Entry]
    manifest: IndexManifest

    def path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))


@dataclass(frozen=True)
class PublishResult:
    source: str
    destination: str
    dry_run: bool
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: int
    bytes_uploaded: int
    changes: IndexChanges
    seconds: float
    retries: int = 0
    phases: Mapping[str, float] = field(default_factory=dict)

    @property
    def touched(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "destination": self.destination,
            "dry_run": self.dry_run,
            "added": list(self.added),
            "changed": list(self.changed),
            "removed": list(self.removed),
            "unchanged": self.unchanged,
            "bytes_uploaded": self.bytes_uploaded,
            "index_changes": self.changes.to_json(),
            "seconds": round(self.seconds, 3),
            "retries": self.retries,
            "phases": {name: round(seconds, 3) for name, seconds in self.phases.items()},
        }

    def summary_lines(self) -> list[str]:
        verb = "would publish" if self.dry_run else "published"
        if not self.touched:
            return [
                f"index publish: {self.destination} is up to date "
                f"({self.unchanged} objects unchanged, nothing uploaded) in {self.seconds:.2f}s"
            ]
        lines = [
            f"index publish: {verb} {self.source} to {self.destination}: "
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed, "
            f"{self.unchanged} unchanged ({self.bytes_uploaded / 1e6:.1f} MB) "
            f"in {self.seconds:.2f}s"
        ]
        lines.append(f"  index: {self.changes.summary()}")
        if self.dry_run:
            for action, keys in (
                ("add", self.added),
                ("change", self.changed),
                ("remove", self.removed),
            ):
                lines.extend(f"  {action:<7}{key}" for key in keys)
        return lines


@dataclass(frozen=True)
class PublishOptions:
    dry_run: bool = False
    jobs: int = 8
    echo: Callable[[str], None] = lambda line: None  # retries, and each step if log_steps
    log_steps: bool = True
    attempts: int = STEP_ATTEMPTS
    backoff: float = 0.5


def check_foreign(destination: Destination, remote: Mapping[str, Entry]) -> None:
    foreign = foreign_keys(remote)
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise PackageIndexError(
            f"{destination.url} holds {shown}, which is no part of an index; "
            "imagebot deletes what it does not publish, so it publishes only into a destination "
            "of its own",
            "point [index] publish at an empty bucket prefix or directory, or remove those objects",
        )


def publish(local: LocalIndex, destination: Destination, options: PublishOptions) -> PublishResult:
    """Plan against the destination's listing, then (unless a dry run) run the plan."""
    start = time.monotonic()
    phases: dict[str, float] = {}
    remote = _retried(options, f"list {destination.url}", destination.list)
    check_foreign(destination, remote)
    previous = _published_manifest(destination, remote, local, options)
    plan = plan_publish(local.entries, remote)
    phases["plan"] = time.monotonic() - start
    retries = 0
    try:
        if not options.dry_run and plan.batches:
            retries = execute(plan, local, destination, options)
            phases["upload"] = time.monotonic() - start - phases["plan"]
    finally:
        destination.close()  # records what was written, also when a step failed
    return PublishResult(
        source=str(local.root),
        destination=destination.url,
        dry_run=options.dry_run,
        added=plan.keys("add"),
        changed=plan.keys("change"),
        removed=plan.keys("remove"),
        unchanged=plan.unchanged,
        bytes_uploaded=0 if options.dry_run else plan.bytes_to_upload,
        changes=index_changes(previous, local.manifest) if plan.batches else IndexChanges(),
        seconds=time.monotonic() - start,
        retries=retries,
        phases=phases,
    )


def _retried(options: PublishOptions, what: str, action: Callable[[], T]) -> T:
    from imagebot.retry import retry_transient

    try:
        return retry_transient(
            action,
            what=what,
            attempts=options.attempts,
            backoff=options.backoff,
            on_retry=options.echo,
        )
    except TransientError as exc:
        raise PackageIndexError(
            f"cannot {what} after {options.attempts} attempts: {exc.message}",
            "check that the destination is reachable, then run the publish again",
        ) from None


def _published_manifest(
    destination: Destination,
    remote: Mapping[str, Entry],
    local: LocalIndex,
    options: PublishOptions,
) -> IndexManifest | None:
    """The destination's manifest, for the summary of changes (None when absent or foreign)."""
    old = remote.get(MANIFEST_NAME)
    if old is None:
        return None
    if old.sha256 is not None and old.sha256 == local.entries[MANIFEST_NAME].sha256:
        return local.manifest
    from imagebot.index_pages import manifest_from_json

    data = _retried(
        options, f"read {destination.url}/{MANIFEST_NAME}", lambda: destination.read(MANIFEST_NAME)
    )
    if data is None:
        return None
    try:
        return manifest_from_json(data.decode("utf-8"), f"{destination.url}/{MANIFEST_NAME}")
    except (PackageIndexError, UnicodeDecodeError):
        return None  # an index of another format: every version shows as added


def execute(
    plan: PublishPlan, local: LocalIndex, destination: Destination, options: PublishOptions
) -> int:
    """Run the batches in order, each batch's steps in parallel; returns the retries made."""
    from imagebot.retry import retry_transient

    retries = 0

    def on_retry(line: str) -> None:
        nonlocal retries
        retries += 1
        options.echo(line)

    def run(step: Step) -> None:
        def action() -> None:
            if step.action == "remove":
                destination.remove(step.key)
            else:
                entry = local.entries[step.key]
                assert entry.sha256 is not None  # local entries always carry their hash
                destination.upload(step.key, local.path(step.key), entry.sha256)

        try:
            retry_transient(
                action,
                what=f"{step.action} {step.key}",
                attempts=options.attempts,
                backoff=options.backoff,
                on_retry=on_retry,
            )
        except TransientError as exc:
            raise PackageIndexError(
                f"{destination.url}: cannot {step.action} {step.key} after "
                f"{options.attempts} attempts: {exc.message}",
                "run the publish again: it is idempotent and finishes what is left",
            ) from None
        if options.log_steps:
            options.echo(f"{step.action:<7}{step.key}")

    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=max(1, options.jobs), thread_name_prefix="publish")
    try:
        for batch in plan.batches:
            _run_batch(pool, run, batch)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return retries


def _run_batch(
    pool: ThreadPoolExecutor, run: Callable[[Step], None], batch: Sequence[Step]
) -> None:
    """All steps of a batch, or the first error once the running steps have stopped."""
    from concurrent.futures import wait

    futures: list[Future[None]] = [pool.submit(run, step) for step in batch]
    try:
        done, _ = wait(futures, return_when="FIRST_EXCEPTION")
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    errors = [f.exception() for f in done if not f.cancelled()]
    error = next((e for e in errors if e is not None), None)
    if error is not None:
        for future in futures:
            future.cancel()
        wait(futures)
        raise error
