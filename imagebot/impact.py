"""PURE: who needs each package, and who a change between two states hurts, worst first.

    snapshot(files)                         -> Snapshot (pins, dependency graph, entries)
    who_needs(snapshot, "numpy")            -> (Need, ...): every entry that needs numpy
    assess(old_pins, new_pins, new, old, environments, served) -> Impact
    section(base_files, head_files, "requirements", environments) -> Impact of a pull request
    impact.render_text(impact)              -> the lines of "Who this may hurt"

The dependency graph comes from the locks alone: uv's `# via` lines within a lock and the
`# requires:` line `imagebot lock` writes per pin (`imagebot.lockfile`), so no resolver runs
at report time. A *state* is the requirement files and locks of one revision (a pull
request's base or head) or the pip and R packages of one image (a promotion's old and new
image).

R is kept apart from Python throughout: R names are case-sensitive and never PEP 503
normalised, a Python and an R package may share a name, and the report says "R package" for
R. The R graph is requirements/cran.lock (`imagebot.cranlock`): each vetted pin's closure
(DependencyOf) and each package's Depends/Imports/LinkingTo. One R package may be served at
several versions (index-only.toml vets several; two closures may take different versions), so
R pins are (name, version) pairs and an R entry needs the exact versions of its own closure.
Entries of sets with `r_source = "debian"` have no CRAN closure: they need their own package.
A version of an R package that enters the closure of an entry that was already there is a
change too (`addition`): the requester now runs a package they did not before.

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
    from imagebot.cranlock import LockedR
    from imagebot.environments import RegisteredEnvironment
    from imagebot.errors import ImagebotError

PYTHON, R = "python", "r"
CRAN_LOCK_STEM = "cran"  # requirements/cran.lock: the R lock, never a Python set's lock
# "none": `imagebot impact NAME` without a version; "change": a version that is not PEP 440
# (or not an R version); "addition": an R package that enters an existing entry's closure
_KIND_HARM = {
    "removal": 5,
    "major": 4,
    "downgrade": 3,
    "change": 2,
    "minor": 1,
    "patch": 0,
    "addition": -1,
    "none": -2,
}
BREAKS, WORKS, MATCHES = "breaks", "works", "matches"
_STATUS_HARM = {BREAKS: 2, WORKS: 1, MATCHES: 0}
NOTHING = "nothing that an entry or a registered environment needs changes or leaves"
PROMOTION_LIMIT = 15  # packages named in a commit message; the rest are counted


def parse_package(argument: str, ecosystem: str = PYTHON) -> tuple[str, str | None]:
    """A command line's `NAME` or `NAME==VERSION`, each part by its rule (Python's, or R's
    with `ecosystem` "r"); a UsageError otherwise (the value reaches nothing before this)."""
    from imagebot import validate
    from imagebot.errors import UsageError

    name, sep, version = argument.partition("==")
    try:
        if ecosystem == R:
            validate.r_name(name)
            if sep:
                validate.r_version(version)
        else:
            validate.python_name(name)
            if sep:
                validate.python_version(version)
    except validate.InvalidValue as exc:
        raise UsageError(f"PACKAGE: {exc.message}", "write NAME or NAME==VERSION") from None
    return name, (version if sep else None)


# --- who needs what --------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Entry:
    """One requirement entry: of a set, or of index-only.toml (`set` "index-only")."""

    set: str
    key: str  # PEP 503 normalised (Python); the name as written (R)
    name: str  # as written
    version: str
    requested_by: str
    reason: str
    file: str
    line: int
    ecosystem: str = PYTHON

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"

    def to_json(self) -> dict[str, object]:
        return {
            "ecosystem": self.ecosystem,
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
    """One state: the Python lock pins, their dependency graph and the Python entries; the R
    entries, requirements/cran.lock's packages and what the vetted R repository serves."""

    pins: Mapping[str, str] = field(default_factory=dict)  # package -> version, every lock
    layer: Mapping[str, str] = field(default_factory=dict)  # package -> set whose lock has it
    requires: Mapping[str, frozenset[str]] = field(default_factory=dict)
    entries: tuple[Entry, ...] = ()
    r_entries: tuple[Entry, ...] = ()  # every set's [r] and index-only.toml's [r]
    r_packages: tuple[LockedR, ...] = ()  # requirements/cran.lock
    # (name, version) the vetted R repository serves: cran.lock's packages, or without a lock
    # the R entries served from a CRAN-like repository
    r_served: frozenset[tuple[str, str]] = frozenset()

    def index_only(self) -> frozenset[tuple[str, str]]:
        return frozenset((e.key, e.version) for e in self.entries if e.set == INDEX_ONLY)

    def vetted_names(self) -> frozenset[str]:
        return frozenset(self.pins) | frozenset(name for name, _ in self.index_only())

    @property
    def r_pins(self) -> frozenset[tuple[str, str]]:
        """Every R (name, version) of the state: served, or installed from Debian by a set."""
        return self.r_served | frozenset((e.name, e.version) for e in self.r_entries)


