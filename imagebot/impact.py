"""PURE: who needs each package, and who a change between two states hurts, worst first.

    snapshot(files)                         -> Snapshot (pins, dependency graph, entries)
    who_needs(snapshot, "numpy")            -> (Need, ...): every entry that needs numpy
    assess(old_pins, new_pins, new, old, environments, served) -> Impact
    section(base_files, head_files, "requirements", environments) -> Impact of a pull request
    impact.render_text(impact)              -> the lines of "Who this may hurt"

The dependency graph comes from the locks alone: uv's `# via` lines within a lock and the
`# requires:` line `imagebot lock` writes per pin (`imagebot.lockfile`), so no resolver runs
at report time. A *state* is the requirement files and locks of one revision (a pull
request's base or head) or the pip packages of one image (a promotion's old and new image).

An entry *needs* a package when the package is the entry's own or is reachable from it
through `requires`. A registered environment (`imagebot.environments`) that pins a changed
package either still works (the index keeps serving its version, which now differs from the
image's) or breaks (no longer served, or blocked by an advisory): its owner must move.
Harm orders the report: packages that break an environment first, then removals, major
upgrades, downgrades, minor and patch changes, and last what nobody needs or pins; within a
package, owners of environments first, then direct requesters, then those who need it
through a dependency.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imagebot.lockfile import LOCK_SUFFIX, split_blocks
from imagebot.requirements import INDEX_ONLY, NOT_SETS, normalize

if TYPE_CHECKING:
    from imagebot.config import Config
    from imagebot.environments import RegisteredEnvironment

# "none": `imagebot impact NAME` without a version; "change": a version that is not PEP 440
_KIND_HARM = {
    "removal": 5,
    "major": 4,
    "downgrade": 3,
    "change": 2,
    "minor": 1,
    "patch": 0,
    "none": -1,
}
BREAKS, WORKS, MATCHES = "breaks", "works", "matches"
_STATUS_HARM = {BREAKS: 2, WORKS: 1, MATCHES: 0}
NOTHING = "nothing that an entry or a registered environment needs changes or leaves"
PROMOTION_LIMIT = 15  # packages named in a commit message; the rest are counted


def parse_package(argument: str) -> tuple[str, str | None]:
    """A command line's `NAME` or `NAME==VERSION`, each part by its rule; a UsageError
    otherwise (the value reaches nothing before this)."""
    from imagebot import validate
    from imagebot.errors import UsageError

    name, sep, version = argument.partition("==")
    try:
        validate.python_name(name)
        if sep:
            validate.python_version(version)
    except validate.InvalidValue as exc:
        raise UsageError(f"PACKAGE: {exc.message}", "write NAME or NAME==VERSION") from None
    return name, (version if sep else None)


# --- who needs what --------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Entry:
    """One Python requirement entry: of a set, or of index-only.toml (`set` "index-only")."""

    set: str
    key: str  # PEP 503 normalised
    name: str  # as written
    version: str
    requested_by: str
    reason: str
    file: str
    line: int

    def to_json(self) -> dict[str, object]:
        return {
            "set": self.set,
            "name": self.name,
            "version": self.version,
            "requested_by": self.requested_by,
            "reason": self.reason,
            "file": self.file,
            "line": self.line,
        }


@dataclass(frozen=True)
class Snapshot:
    """The Python side of one state: lock pins, their dependency graph and the entries."""

    pins: Mapping[str, str] = field(default_factory=dict)  # package -> version, every lock
    layer: Mapping[str, str] = field(default_factory=dict)  # package -> set whose lock has it
    requires: Mapping[str, frozenset[str]] = field(default_factory=dict)
    entries: tuple[Entry, ...] = ()

    def index_only(self) -> frozenset[tuple[str, str]]:
        return frozenset((e.key, e.version) for e in self.entries if e.set == INDEX_ONLY)

    def vetted_names(self) -> frozenset[str]:
        return frozenset(self.pins) | frozenset(name for name, _ in self.index_only())


def snapshot(files: Mapping[str, str], requirements_dir: str = "requirements") -> Snapshot:
    """A Snapshot from `{relative path: text}` of `<requirements_dir>/*.toml` and `*.lock`.

    A file that does not parse lends nothing (its problems are `check`'s to report)."""
    from imagebot.requirements import parse_set

    pins: dict[str, str] = {}
    layer: dict[str, str] = {}
    requires: dict[str, set[str]] = {}
    entries: list[Entry] = []
    prefix = requirements_dir.rstrip("/") + "/"
    for path in sorted(files):
        if not path.startswith(prefix) or "/" in path[len(prefix) :]:
            continue
        stem, _, suffix = path[len(prefix) :].rpartition(".")
        text = files[path]
        if suffix == "toml" and (stem == INDEX_ONLY or stem not in NOT_SETS):
            parsed, _ = parse_set(Path(path), text)
            for entry in parsed.python if parsed is not None else ():
                entries.append(
                    Entry(
                        stem,
                        entry.key,
                        entry.name,
                        entry.version,
                        entry.requested_by,
                        entry.reason,
                        path,
                        entry.line,
                    )
                )
        elif "." + suffix == LOCK_SUFFIX:
            for package in split_blocks(text):
                pins[package.name] = package.version
                layer[package.name] = stem
                edges = requires.setdefault(package.name, set())
                edges.update(package.requires)
                for name in package.via:  # within one lock, `# via` says it as well
                    if not name.startswith("-"):
                        requires.setdefault(name, set()).add(package.name)
    return Snapshot(
        pins, layer, {name: frozenset(names) for name, names in requires.items()}, tuple(entries)
    )


@dataclass(frozen=True)
class Need:
    """An entry that needs a package: directly (`through` is empty) or through dependencies
    (`through` is the chain from the entry's package to the one that requires it)."""

    entry: Entry
    through: tuple[str, ...] = ()

    @property
    def direct(self) -> bool:
        return not self.through

    def to_json(self) -> dict[str, object]:
        return {**self.entry.to_json(), "direct": self.direct, "through": list(self.through)}


def needs(snapshot: Snapshot) -> dict[str, tuple[Need, ...]]:
    """For every package, every entry that needs it (shortest chain), direct ones first."""
    found: dict[str, list[Need]] = {}
    for entry in snapshot.entries:
        chains: dict[str, tuple[str, ...]] = {entry.key: ()}
        queue = deque([entry.key])
        while queue:
            name = queue.popleft()
            for dependency in sorted(snapshot.requires.get(name, ())):
                if dependency not in chains:
                    chains[dependency] = (*chains[name], name)
                    queue.append(dependency)
        for name, chain in chains.items():
            found.setdefault(name, []).append(Need(entry, chain))
    return {name: tuple(sorted(listed, key=_need_order)) for name, listed in found.items()}


def _need_order(need: Need) -> tuple[object, ...]:
    return (
        not need.direct,
        len(need.through),
        need.entry.requested_by,
        need.entry.set,
        need.entry.key,
    )


def who_needs(snapshot: Snapshot, name: str) -> tuple[Need, ...]:
    return needs(snapshot).get(normalize(name), ())


# --- registered environments -----------------------------------------------------------------


@dataclass(frozen=True)
class Affected:
    """A registered environment that pins a changed package, and what the change does to it."""

    path: str
    label: str  # team/name
    owner: str
    pinned: str
    line: int
    status: str  # breaks | works | matches
    blocked: bool = False  # an unwaived advisory keeps the index from serving `pinned`

    def to_json(self) -> dict[str, object]:
        return {
            "environment": self.label,
            "file": self.path,
            "line": self.line,
            "owner": self.owner,
            "pinned": self.pinned,
            "status": self.status,
            "blocked_by_advisory": self.blocked,
        }


def served_after(
    new: Snapshot,
    environments: Iterable[RegisteredEnvironment],
    blocked: Collection[tuple[str, str]] = (),
) -> frozenset[tuple[str, str]]:
    """What the index serves in the new state: every lock pin, every index-only entry, and
    every version a registered environment pins of a package still vetted, less what an
    unwaived advisory blocks."""
    vetted = new.vetted_names()
    served = set(new.pins.items()) | new.index_only()
    for environment in environments:
        served.update((p.name, p.version) for p in environment.pins if p.name in vetted)
    return frozenset(served - set(blocked))


def affected(
    name: str,
    new_version: str | None,
    environments: Iterable[RegisteredEnvironment],
    served: Collection[tuple[str, str]],
    blocked: Collection[tuple[str, str]] = (),
) -> tuple[Affected, ...]:
    """Every registered environment that pins `name`, worst off first."""
    found: list[Affected] = []
    for environment in environments:
        pin = environment.pinned(name)
        if pin is None:
            continue
        if (name, pin.version) not in served:
            status = BREAKS
        elif pin.version == new_version:
            status = MATCHES
        else:
            status = WORKS
        found.append(
            Affected(
                environment.path,
                environment.label,
                environment.owner,
                pin.version,
                pin.line,
                status,
                (name, pin.version) in blocked,
            )
        )
    return tuple(sorted(found, key=lambda a: (-_STATUS_HARM[a.status], a.owner, a.path)))


# --- the impact of a change ------------------------------------------------------------------


def change_kind(old: str | None, new: str | None) -> str:
    """removal, major, downgrade, minor, patch; `change` when a version is not PEP 440."""
    if new is None:
        return "removal"
    if old is None:
        return "change"
    from packaging.version import InvalidVersion, Version

    try:
        before, after = Version(old), Version(new)
    except InvalidVersion:
        return "change"
    if after < before:
        return "downgrade"
    old_release = (*before.release, 0, 0)
    new_release = (*after.release, 0, 0)
    if (before.epoch, old_release[0]) != (after.epoch, new_release[0]):
        return "major"
    if old_release[1] != new_release[1]:
        return "minor"
    return "patch"


@dataclass(frozen=True)
class PackageImpact:
    name: str
    old: str | None
    new: str | None
    kind: str
    needs: tuple[Need, ...]
    environments: tuple[Affected, ...]

    @property
    def breaks(self) -> int:
        return sum(1 for a in self.environments if a.status == BREAKS)

    @property
    def differs(self) -> int:
        return sum(1 for a in self.environments if a.status == WORKS)

    def harm(self) -> tuple[object, ...]:
        """Sort key: worst first."""
        direct = sum(1 for n in self.needs if n.direct)
        nobody = not self.needs and not self.environments
        return (
            -self.breaks,
            nobody,
            -_KIND_HARM[self.kind],
            -self.differs,
            -direct,
            -len(self.needs),
            self.name,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "package": self.name,
            "old": self.old,
            "new": self.new,
            "kind": self.kind,
            "environments": [a.to_json() for a in self.environments],
            "needed_by": [n.to_json() for n in self.needs],
        }


@dataclass(frozen=True)
class Impact:
    old: str  # what the old state is (a revision, an image ref)
    new: str
    packages: tuple[PackageImpact, ...]

    @property
    def owners_who_must_move(self) -> tuple[str, ...]:
        return tuple(
            dict.fromkeys(
                a.owner for p in self.packages for a in p.environments if a.status == BREAKS
            )
        )

    def to_json(self) -> dict[str, object]:
        return {
            "old": self.old,
            "new": self.new,
            "must_move": list(self.owners_who_must_move),
            "packages": [p.to_json() for p in self.packages],
        }


def assess(
    old_pins: Mapping[str, str],
    new_pins: Mapping[str, str],
    new: Snapshot,
    old: Snapshot | None = None,
    environments: Sequence[RegisteredEnvironment] = (),
    *,
    served: Collection[tuple[str, str]] | None = None,
    blocked: Collection[tuple[str, str]] = (),
    labels: tuple[str, str] = ("old", "new"),
) -> Impact:
    """Every package whose version changes or that leaves between `old_pins` and `new_pins`,
    with who needs it (in `new`, or in `old` for what no longer is needed) and the registered
    environments that pin it; worst first. `served` defaults to `served_after(new, ...)`."""
    served_now = served_after(new, environments, blocked) if served is None else served
    needed_new = needs(new)
    needed_old = needs(old) if old is not None else {}
    packages: list[PackageImpact] = []
    for name in sorted(set(old_pins) | set(new_pins)):
        before, after = old_pins.get(name), new_pins.get(name)
        if before is None or before == after:
            continue  # additions are review's to report; no one depends on them yet
        found = needed_new.get(name) or needed_old.get(name, ())
        packages.append(
            PackageImpact(
                name,
                before,
                after,
                change_kind(before, after),
                found,
                affected(name, after, environments, served_now, blocked),
            )
        )
    return Impact(labels[0], labels[1], tuple(sorted(packages, key=PackageImpact.harm)))


def package_report(
    name: str,
    version: str | None,
    snapshot: Snapshot,
    environments: Sequence[RegisteredEnvironment],
) -> PackageImpact:
    """`imagebot impact NAME[==VERSION]`: who needs the package and who pins it. With VERSION,
    as if the image moved to it (`kind` and each environment's status say what that does)."""
    key = normalize(name)
    current = snapshot.pins.get(key) or next(
        (e.version for e in snapshot.entries if e.key == key), None
    )
    target = version if version is not None else current
    served = served_after(snapshot, environments)
    kind = change_kind(current, target) if current and target and current != target else "none"
    return PackageImpact(
        key,
        current,
        target,
        kind,
        who_needs(snapshot, key),
        affected(key, target, environments, served),
    )


def section(
    base_files: Mapping[str, str],
    head_files: Mapping[str, str],
    requirements_dir: str,
    environments: Sequence[RegisteredEnvironment] = (),
    labels: tuple[str, str] = ("base", "head"),
) -> Impact:
    """`imagebot review`'s "Who this may hurt": the impact of a pull request, from the
    `{path: text}` of the base's and the head's requirement files and locks (what
    `review.state_from_files` reads) and the head's registered environments. Local and pure."""
    base = snapshot(base_files, requirements_dir)
    head = snapshot(head_files, requirements_dir)
    return assess(base.pins, head.pins, head, base, environments, labels=labels)


# --- rendering -------------------------------------------------------------------------------


def _status_text(affected: Affected, new: str | None) -> str:
    if affected.status == BREAKS:
        why = (
            "blocked by an unwaived advisory"
            if affected.blocked
            else "no longer served by the index"
        )
        return f"breaks: {affected.pinned} is {why}; {affected.owner} must move"
    if affected.status == MATCHES:
        return f"works: {affected.pinned} is the image's version"
    image = f"the image's {new}" if new else "the image, which no longer has it"
    return f"works: {affected.pinned} is still served, but differs from {image}"


def _need_text(need: Need, package: str) -> str:
    entry = need.entry
    what = f"{entry.name}=={entry.version} in {entry.set} ({entry.reason})"
    if need.direct:
        return f"requested by {entry.requested_by}: {what}"
    return f"needed by {entry.requested_by}: {what}: {' -> '.join((*need.through, package))}"


def package_lines(package: PackageImpact) -> list[str]:
    """One line for the change, then one per owner, direct requester and dependent requester."""
    if package.old is None and package.new is None:
        head = f"{package.name}: not in the locks"
    elif package.kind == "none":
        head = f"{package.name} {package.new}"
    elif package.new is None:
        head = f"{package.name} {package.old} -> (removed): removal"
    else:
        head = f"{package.name} {package.old} -> {package.new}: {package.kind}"
    lines = [head]
    for env in package.environments:
        lines.append(
            f"  owner {env.owner} of {env.label} ({env.path}:{env.line}) pins "
            f"{package.name}=={env.pinned}: {_status_text(env, package.new)}"
        )
    lines.extend(f"  {_need_text(need, package.name)}" for need in package.needs)
    if not package.environments and not package.needs:
        lines.append("  no entry needs it and no registered environment pins it")
    return lines


def render_text(impact: Impact, *, limit: int | None = None) -> str:
    """The report as plain lines (terminal, commit message, review); `limit` packages at most."""
    if not impact.packages:
        return NOTHING + "\n"
    lines: list[str] = []
    if impact.owners_who_must_move:
        lines.append(f"must move: {', '.join(impact.owners_who_must_move)}")
    shown = impact.packages if limit is None else impact.packages[:limit]
    for package in shown:
        lines.extend(package_lines(package))
    if len(shown) < len(impact.packages):
        lines.append(f"... and {len(impact.packages) - len(shown)} more changed packages")
    return "\n".join(lines) + "\n"


# --- reading the working tree (the adapter) --------------------------------------------------


def load_snapshot(config: Config) -> Snapshot:
    """The working tree's Snapshot: every set, index-only.toml and lock under requirements/."""
    from imagebot.files import Unreadable, read_text

    root = config.root
    files: dict[str, str] = {}
    for path in sorted(config.requirements_dir.iterdir()):
        if path.suffix in (".toml", LOCK_SUFFIX) and path.is_file() and not path.is_symlink():
            try:
                files[path.relative_to(root).as_posix()] = read_text(path)
            except Unreadable:
                continue  # `check` reports it
    return snapshot(files, config.requirements_dir.relative_to(root).as_posix())


def image_pins(listing: Mapping[str, str]) -> dict[str, str]:
    """An image manifest's Python packages as {normalised name: version}."""
    return {normalize(name): version for name, version in listing.items()}


def promotion_impact(config: Config, old: object, new: object, env: Mapping[str, str]) -> str:
    """Best effort, plain text: who the move from image `old` to `new` may hurt, from the two
    images' Python packages (the manifests the package diff read, cached by digest), the
    working tree's locks and the registered environments. Never fails a promotion."""
    try:
        from imagebot.environments import load_environments, target_of
        from imagebot.manifest import read_manifest

        before = read_manifest(config, str(old), env=env).packages.get("python", {})
        after = read_manifest(config, str(new), env=env).packages.get("python", {})
        environments, _ = load_environments(config.root, *target_of(config))
        result = assess(
            image_pins(before),
            image_pins(after),
            load_snapshot(config),
            environments=environments,
            labels=(str(old), str(new)),
        )
        return render_text(result, limit=PROMOTION_LIMIT)
    except Exception as exc:  # a report is nice to have: never fail a promotion over it
        reason = getattr(exc, "message", "") or type(exc).__name__
        return f"impact unavailable: {str(reason).splitlines()[0][:160]}\n"
