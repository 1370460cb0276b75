"""PURE: what a pull request changes in the vetted packages, as a report for its reviewer.

Two states (the base revision's and the working tree's requirement files and locks) are
compared into a `Changes`: the entries added, changed, edited or removed, the Python pins that
enter, change or leave the locks and the index, and the R packages that enter, change or leave
the R lock (`requirements/cran.lock`: every R version the vetted CRAN-like repository serves,
dependencies included). The caller adds facts about the new Python packages (`PackageFacts`,
from the upstream index) and known vulnerabilities, and gets a `Review`, which
`imagebot.review_render` renders as text, Markdown or JSON. An R package's facts are its lock
stanza's (the upstream's PACKAGES fields), which the caller has had the upstream vouch for
(`RVerified`). An entry added or changed without the requester's confirmation
(`safe_because`) is a problem of the review (exit 4, file:line). So is a change to
imagebot.toml (`imagebot.review_config`: every key whose raw value the pull request adds,
changes or removes, shown first) until a reviewer accepts it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from imagebot.cranlock import CRAN_LOCK_NAME, parse_cran_lock
from imagebot.errors import Problem, StaleError
from imagebot.lockfile import LOCK_SUFFIX, split_blocks, via_names
from imagebot.requirements import Requirement, parse_set
from imagebot.review_config import ConfigChanges

INDEX_ONLY = "index-only"
CONFIRMATION_FIELD = "safe_because"
CONFIRMATION_HINT = f'add {CONFIRMATION_FIELD} = "what you checked" to the entry'


# --- the two states --------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    """One entry as one state lists it: in which set (or index-only) and file."""

    source: str  # the set's name, or "index-only"
    file: str  # relative to the repository root, e.g. requirements/datascience.toml
    entry: Requirement

    @property
    def identity(self) -> tuple[str, str, str]:
        # index-only vets versions, several per package and apart from the sets' pins: each
        # version is an entry of its own there (a new version is added, an old one removed).
        if self.source == INDEX_ONLY:
            return (self.entry.ecosystem, self.entry.key, f"{INDEX_ONLY}=={self.entry.version}")
        return (self.entry.ecosystem, self.entry.key, "")


@dataclass(frozen=True)
class LockedPin:
    """One Python pin of one state: in a set's lock, or an index-only entry's own pin."""

    name: str  # PEP 503 normalised
    version: str
    where: str  # the lock's set name, or "index-only"
    direct: bool  # a requirement entry asks for it (not only a dependency)
    via: tuple[str, ...] = ()  # the packages that need it, from the lock's `# via` lines


@dataclass(frozen=True)
class RFacts:
    """What the R lock's stanza says about one R package version: the upstream's PACKAGES
    fields. PACKAGES records no publication date, so a review shows none."""

    license: str
    needs_compilation: bool  # compiles C, C++ or Fortran code when installed from source
    upstream: str  # the CRAN-like repository it comes from


@dataclass(frozen=True)
class RPin:
    """One R package version of one state's R lock."""

    name: str  # as R spells it (R names are case-sensitive)
    version: str
    vetted_in: tuple[str, ...]  # sets (or "index-only") whose entry pins this version
    dependency_of: tuple[str, ...]  # vetted pins ("name==version") whose closure needs it
    facts: RFacts | None = None  # None: the state has no R lock; taken from its entry


# A state's R lock: read, absent (R pins then come from the entries it serves), or edited by
# hand (its `# content:` digest does not match), or unreadable.
R_LOCK_READ, R_LOCK_ABSENT, R_LOCK_EDITED, R_LOCK_UNREADABLE = (
    "read",
    "absent",
    "edited",
    "unreadable",
)


@dataclass(frozen=True)
class State:
    entries: tuple[Listed, ...]
    pins: tuple[LockedPin, ...]
    r_pins: tuple[RPin, ...] = ()
    r_lock: str = R_LOCK_ABSENT