def snapshot(files: Mapping[str, str], requirements_dir: str = "requirements") -> Snapshot:
    """A Snapshot from `{relative path: text}` of `<requirements_dir>/*.toml` and `*.lock`
    (`cran.lock` is the R lock).

    A file that does not parse lends nothing (its problems are `check`'s to report)."""
    from imagebot.requirements import parse_set

    pins: dict[str, str] = {}
    layer: dict[str, str] = {}
    requires: dict[str, set[str]] = {}
    entries: list[Entry] = []
    r_entries: list[Entry] = []
    from_cran: set[tuple[str, str]] = set()  # R entries a CRAN-like repository serves
    r_packages: tuple[LockedR, ...] | None = None
    prefix = requirements_dir.rstrip("/") + "/"
    for path in sorted(files):
        if not path.startswith(prefix) or "/" in path[len(prefix) :]:
            continue
        stem, _, suffix = path[len(prefix) :].rpartition(".")
        text = files[path]
        if suffix == "toml" and (stem == INDEX_ONLY or stem not in NOT_SETS):
            parsed, _ = parse_set(Path(path), text)
            if parsed is None:
                continue
            for ecosystem, found in ((PYTHON, entries), (R, r_entries)):
                for entry in parsed.entries(ecosystem):
                    found.append(
                        Entry(
                            stem,
                            entry.key,
                            entry.name,
                            entry.version,
                            entry.requested_by,
                            entry.reason,
                            path,
                            entry.line,
                            ecosystem,
                        )
                    )
            if stem == INDEX_ONLY or parsed.r_source == "cran":
                from_cran.update((entry.name, entry.version) for entry in parsed.r)
        elif "." + suffix == LOCK_SUFFIX and stem == CRAN_LOCK_STEM:
            r_packages = _r_lock_packages(path, text)
        elif "." + suffix == LOCK_SUFFIX:
            for package in split_blocks(text):
                pins[package.name] = package.version
                layer[package.name] = stem
                edges = requires.setdefault(package.name, set())
                edges.update(package.requires)
                for name in package.via:  # within one lock, `# via` says it as well
                    if not name.startswith("-"):
                        requires.setdefault(name, set()).add(package.name)
    served = (
        frozenset((p.name, p.version) for p in r_packages)
        if r_packages is not None
        else frozenset(from_cran)
    )
    return Snapshot(
        pins,
        layer,
        {name: frozenset(names) for name, names in requires.items()},
        tuple(entries),
        tuple(r_entries),
        r_packages or (),
        served,
    )


def _r_lock_packages(path: str, text: str) -> tuple[LockedR, ...] | None:
    """cran.lock's packages; None when it does not parse (`lock --check` reports it)."""
    from imagebot.cranlock import parse_cran_lock
    from imagebot.errors import ImagebotError

    try:
        return parse_cran_lock(text, path).packages
    except ImagebotError:
        return None


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