def state_from_files(
    files: Mapping[str, str], requirements_dir: str
) -> tuple[State, list[Problem]]:
    """A State from `{path: text}` of `<requirements_dir>/*.toml` and `*.lock` files.

    Paths are relative to the repository root. `cran.lock` is the R lock, never a set's Python
    lock. Problems are those of each file on its own (the caller decides whether they matter:
    the base revision's do not); an unreadable R lock is one, and lends no R pins.
    """
    entries: list[Listed] = []
    pins: list[LockedPin] = []
    served_r: list[Listed] = []  # R entries a CRAN-like repository serves
    r_pins: tuple[RPin, ...] = ()
    r_lock = R_LOCK_ABSENT
    problems: list[Problem] = []
    prefix = requirements_dir.rstrip("/") + "/"
    for path in sorted(files):
        if not path.startswith(prefix) or "/" in path[len(prefix) :]:
            continue
        stem, _, suffix = path[len(prefix) :].rpartition(".")
        text = files[path]
        if path[len(prefix) :] == CRAN_LOCK_NAME:
            r_pins, r_lock, found = _r_lock(path, text)
            problems.extend(found)
        elif suffix == "toml":
            req_set, found = parse_set(Path(path), text)
            problems.extend(found)
            if req_set is not None:
                entries.extend(Listed(stem, path, e) for e in req_set.all_entries())
                if stem == INDEX_ONLY:
                    pins.extend(
                        LockedPin(e.key, e.version, INDEX_ONLY, True) for e in req_set.python
                    )
                if stem == INDEX_ONLY or req_set.r_source == "cran":
                    served_r.extend(Listed(stem, path, e) for e in req_set.r)
        elif "." + suffix == LOCK_SUFFIX:
            for package in split_blocks(text):
                direct, via = lock_via(package.text)
                pins.append(LockedPin(package.name, package.version, stem, direct, via))
    if r_lock == R_LOCK_ABSENT:  # a revision from before the R lock: its entries, no closure
        r_pins = _r_pins_of_entries(served_r)
    return State(tuple(entries), tuple(pins), r_pins, r_lock), problems


def _r_lock(path: str, text: str) -> tuple[tuple[RPin, ...], str, list[Problem]]:
    """The R lock's pins and how it was read; a Problem when it cannot be read."""
    try:
        lock = parse_cran_lock(text, path)
    except StaleError as exc:
        return (), R_LOCK_UNREADABLE, [Problem(path, 0, exc.message, exc.hint)]
    pins = tuple(
        RPin(
            p.name,
            p.version,
            p.vetted_in,
            p.dependency_of,
            RFacts(
                p.package.fields.get("License", ""),
                p.package.needs_compilation,
                p.package.repository,
            ),
        )
        for p in lock.packages
    )
    return pins, R_LOCK_READ if lock.intact else R_LOCK_EDITED, []


def _r_pins_of_entries(served: Sequence[Listed]) -> tuple[RPin, ...]:
    sources: dict[tuple[str, str], set[str]] = {}
    for listed in served:
        sources.setdefault((listed.entry.name, listed.entry.version), set()).add(listed.source)
    return tuple(
        RPin(name, version, tuple(sorted(where)), ())
        for (name, version), where in sorted(sources.items())
    )


def lock_via(block: str) -> tuple[bool, tuple[str, ...]]:
    """(asked for directly, the packages that need it) from one lock block's `# via` lines:
    `-r base.in` means an entry of the set asks for it."""
    names = via_names(block)
    direct = any(name.startswith("-r ") for name in names)
    return direct, tuple(n for n in names if not n.startswith("-"))


# --- what changed ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryChange:
    """One entry that the pull request adds, changes (version, extras or set), edits (only
    its text) or removes."""

    kind: str  # "added" | "changed" | "edited" | "removed"
    ecosystem: str
    name: str
    old_version: str | None
    new_version: str | None
    old_source: str | None
    new_source: str | None
    requested_by: str
    reason: str
    safe_because: str | None
    file: str
    line: int

    @property
    def needs_confirmation(self) -> bool:
        return self.kind in ("added", "changed")

    @property
    def confirmed(self) -> bool:
        return bool(self.safe_because and self.safe_because.strip())


@dataclass(frozen=True)
class PackageFacts:
    """What the upstream index says about one version of a project; `problem` when it could
    not say (facts missing then)."""

    name: str
    version: str
    summary: str = ""
    license: str = ""
    project_url: str = ""
    source_url: str = ""
    uploaded: str = ""  # the version's first file, ISO 8601 date
    first_release: str = ""  # the project's first file, ISO 8601 date
    yanked: bool = False
    yanked_reason: str = ""
    metadata: bool = True  # False: the index has no metadata file for the version's wheels
    problem: str = ""