def r_needs(snapshot: Snapshot) -> dict[tuple[str, str], tuple[Need, ...]]:
    """For every R (name, version), every R entry that needs it, direct ones first: the
    entry's own package, and for an entry that cran.lock vets (VettedIn names its set) each
    package of its closure (DependencyOf), with the chain through Depends/Imports/LinkingTo."""
    found: dict[tuple[str, str], list[Need]] = {}
    for entry in snapshot.r_entries:
        members = _r_closure(snapshot.r_packages, entry)
        chains: dict[str, tuple[str, ...]] = {entry.name: ()}
        queue = deque([entry.name])
        while queue:
            name = queue.popleft()
            package = members.get(name)
            for dependency in sorted(package.requires if package is not None else ()):
                if dependency in members and dependency not in chains:
                    chains[dependency] = (*chains[name], name)
                    queue.append(dependency)
        found.setdefault((entry.name, entry.version), []).append(Need(entry, ()))
        for name, package in members.items():
            if name != entry.name:
                # DependencyOf says the closure needs it even where no chain is recorded
                through = chains.get(name, (entry.name,))
                found.setdefault((name, package.version), []).append(Need(entry, through))
    return {key: tuple(sorted(listed, key=_need_order)) for key, listed in found.items()}


def _r_closure(packages: Sequence[LockedR], entry: Entry) -> dict[str, LockedR]:
    """The entry's closure in cran.lock by name, its own package included; {} when cran.lock
    does not vet the entry's pin for the entry's set (a Debian-sourced set, a stale lock)."""
    pin = entry.pin
    own = next((p for p in packages if p.pin == pin and entry.set in p.vetted_in), None)
    if own is None:
        return {}
    members = {own.name: own}
    for package in packages:
        if pin in package.dependency_of:
            members.setdefault(package.name, package)
    return members


def r_who_needs(snapshot: Snapshot, name: str, versions: Iterable[str] = ()) -> tuple[Need, ...]:
    """Every R entry that needs `name` at one of `versions` (any version when none is given
    or none of them is needed), direct ones first."""
    table = r_needs(snapshot)
    wanted = set(versions)
    exact = [
        need for (n, v), listed in table.items() if n == name and v in wanted for need in listed
    ]
    found = exact or [need for (n, _), listed in table.items() if n == name for need in listed]
    return tuple(sorted(dict.fromkeys(found), key=_need_order))


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
        if environment.ecosystem == PYTHON:
            served.update((p.name, p.version) for p in environment.pins if p.name in vetted)
    return frozenset(served - set(blocked))


def affected(
    name: str,
    new_version: str | None,
    environments: Iterable[RegisteredEnvironment],
    served: Collection[tuple[str, str]],
    blocked: Collection[tuple[str, str]] = (),
    ecosystem: str = PYTHON,
) -> tuple[Affected, ...]:
    """Every registered environment of `ecosystem` that pins `name`, worst off first. An R
    environment replays from the vetted R repository: it breaks when that no longer serves
    its version (`served`: the new state's `r_served`)."""
    same = _same_r_version if ecosystem == R else _same_version
    found: list[Affected] = []
    for environment in environments:
        pin = environment.pinned(name) if environment.ecosystem == ecosystem else None
        if pin is None:
            continue
        if not any(n == name and same(v, pin.version) for n, v in served):
            status = BREAKS
        elif new_version is not None and same(pin.version, new_version):
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


def _same_version(a: str, b: str) -> bool:
    return a == b


def _same_r_version(a: str, b: str) -> bool:
    from imagebot.cran import same_r_version

    return same_r_version(a, b)


def r_change_kind(old: str | None, new: str | None) -> str:
    """removal, addition, major, downgrade, minor, patch by R's version order
    (`imagebot.cran.version_key`: "1.1-0" is "1.1.0"); `change` when a version is not R's."""
    from imagebot.cran import version_key

    if new is None:
        return "removal"
    if old is None:
        return "addition"
    try:
        before, after = version_key(old), version_key(new)
    except ValueError:
        return "change"
    if after < before:
        return "downgrade"
    old_parts, new_parts = (*before, 0, 0), (*after, 0, 0)
    if old_parts[0] != new_parts[0]:
        return "major"
    if old_parts[1] != new_parts[1]:
        return "minor"
    return "patch"


def r_changes(
    old: Collection[tuple[str, str]], new: Collection[tuple[str, str]]
) -> list[tuple[str, str | None, str | None]]:
    """(name, old version, new version) for every R package whose versions differ: per name,
    the versions that leave pair with the versions that enter, lowest with lowest; what is
    left over leaves (new None) or enters (old None)."""
    from imagebot.cran import same_r_version
    from imagebot.cran import sort_key as r_sort_key

    def versions(pairs: Collection[tuple[str, str]], name: str) -> list[str]:
        return sorted({v for n, v in pairs if n == name}, key=r_sort_key)

    changes: list[tuple[str, str | None, str | None]] = []
    for name in sorted({n for n, _ in old} | {n for n, _ in new}):
        before, after = versions(old, name), versions(new, name)
        gone = [v for v in before if not any(same_r_version(v, w) for w in after)]
        came = [v for v in after if not any(same_r_version(v, w) for w in before)]
        for index in range(max(len(gone), len(came))):
            changes.append(
                (
                    name,
                    gone[index] if index < len(gone) else None,
                    came[index] if index < len(came) else None,
                )
            )
    return changes


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
    ecosystem: str = PYTHON

    @property
    def label(self) -> str:
        """How a report names it: `numpy`, `R package dplyr`."""
        return f"R package {self.name}" if self.ecosystem == R else self.name

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
            self.ecosystem,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "ecosystem": self.ecosystem,
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
    old_r: Collection[tuple[str, str]] = (),
    new_r: Collection[tuple[str, str]] = (),
) -> Impact:
    """Every package whose version changes or that leaves between `old_pins` and `new_pins`
    (Python) and between `old_r` and `new_r` (R (name, version) pairs), with who needs it (in
    `new`, or in `old` for what no longer is needed) and the registered environments that pin
    it; worst first. `served` defaults to `served_after(new, ...)`."""
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
    packages.extend(r_assess(old_r, new_r, new, old, environments))
    return Impact(labels[0], labels[1], tuple(sorted(packages, key=PackageImpact.harm)))


def r_assess(
    old_r: Collection[tuple[str, str]],
    new_r: Collection[tuple[str, str]],
    new: Snapshot,
    old: Snapshot | None,
    environments: Sequence[RegisteredEnvironment],
) -> list[PackageImpact]:
    """The R packages that change, leave, or enter the closure of an entry that was there
    before (a new entry's own closure is review's to report)."""
    needed_new = r_needs(new)
    needed_old = r_needs(old) if old is not None else {}
    before = {(e.set, e.name) for e in (old if old is not None else new).r_entries}
    found: list[PackageImpact] = []
    for name, was, now in r_changes(old_r, new_r):
        needs = _r_found(name, was, now, needed_new, needed_old)
        if was is None:
            needs = tuple(n for n in needs if (n.entry.set, n.entry.name) in before)
            if not needs:
                continue
        found.append(
            PackageImpact(
                name,
                was,
                now,
                r_change_kind(was, now),
                needs,
                affected(name, now, environments, new.r_served, ecosystem=R),
                R,
            )
        )
    return found


def _r_found(
    name: str,
    was: str | None,
    now: str | None,
    needed_new: Mapping[tuple[str, str], tuple[Need, ...]],
    needed_old: Mapping[tuple[str, str], tuple[Need, ...]],
) -> tuple[Need, ...]:
    """Who needs the new version (in the new state), else the old one (in the old state),
    else any version of the name (an image's R package that cran.lock holds at another)."""
    exact = (now is not None and needed_new.get((name, now))) or (
        was is not None and needed_old.get((name, was))
    )
    if exact:
        return exact
    for table in (needed_new, needed_old):
        listed = [need for (n, _), needs in table.items() if n == name for need in needs]
        if listed:
            return tuple(sorted(dict.fromkeys(listed), key=_need_order))
    return ()


def package_report(
    name: str,
    version: str | None,
    snapshot: Snapshot,
    environments: Sequence[RegisteredEnvironment],
    ecosystem: str = PYTHON,
) -> PackageImpact:
    """`imagebot impact NAME[==VERSION]`: who needs the package and who pins it. With VERSION,
    as if the image moved to it (`kind` and each environment's status say what that does)."""
    if ecosystem == R:
        return r_package_report(name, version, snapshot, environments)
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