@dataclass(frozen=True)
class NewPackage:
    """A Python package (name) that neither the base's locks nor its index served."""

    name: str
    version: str
    where: tuple[str, ...]  # lock set names and/or "index-only"
    direct: bool
    via: tuple[str, ...]
    facts: PackageFacts | None = None


@dataclass(frozen=True)
class VersionChange:
    name: str
    old: tuple[str, ...]
    new: tuple[str, ...]
    kind: str  # "major" | "minor" | "patch" | "other" | "downgrade"
    where: tuple[str, ...]


@dataclass(frozen=True)
class LeavingPackage:
    name: str
    old: tuple[str, ...]
    where: tuple[str, ...]


@dataclass(frozen=True)
class NewRPackage:
    """An R package (name) that the base's R lock did not have, with its lock stanza's facts."""

    name: str
    version: str
    vetted_in: tuple[str, ...]
    dependency_of: tuple[str, ...]
    facts: RFacts | None


@dataclass(frozen=True)
class RVersionChange:
    name: str
    old: tuple[str, ...]
    new: tuple[str, ...]
    kind: str  # as VersionChange's, in R's version order
    vetted_in: tuple[str, ...]  # of the head's versions
    dependency_of: tuple[str, ...]


@dataclass(frozen=True)
class RLeaving:
    name: str
    old: tuple[str, ...]
    vetted_in: tuple[str, ...]  # of the base's versions
    dependency_of: tuple[str, ...]


R_LOCK_NOTES = {
    R_LOCK_ABSENT: "the working tree has no requirements/cran.lock (imagebot lock writes it): "
    "R packages are its entries only, without their dependencies or facts",
    R_LOCK_EDITED: "requirements/cran.lock was edited by hand (its content digest does not "
    "match): these facts are not what imagebot lock copied from the upstream",
}


@dataclass(frozen=True)
class RChanges:
    """The R packages that enter, change or leave the R lock (`requirements/cran.lock`)."""

    new_packages: tuple[NewRPackage, ...] = ()
    version_changes: tuple[RVersionChange, ...] = ()
    leaving: tuple[RLeaving, ...] = ()
    note: str = ""  # when the working tree's R lock is absent or edited by hand


@dataclass(frozen=True)
class Changes:
    entries: tuple[EntryChange, ...]
    new_packages: tuple[NewPackage, ...]
    version_changes: tuple[VersionChange, ...]
    leaving: tuple[LeavingPackage, ...]
    r: RChanges = field(default_factory=RChanges)

    def pins_to_check(self) -> list[tuple[str, str]]:
        """Every Python (name, version) that is new or changed: what facts and audits cover."""
        found = {(p.name, p.version) for p in self.new_packages}
        found |= {(c.name, v) for c in self.version_changes for v in c.new if v not in c.old}
        return sorted(found)

    def r_pins_to_check(self) -> list[tuple[str, str]]:
        """Every R (name, version) that is new or changed: what audits cover."""
        found = {(p.name, p.version) for p in self.r.new_packages}
        found |= {(c.name, v) for c in self.r.version_changes for v in c.new if v not in c.old}
        return sorted(found)


_TEXT_FIELDS = ("reason", "requested_by", CONFIRMATION_FIELD, "import_name")


def compare(base: State, head: State) -> Changes:
    return Changes(
        entries=tuple(_entry_changes(base.entries, head.entries)),
        **_pin_changes(base.pins, head.pins),
        r=_r_changes(base.r_pins, head.r_pins, _r_lock_note(head)),
    )


def _r_lock_note(head: State) -> str:
    if head.r_lock == R_LOCK_ABSENT and not head.r_pins:
        return ""  # no R served at all: the lock has nothing to hold
    return R_LOCK_NOTES.get(head.r_lock, "")


def _r_changes(base: Sequence[RPin], head: Sequence[RPin], note: str) -> RChanges:
    old: dict[str, list[RPin]] = {}
    new: dict[str, list[RPin]] = {}
    for pins, by_name in ((base, old), (head, new)):
        for pin in pins:
            by_name.setdefault(pin.name, []).append(pin)
    new_packages: list[NewRPackage] = []
    version_changes: list[RVersionChange] = []
    for name in sorted(new):
        pins = new[name]
        if name not in old:
            new_packages.extend(
                NewRPackage(p.name, p.version, p.vetted_in, p.dependency_of, p.facts)
                for p in _r_sorted(pins)
            )
            continue
        before, after = _r_versions(old[name]), _r_versions(pins)
        if set(before) != set(after):
            version_changes.append(
                RVersionChange(name, before, after, r_change_kind(before, after), *_r_roles(pins))
            )
    leaving = [
        RLeaving(name, _r_versions(old[name]), *_r_roles(old[name]))
        for name in sorted(set(old) - set(new))
    ]
    return RChanges(tuple(new_packages), tuple(version_changes), tuple(leaving), note)