def r_package_report(
    name: str,
    version: str | None,
    snapshot: Snapshot,
    environments: Sequence[RegisteredEnvironment],
) -> PackageImpact:
    """`imagebot impact --r NAME[==VERSION]`: the R package's newest vetted version is the
    current one; who needs any vetted version of it, and who pins it."""
    from imagebot.cran import sort_key as r_sort_key

    versions = sorted({v for n, v in snapshot.r_pins if n == name}, key=r_sort_key)
    current = versions[-1] if versions else None
    target = version if version is not None else current
    moved = current and target and not _same_r_version(current, target)
    return PackageImpact(
        name,
        current,
        target,
        r_change_kind(current, target) if moved else "none",
        r_who_needs(snapshot, name),
        affected(name, target, environments, snapshot.r_served, ecosystem=R),
        R,
    )


def package_json(report: PackageImpact, snapshot: Snapshot) -> dict[str, object]:
    """`imagebot impact --json`: the report, and the set whose lock has a Python package."""
    where = snapshot.layer.get(report.name) if report.ecosystem == PYTHON else None
    return {**report.to_json(), "set": where}


def unknown_package(report: PackageImpact, snapshot: Snapshot) -> ImagebotError:
    """The error for a package that no lock, entry or registered environment knows (a typo
    would otherwise read as "nobody needs it"), pointing at R when R knows the name."""
    from imagebot.errors import ImagebotError

    hint = "check the spelling (PEP 503 names: imagebot impact NAME)"
    r_names = sorted({n for n, _ in snapshot.r_pins})
    if report.ecosystem == R:
        cased = next((n for n in r_names if n.lower() == report.name.lower()), "NAME")
        hint = f"check the spelling (R names are case-sensitive: imagebot impact --r {cased})"
    elif r_name := next((n for n in r_names if normalize(n) == report.name), None):
        hint = f"{r_name} is an R package: imagebot impact --r {r_name}"
    return ImagebotError(f"{report.label} is in no lock, entry or registered environment", hint)


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
    return assess(
        base.pins,
        head.pins,
        head,
        base,
        environments,
        labels=labels,
        old_r=base.r_pins,
        new_r=head.r_pins,
    )


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
    label = package.label
    if package.old is None and package.new is None:
        head = f"{label}: not in the locks"
    elif package.kind == "none":
        head = f"{label} {package.new}"
    elif package.new is None:
        head = f"{label} {package.old} -> (removed): removal"
    elif package.old is None:
        head = f"{label} (new) -> {package.new}: addition to the closure"
    else:
        head = f"{label} {package.old} -> {package.new}: {package.kind}"
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


def image_r_pins(listing: Mapping[str, str]) -> frozenset[tuple[str, str]]:
    """An image manifest's R packages as (name, version), names exact."""
    return frozenset(listing.items())


def promotion_impact(config: Config, old: object, new: object, env: Mapping[str, str]) -> str:
    """Best effort, plain text: who the move from image `old` to `new` may hurt, from the two
    images' Python and R packages (the manifests the package diff read, cached by digest), the
    working tree's locks and the registered environments. Never fails a promotion."""
    try:
        from imagebot.environments import load_environments, target_of
        from imagebot.manifest import read_manifest

        before = read_manifest(config, str(old), env=env).packages
        after = read_manifest(config, str(new), env=env).packages
        environments, _ = load_environments(config.root, *target_of(config))
        result = assess(
            image_pins(before.get(PYTHON, {})),
            image_pins(after.get(PYTHON, {})),
            load_snapshot(config),
            environments=environments,
            labels=(str(old), str(new)),
            old_r=image_r_pins(before.get(R, {})),
            new_r=image_r_pins(after.get(R, {})),
        )
        return render_text(result, limit=PROMOTION_LIMIT)
    except Exception as exc:  # a report is nice to have: never fail a promotion over it
        reason = getattr(exc, "message", "") or type(exc).__name__
        return f"impact unavailable: {str(reason).splitlines()[0][:160]}\n"