def _r_sorted(pins: Sequence[RPin]) -> list[RPin]:
    from imagebot.cran import version_key

    return sorted(pins, key=lambda p: version_key(p.version))


def _r_versions(pins: Sequence[RPin]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.version for p in _r_sorted(pins)))


def _r_roles(pins: Sequence[RPin]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (
        tuple(sorted({s for p in pins for s in p.vetted_in})),
        tuple(sorted({d for p in pins for d in p.dependency_of})),
    )


def r_change_kind(old: Sequence[str], new: Sequence[str]) -> str:
    """change_kind in R's version order ("1.1-0" is 1.1.0): major, minor, patch, other for an
    upgrade of the highest version; else downgrade."""
    from imagebot.cran import version_key

    try:
        a, b = version_key(old[-1]), version_key(new[-1])
    except (ValueError, IndexError):
        return "other"
    if b < a:
        return "downgrade"
    for index, kind in enumerate(("major", "minor", "patch")):
        if (a[index] if index < len(a) else 0) != (b[index] if index < len(b) else 0):
            return kind
    return "other"


def _entry_changes(base: Sequence[Listed], head: Sequence[Listed]) -> list[EntryChange]:
    old = {listed.identity: listed for listed in base}
    new = {listed.identity: listed for listed in head}
    changes: list[EntryChange] = []
    for identity, listed in new.items():
        before = old.get(identity)
        if before is None:
            changes.append(_change("added", None, listed))
            continue
        a, b = before.entry, listed.entry
        if (a.version, a.extras, before.source) != (b.version, b.extras, listed.source):
            changes.append(_change("changed", before, listed))
        elif any(_text(a, f) != _text(b, f) for f in _TEXT_FIELDS):
            changes.append(_change("edited", before, listed))
    for identity, listed in old.items():
        if identity not in new:
            changes.append(_change("removed", listed, None))
    order = {"added": 0, "changed": 1, "edited": 2, "removed": 3}
    return sorted(changes, key=lambda c: (order[c.kind], c.ecosystem, c.name, c.file))


def _text(entry: Requirement, name: str) -> str | None:
    value = getattr(entry, name, None)
    return value if isinstance(value, str) else None


def _change(kind: str, before: Listed | None, after: Listed | None) -> EntryChange:
    shown = after or before
    if shown is None:  # _entry_changes always passes one of them
        raise ValueError("an entry change needs an old or a new entry")
    entry = shown.entry
    return EntryChange(
        kind=kind,
        ecosystem=entry.ecosystem,
        name=entry.name,
        old_version=before.entry.version if before else None,
        new_version=after.entry.version if after else None,
        old_source=before.source if before else None,
        new_source=after.source if after else None,
        requested_by=entry.requested_by,
        reason=entry.reason,
        safe_because=_text(entry, CONFIRMATION_FIELD),
        file=shown.file,
        line=entry.line,
    )


def _by_name(pins: Sequence[LockedPin]) -> dict[str, list[LockedPin]]:
    found: dict[str, list[LockedPin]] = {}
    for pin in pins:
        found.setdefault(pin.name, []).append(pin)
    return found


def _pin_changes(base: Sequence[LockedPin], head: Sequence[LockedPin]) -> dict[str, Any]:
    old, new = _by_name(base), _by_name(head)
    new_packages: list[NewPackage] = []
    version_changes: list[VersionChange] = []
    leaving: list[LeavingPackage] = []
    for name in sorted(new):
        pins = new[name]
        versions = _versions(pins)
        if name not in old:
            for version in versions:
                same = [p for p in pins if p.version == version]
                new_packages.append(
                    NewPackage(
                        name,
                        version,
                        _places(same),
                        any(p.direct for p in same),
                        tuple(sorted({v for p in same for v in p.via})),
                    )
                )
            continue
        before = _versions(old[name])
        if set(before) != set(versions):
            version_changes.append(
                VersionChange(name, before, versions, change_kind(before, versions), _places(pins))
            )
    for name in sorted(set(old) - set(new)):
        leaving.append(LeavingPackage(name, _versions(old[name]), _places(old[name])))
    return {
        "new_packages": tuple(new_packages),
        "version_changes": tuple(version_changes),
        "leaving": tuple(leaving),
    }


def _places(pins: Sequence[LockedPin]) -> tuple[str, ...]:
    return tuple(sorted({p.where for p in pins}))


def _versions(pins: Sequence[LockedPin]) -> tuple[str, ...]:
    from imagebot.index_pages import sorted_versions

    return tuple(sorted_versions({p.version for p in pins}))


def change_kind(old: Sequence[str], new: Sequence[str]) -> str:
    """major, minor, patch (or other) for an upgrade of the highest version; else downgrade."""
    from packaging.version import InvalidVersion, Version

    try:
        a, b = Version(old[-1]), Version(new[-1])
    except (InvalidVersion, IndexError):
        return "other"
    if b < a:
        return "downgrade"
    for index, kind in enumerate(("major", "minor", "patch")):
        if _part(a, index) != _part(b, index):
            return kind
    return "other"


def _part(version: Any, index: int) -> int:
    release: tuple[int, ...] = version.release
    return release[index] if index < len(release) else 0


def confirmation_problems(changes: Changes) -> list[Problem]:
    """One problem per entry added or changed without the requester's confirmation."""
    return [
        Problem(
            change.file,
            change.line,
            f"{change.ecosystem} entry {change.name!r} is {change.kind} without the "
            f"requester's confirmation that it is safe ({CONFIRMATION_FIELD})",
            CONFIRMATION_HINT,
        )
        for change in changes.entries
        if change.needs_confirmation and not change.confirmed
    ]


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vulnerability:
    name: str
    version: str
    id: str
    aliases: tuple[str, ...] = ()
    summary: str = ""
    fixed: tuple[str, ...] = ()
    waived: str = ""  # the waiver's reason when one covers it
    ecosystem: str = "PyPI"  # the OSV ecosystem: PyPI or CRAN (an R package)


@dataclass(frozen=True)
class Vulnerabilities:
    """The "Known vulnerabilities" section: `checked` is False when no audit ran (`note` why)."""

    checked: bool
    note: str = ""
    found: tuple[Vulnerability, ...] = ()


NOT_AUDITED = Vulnerabilities(False, "not checked: no advisory source is available to review")


@dataclass(frozen=True)
class RVerified:
    """The head R lock's stanzas that are new or changed since the base, each found in its
    upstream's PACKAGES exactly as the lock says (else the review fails before any report)."""

    packages: int = 0  # stanzas checked; 0: none new or changed, and no request was made
    upstreams: tuple[str, ...] = ()  # the upstreams whose PACKAGES were read
    requests: int = 0
    # the imagebot.toml keys choosing those upstreams that this pull request changes: its own
    # upstream vouched for its lock
    changed_by_pull_request: tuple[str, ...] = ()


WHO_THIS_MAY_HURT = "not reported yet: requesters and registered environments (issue 13)"


@dataclass(frozen=True)
class Review:
    base: str  # what the working tree was compared with, e.g. "origin/main (1a2b3c4d)"
    changes: Changes
    facts_source: str = ""  # the upstream index the facts came from
    requests: int = 0  # HTTP requests made for the facts
    vulnerabilities: Vulnerabilities = NOT_AUDITED
    r_verified: RVerified = field(default_factory=RVerified)
    who_this_may_hurt: str = WHO_THIS_MAY_HURT
    problems: tuple[Problem, ...] = field(default=())  # entries without a confirmation
    config: ConfigChanges = field(default_factory=ConfigChanges)

    @property
    def all_problems(self) -> tuple[Problem, ...]:
        """What fails the review (exit 4): an unaccepted imagebot.toml change, then the
        entries without a confirmation."""
        return (*self.config.problems(), *self.problems)


def with_facts(changes: Changes, facts: Mapping[tuple[str, str], PackageFacts]) -> Changes:
    return replace(
        changes,
        new_packages=tuple(
            replace(p, facts=facts.get((p.name, p.version))) for p in changes.new_packages
        ),
    )
