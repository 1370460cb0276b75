"""PURE: what a pull request changes in the vetted packages, as a report for its reviewer.

Two states (the base revision's and the working tree's requirement files and locks) are
compared into a `Changes`: the entries added, changed, edited or removed, the Python pins that
enter, change or leave the locks and the index, and the R packages that enter, change or leave
the R lock (`requirements/cran.lock`: every R version the vetted CRAN-like repository serves,
dependencies included). The caller adds facts about the new Python packages (`PackageFacts`,
from the upstream index) and known vulnerabilities, and gets a `Review`, which renders as text,
Markdown or JSON. An R package's facts are its lock stanza's (the upstream's PACKAGES fields),
which the caller has had the upstream vouch for (`RVerified`). An entry added or changed
without the requester's confirmation (`safe_because`) is a problem of the review (exit 4,
file:line). So is a change to imagebot.toml (`config_changes`: every key whose raw value the
pull request adds, changes or removes, shown first) until a reviewer accepts it.

Every string in a report comes from a pull request or from an upstream index, so the renderers
treat all of it as hostile: control characters go, Azure's command markers (`##vso[`, `##[`)
are neutralised in text, and Markdown's special characters are escaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from imagebot.advisories import CRAN
from imagebot.cranlock import CRAN_LOCK_NAME, parse_cran_lock
from imagebot.errors import Problem, StaleError
from imagebot.lockfile import LOCK_SUFFIX, split_blocks, via_names
from imagebot.requirements import Requirement, parse_set

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


# --- imagebot.toml: where packages come from and go -----------------------------------------

CONFIG_FILE = "imagebot.toml"
ACCEPT_OPTION = "--accept-config"
ACCEPT_VARIABLE = "IMAGEBOT_REVIEW_ACCEPT_CONFIG"
# The keys that choose the CRAN-like upstream which vouches for the R lock
# (imagebot.cranlock.cran_upstream_urls, and the User-Agent it is asked with).
_R_UPSTREAM_KEYS = (
    ("index", "cran_upstream"),
    ("index", "cran_snapshots"),
    ("index", "r_user_agent"),
)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


@dataclass(frozen=True)
class ConfigChange:
    """One key of imagebot.toml whose value the pull request adds, changes or removes: the
    file's own TOML value (before `${VAR:-default}` expansion, profiles included), as the diff
    shows it."""

    key: str  # dotted, with TOML quoting where a part is not a bare key
    kind: str  # "added" | "changed" | "removed"
    old: Any  # the base's value; None when the base does not set the key
    new: Any  # the working tree's value; None when it no longer sets the key
    meaning: str  # what the key decides (imagebot.config's key metadata); "" for no known key
    r_upstream: bool = False  # it picks the upstream that vouches for the R lock


@dataclass(frozen=True)
class ConfigChanges:
    """What the pull request changes in imagebot.toml. Any change fails the review (exit 4)
    until it is accepted: a reviewer passes the `fingerprint` of exactly these changes."""

    changes: tuple[ConfigChange, ...] = ()
    note: str = ""  # why the base's (or the working tree's) file could not be compared
    accepted_with: str = ""  # the acceptance given, when it matches the fingerprint
    refused: str = ""  # an acceptance given that is not for these changes

    @property
    def shown(self) -> bool:
        return bool(self.changes or self.note)

    @property
    def fingerprint(self) -> str:
        """16 hex digits of sha256 over every changed key with both values: an acceptance is
        for these exact changes, and a later push that changes a value again needs a new one."""
        if not self.changes:
            return ""
        import hashlib
        import json

        data = [[c.key, c.kind, _jsonable(c.old), _jsonable(c.new)] for c in self.changes]
        text = json.dumps(data, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]

    @property
    def accepted(self) -> bool:
        return bool(self.changes) and self.accepted_with == self.fingerprint

    @property
    def r_upstream_keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.changes if c.r_upstream)

    def problems(self) -> list[Problem]:
        """One problem when a change is not accepted (the review fails with exit 4)."""
        if not self.changes or self.accepted:
            return []
        keys = _plain(", ".join(c.key for c in self.changes[:5]))  # printed outside the report
        more = f" and {len(self.changes) - 5} more" if len(self.changes) > 5 else ""
        return [
            Problem(
                CONFIG_FILE,
                0,
                f"this pull request changes {len(self.changes)} key(s) that decide what gets "
                f"built, served or run and where packages come from and go ({keys}{more}), and "
                "no reviewer has accepted these changes",
                f"a platform maintainer who has read them reruns the review with "
                f"{ACCEPT_OPTION} {self.fingerprint} (or {ACCEPT_VARIABLE}={self.fingerprint})",
            )
        ]


def config_changes(
    base_text: str | None,
    head_text: str,
    *,
    profile: str | None = None,
    base_unreadable: str = "",
) -> ConfigChanges:
    """Every key whose value differs between the base's imagebot.toml (`base_text`; None when
    the base has none, `base_unreadable` says why when it could not be read) and the working
    tree's, compared as the files say (raw TOML, `[profiles.*]` included). A base that is
    absent or does not parse lends no keys: every key of the working tree's is then added, and
    the note says why. `profile` is the one the review runs with: a change under
    `[profiles.PROFILE]` can pick the R upstream as a top-level one can."""
    head, head_problem = _toml(head_text)
    if head is None:
        return ConfigChanges(note=f"the working tree's {CONFIG_FILE} {head_problem}")
    note = ""
    if base_unreadable or base_text is None:
        why = base_unreadable or "does not exist"
        note = f"the base's {CONFIG_FILE} {why}: every key of the working tree's is new"
        base: dict[str, Any] = {}
    else:
        parsed, problem = _toml(base_text)
        if parsed is None:
            note = f"the base's {CONFIG_FILE} {problem}: every key of the working tree's is new"
        base = parsed or {}
    old, new = _flatten(base), _flatten(head)
    changes = []
    for path in sorted(set(old) | set(new), key=lambda p: tuple(map(str, p))):
        before, after = old.get(path), new.get(path)
        if before == after and type(before) is type(after):
            continue
        kind = "added" if path not in old else "removed" if path not in new else "changed"
        changes.append(
            ConfigChange(
                ".".join(_key_part(part) for part in path),
                kind,
                before,
                after,
                config_key_meaning(path),
                _picks_r_upstream(path, profile),
            )
        )
    return ConfigChanges(tuple(changes), note)


def accept_config_changes(changes: ConfigChanges, given: str | None) -> ConfigChanges:
    """`changes`, accepted when `given` is their fingerprint (else `refused` shows it)."""
    if not given:
        return changes
    if changes.changes and given.strip() == changes.fingerprint:
        return replace(changes, accepted_with=changes.fingerprint)
    return replace(changes, refused=given)


def config_key_meaning(path: Sequence[str]) -> str:
    """What the key at `path` decides, from imagebot.config's key metadata (written once
    there); "" when imagebot reads no such key."""
    import dataclasses

    from imagebot import config

    parts = list(path)
    if len(parts) > 2 and parts[0] == "profiles":
        parts = parts[2:]
    tables: dict[str, tuple[type, int]] = {
        "project": (config.ProjectConfig, 1),
        "registry": (config.RegistryConfig, 1),
        "index": (config.IndexConfig, 1),
        "advisories": (config.AdvisoriesConfig, 1),
        "images": (config.ImageConfig, 2),
        "environments": (config.EnvironmentConfig, 2),
    }
    if not parts or parts[0] not in tables:
        return ""
    cls, at = tables[parts[0]]
    if len(parts) <= at:
        return ""
    for spec in dataclasses.fields(cls):
        if spec.name == parts[at] and "meaning" in spec.metadata:
            return str(spec.metadata["meaning"])
    return ""


def _picks_r_upstream(path: Sequence[str], profile: str | None) -> bool:
    parts = tuple(path)
    if len(parts) > 2 and parts[0] == "profiles":
        if parts[1] != profile:
            return False
        parts = parts[2:]
    if parts[:2] in _R_UPSTREAM_KEYS:
        return True
    return len(parts) == 3 and parts[0] == "images" and parts[2] == "r_repo"


def _toml(text: str) -> tuple[dict[str, Any] | None, str]:
    import tomllib

    try:
        return tomllib.loads(text), ""
    except tomllib.TOMLDecodeError as exc:
        return None, f"is not valid TOML ({clean(str(exc), 120)})"
    except RecursionError:
        return None, "is not valid TOML (nested too deeply)"


def _flatten(table: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """`{key path: value}` of every leaf; a table with keys is not a leaf, an empty one is."""
    leaves: dict[tuple[str, ...], Any] = {}
    for name, value in table.items():
        path = (*prefix, name)
        if isinstance(value, Mapping) and value:
            leaves.update(_flatten(value, path))
        else:
            leaves[path] = value
    return leaves


def _key_part(name: str) -> str:
    import json

    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=True)


def _jsonable(value: Any) -> Any:
    """A TOML value as JSON data: dates and times as ISO 8601 text, a float JSON cannot hold
    (inf, nan) as text."""
    import math

    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def config_value_text(value: Any) -> str:
    """A value as the report shows it: JSON with every non-ASCII character escaped, so a
    look-alike letter in a host name, a newline or a bidirectional control is seen, not acted
    on; "(not set)" for a key the file does not set."""
    import json

    if value is None:
        return "(not set)"
    return json.dumps(_jsonable(value), ensure_ascii=True)


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


NO_METADATA = "summary, licence and URLs unknown: the index has no metadata file (PEP 658)"
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


# --- rendering: every string is untrusted ----------------------------------------------------

_UNPRINTABLE = re.compile(r"[^\S ]|[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f]")


def clean(text: str, limit: int = 300) -> str:
    """One printable line: whitespace runs become one space, other invisibles go, cut to
    `limit` characters."""
    text = " ".join(_UNPRINTABLE.sub(" ", text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _plain(text: str, limit: int = 300) -> str:
    # Azure Pipelines reads `##vso[` and `##[` anywhere in a line of the log as a command.
    from imagebot.console import neutralise

    return neutralise(clean(text, limit))


# Characters that make emphasis, code, links, HTML, headings or table cells; everything the
# renderer writes puts untrusted text after a prefix, so line-start markers need no escape.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<|~#])")


def _md(text: str, limit: int = 300) -> str:
    return _MD_SPECIAL.sub(r"\\\1", clean(text, limit))


def _md_url(url: str) -> str:
    text = clean(url, 500)
    if re.fullmatch(r"https?://[A-Za-z0-9._~:/?#\[\]@!&*+,;=%-]+", text) and ")" not in text:
        return f"<{text}>"
    return _md(text)


def _versions_text(versions: Sequence[str]) -> str:
    return ", ".join(versions) or "none"


def _entry_versions(change: EntryChange) -> str:
    if change.kind == "added":
        return change.new_version or ""
    if change.kind == "removed":
        return change.old_version or ""
    if change.old_version != change.new_version:
        return f"{change.old_version} -> {change.new_version}"
    return change.new_version or ""


def _entry_place(change: EntryChange) -> str:
    def place(source: str | None) -> str:
        return "index-only" if source == INDEX_ONLY else f"set {source}"

    if change.old_source and change.new_source and change.old_source != change.new_source:
        return f"{place(change.old_source)} -> {place(change.new_source)}"
    return place(change.new_source or change.old_source)


def _entry_at(change: EntryChange) -> str:
    at = f"{change.file}:{change.line}"
    return f"{at} in the base" if change.kind == "removed" else at


def _where(places: Sequence[str]) -> str:
    return ", ".join("the index (index-only)" if p == INDEX_ONLY else f"{p}.lock" for p in places)


def _how(package: NewPackage) -> str:
    if package.direct and package.via:
        return f"asked for, and needed by {', '.join(package.via)}"
    if package.direct:
        return "asked for"
    return f"needed by {', '.join(package.via)}" if package.via else "dependency"


_KIND_TEXT = {
    "major": "MAJOR upgrade",
    "minor": "minor upgrade",
    "patch": "patch upgrade",
    "other": "upgrade",
    "downgrade": "DOWNGRADE",
}
_MARK = {"added": "+", "changed": "~", "edited": "*", "removed": "-"}


def _yanked_text(facts: PackageFacts) -> str:
    if not facts.yanked:
        return "not yanked"
    return f"YANKED ({facts.yanked_reason})" if facts.yanked_reason else "YANKED"


def render_text(review: Review) -> str:
    p = _plain
    changes = review.changes
    out = [f"imagebot review: the working tree against {p(review.base)}", ""]
    out += _text_config(review.config)
    out += _text_entries(changes.entries)
    source = f"; facts from {p(review.facts_source)}" if review.facts_source else ""
    out.append(
        f"Python packages new to the locks or the index ({len(changes.new_packages)}"
        f"{source}, {review.requests} requests)"
    )
    for n in changes.new_packages:
        out.append(f"  {p(n.name)} {p(n.version)}  {p(_how(n))}; in {p(_where(n.where))}")
        out.extend(f"      {line}" for line in _facts_lines(n.facts, p))
    if not changes.new_packages:
        out.append("  none")
    out.append("")
    out.append(f"Version changes ({len(changes.version_changes)})")
    for v in changes.version_changes:
        out.append(
            f"  {p(v.name)} {p(_versions_text(v.old))} -> {p(_versions_text(v.new))}"
            f"  {_KIND_TEXT[v.kind]}; in {p(_where(v.where))}"
        )
    if not changes.version_changes:
        out.append("  none")
    out.append("")
    out.append(f"Packages that leave ({len(changes.leaving)})")
    for gone in changes.leaving:
        out.append(
            f"  {p(gone.name)} {p(_versions_text(gone.old))}; was in {p(_where(gone.where))}"
        )
    if not changes.leaving:
        out.append("  none")
    out.append("")
    out += _text_r(changes.r, review.r_verified)
    out.append("Known vulnerabilities")
    out.extend(f"  {line}" for line in _vulnerability_lines(review.vulnerabilities, p))
    out.append("")
    out.append("Who this may hurt")
    out.extend(  # imagebot.impact.render_text: a line per package, indented lines under it
        f"    {p(line)}" if line.startswith("  ") else f"  {p(line)}"
        for line in review.who_this_may_hurt.splitlines()
    )
    out.append("")
    out.append(_verdict(review))
    return "\n".join(out) + "\n"


def _text_entries(entries: Sequence[EntryChange]) -> list[str]:
    """The text report's section of set and index-only entries the pull request changes."""
    p = _plain
    out = [f"Entries added, changed or removed ({len(entries)})"]
    for c in entries:
        out.append(
            f"  {_MARK[c.kind]} {c.kind} {c.ecosystem} {p(c.name)} {p(_entry_versions(c))}"
            f"  {p(_entry_place(c))}  {p(_entry_at(c))}"
        )
        out.append(f"      requested by {p(c.requested_by)}: {p(c.reason)}")
        if c.confirmed:
            out.append(f"      safe because: {p(c.safe_because or '')}")
        elif c.needs_confirmation:
            out.append(f"      safe because: MISSING ({CONFIRMATION_FIELD} is required)")
    if not entries:
        out.append("  none")
    return [*out, ""]


def _text_r(r: RChanges, verified: RVerified) -> list[str]:
    """The text report's R sections: packages new to, changed in and leaving the R lock."""
    p = _plain
    out = [f"R packages new to the R lock ({len(r.new_packages)}; {R_FACTS_SOURCE})"]
    if verified.packages:
        out.append(f"  {p(_verified_text(verified))}")
    if r.note:
        out.append(f"  note: {p(r.note)}")
    for n in r.new_packages:
        out.append(f"  {p(n.name)} {p(n.version)}  {p(_r_how(n.vetted_in, n.dependency_of))}")
        out.extend(f"      {line}" for line in _r_facts_lines(n.facts, p))
    if not r.new_packages:
        out.append("  none")
    out += ["", f"R version changes ({len(r.version_changes)})"]
    for v in r.version_changes:
        out.append(
            f"  {p(v.name)} {p(_versions_text(v.old))} -> {p(_versions_text(v.new))}"
            f"  {_KIND_TEXT[v.kind]}; {p(_r_how(v.vetted_in, v.dependency_of))}"
        )
    if not r.version_changes:
        out.append("  none")
    out += ["", f"R packages that leave ({len(r.leaving)})"]
    for gone in r.leaving:
        out.append(
            f"  {p(gone.name)} {p(_versions_text(gone.old))}; was "
            f"{p(_r_how(gone.vetted_in, gone.dependency_of))}"
        )
    if not r.leaving:
        out.append("  none")
    return [*out, ""]


R_FACTS_SOURCE = (
    "facts from requirements/cran.lock, the upstream's PACKAGES fields, which record no "
    "publication date"
)
NO_R_FACTS = "facts: not in requirements/cran.lock (imagebot lock writes them)"


def _verified_text(verified: RVerified) -> str:
    requests = f"{verified.requests} request{'s' if verified.requests != 1 else ''}"
    verb = "lists" if len(verified.upstreams) == 1 else "list"
    return (
        f"verified: the PACKAGES of {' and '.join(verified.upstreams)} {verb} the "
        f"{verified.packages} new or changed package versions of requirements/cran.lock exactly "
        f"as the lock says ({requests})" + _upstream_changed_text(verified)
    )


def _upstream_changed_text(verified: RVerified) -> str:
    if not verified.changed_by_pull_request:
        return ""
    keys = ", ".join(verified.changed_by_pull_request)
    return (
        f"; BUT this pull request itself sets that upstream (it changes {CONFIG_FILE}'s {keys}), "
        f"so the upstream vouching for its lock is the pull request's own: see "
        f'"{CONFIG_SECTION}"'
    )


CONFIG_SECTION = "Where packages come from and go"
CONFIG_INTRO = (
    f"this pull request changes {CONFIG_FILE}: keys that decide what gets built, served and run "
    "and where packages come from and go (a package request needs none of them); values as the "
    "file writes them, before ${VAR:-default} expansion"
)


def _config_title(config: ConfigChanges) -> str:
    state = "accepted" if config.accepted else "NOT accepted" if config.changes else "not compared"
    return f"{CONFIG_SECTION}: {CONFIG_FILE} changes ({len(config.changes)}; {state})"


def _config_verdict(config: ConfigChanges) -> str:
    if config.accepted:
        return (
            f"accepted with {ACCEPT_OPTION} {config.fingerprint}: exactly these changes, as a "
            "reviewer confirmed"
        )
    refused = (
        f"the acceptance given ({config.refused}) is not for these changes; "
        if config.refused
        else ""
    )
    return (
        f"NOT accepted: {refused}the review fails (exit 4) until a platform maintainer who has "
        f"read these changes reruns it with {ACCEPT_OPTION} {config.fingerprint} (or "
        f"{ACCEPT_VARIABLE}={config.fingerprint})"
    )


def _text_config(config: ConfigChanges) -> list[str]:
    """The text report's first section, only when imagebot.toml changed (or was not read)."""
    if not config.shown:
        return []
    p = _plain
    out = [f"!! {_config_title(config)}", f"  {p(CONFIG_INTRO)}"]
    if config.note:
        out.append(f"  note: {p(config.note)}")
    for c in config.changes:
        out.append(
            f"  {_MARK[c.kind]} {p(c.key)}: {p(config_value_text(c.old), 500)} -> "
            f"{p(config_value_text(c.new), 500)}"
        )
        out.append(
            f"      {p(c.meaning or 'not a key imagebot reads (imagebot check refuses it)')}"
        )
        if c.r_upstream:
            out.append("      it picks the upstream that vouches for requirements/cran.lock")
    if config.changes:
        out.append(f"  {p(_config_verdict(config))}")
    return [*out, ""]


def _md_config(config: ConfigChanges) -> list[str]:
    """The Markdown report's first section, only when imagebot.toml changed (or was not read)."""
    if not config.shown:
        return []
    m = _md
    out = [
        f"### {m(_config_title(config))}",
        "",
        f"**{m(CONFIG_INTRO[0].upper() + CONFIG_INTRO[1:])}.**",
        "",
    ]
    if config.note:
        out += [f"**Note: {m(config.note)}.**", ""]
    if config.changes:
        out.append("| | key | before | after | what it decides |")
        out.append("|---|---|---|---|---|")
        for c in config.changes:
            meaning = m(c.meaning) or "not a key imagebot reads (imagebot check refuses it)"
            if c.r_upstream:
                meaning += "; **it picks the upstream that vouches for requirements/cran.lock**"
            out.append(
                f"| {c.kind} | {m(c.key)} | {m(config_value_text(c.old), 500)} | "
                f"{m(config_value_text(c.new), 500)} | {meaning} |"
            )
        out += [
            "",
            f"**{m(_config_verdict(config))}**"
            if not config.accepted
            else m(_config_verdict(config)),
            "",
        ]
    return out


def _config_json(config: ConfigChanges) -> dict[str, Any]:
    return {
        "file": CONFIG_FILE,
        "changes": [
            {**_asdict(c, exclude=("old", "new")), "old": _jsonable(c.old), "new": _jsonable(c.new)}
            for c in config.changes
        ],
        "note": config.note,
        "fingerprint": config.fingerprint,
        "accepted": config.accepted,
    }


def _r_how(vetted_in: Sequence[str], dependency_of: Sequence[str]) -> str:
    """Why an R package is in the lock: the entries that vet it, the vetted pins that need it."""
    parts = []
    if vetted_in:
        places = ", ".join("index-only" if s == INDEX_ONLY else f"set {s}" for s in vetted_in)
        parts.append(f"asked for in {places}")
    if dependency_of:
        parts.append(f"needed by {', '.join(dependency_of)}")
    return "; ".join(parts) or "in the lock"


def _r_facts_lines(facts: RFacts | None, p: Any) -> list[str]:
    if facts is None:
        return [NO_R_FACTS]
    return [
        f"licence: {p(facts.license) or 'not stated'}",
        f"compiles C/C++/Fortran code: {'yes' if facts.needs_compilation else 'no'}",
        f"from {p(facts.upstream) or 'an upstream the lock does not name'}",
    ]


def _facts_lines(facts: PackageFacts | None, p: Any) -> list[str]:
    if facts is None:
        return ["facts: not looked up"]
    if facts.problem:
        return [f"facts: unavailable ({p(facts.problem)})"]
    if facts.metadata:
        lines = [p(facts.summary) or "(no summary)"]
        lines.append(f"licence: {p(facts.license) or 'not stated'}")
        lines.append(f"project: {p(facts.project_url) or 'not stated'}")
        lines.append(f"source: {p(facts.source_url) or 'not stated'}")
    else:
        lines = [NO_METADATA]
    lines.append(
        f"uploaded {p(facts.uploaded) or 'unknown'}; first release of the project "
        f"{p(facts.first_release) or 'unknown'}; {p(_yanked_text(facts))}"
    )
    return lines


def _vulnerability_lines(vulns: Vulnerabilities, p: Any) -> list[str]:
    if not vulns.checked:
        return [p(vulns.note)]
    lines = [p(vulns.note)] if vulns.note else []
    if not vulns.found:
        return lines or ["none known"]
    for v in vulns.found:
        aliases = f" ({', '.join(v.aliases)})" if v.aliases else ""
        fixed = f"; fixed in {', '.join(v.fixed)}" if v.fixed else "; no fixed version"
        waived = f"; waived: {v.waived}" if v.waived else ""
        label = "R " if v.ecosystem == CRAN else ""
        lines.append(p(f"{label}{v.name} {v.version}: {v.id}{aliases}{fixed}{waived}"))
        if v.summary:
            lines.append(f"  {p(v.summary)}")
    return lines


def _verdict(review: Review) -> str:
    count = len(review.problems)
    unaccepted = bool(review.config.problems())
    if not count and not unaccepted:
        return "No problems: every added or changed entry carries its requester's confirmation."
    if not count:
        return (
            "Every added or changed entry carries its requester's confirmation, but "
            f"{CONFIG_FILE} changes that no reviewer has accepted fail the review; see below."
        )
    noun = "entry lacks" if count == 1 else "entries lack"
    also = (
        f" {CONFIG_FILE} changes that no reviewer has accepted fail it too." if unaccepted else ""
    )
    return f"{count} {noun} the requester's confirmation ({CONFIRMATION_FIELD}); see below.{also}"


def render_markdown(review: Review) -> str:
    m = _md
    changes = review.changes
    out = ["## Package review", "", f"Compared with {m(review.base)}.", ""]
    out += _md_config(review.config)
    out += _md_entries(changes.entries)
    out += _md_new_packages(review)
    out += _md_version_changes(changes.version_changes)
    out += _md_leaving(changes.leaving)
    out += _md_r(changes.r, review.r_verified)
    out.append("### Known vulnerabilities")
    out.append("")
    out.extend(
        f"- {line}" if not line.startswith("  ") else f"  - {line.strip()}"
        for line in _vulnerability_lines(review.vulnerabilities, m)
    )
    out.append("")
    out.append("### Who this may hurt")
    out.append("")
    out.extend(
        f"  - {m(line)}" if line.startswith("  ") else f"- {m(line)}"
        for line in review.who_this_may_hurt.splitlines()
    )
    out.append("")
    verdict = _verdict(review)
    out.append(f"**{m(verdict)}**" if review.all_problems else m(verdict))
    for problem in review.all_problems:
        out.append(f"- {m(problem.render())}")
    return "\n".join(out) + "\n"


def _md_entries(entries: Sequence[EntryChange]) -> list[str]:
    """The Markdown table of the set and index-only entries the pull request changes."""
    m = _md
    out = [f"### Entries added, changed or removed ({len(entries)})", ""]
    if not entries:
        return [*out, "None.", ""]
    out.append("| | package | version | where | requested by | reason | safe because |")
    out.append("|---|---|---|---|---|---|---|")
    for c in entries:
        if c.confirmed:
            safe = m(c.safe_because or "")
        elif c.needs_confirmation:
            safe = "**missing**"
        else:
            safe = ""
        out.append(
            f"| {c.kind} | {c.ecosystem} {m(c.name)} | {m(_entry_versions(c))} | "
            f"{m(_entry_place(c))} ({m(_entry_at(c))}) | {m(c.requested_by)} | "
            f"{m(c.reason)} | {safe} |"
        )
    return [*out, ""]


def _md_new_packages(review: Review) -> list[str]:
    """The Markdown list of Python packages new to the locks or the index, with their facts."""
    m = _md
    new_packages = review.changes.new_packages
    out = [f"### Python packages new to the locks or the index ({len(new_packages)})", ""]
    if review.facts_source:
        out.append(f"Facts from {_md_url(review.facts_source)}, {review.requests} requests.")
        out.append("")
    for n in new_packages:
        out.append(f"- **{m(n.name)} {m(n.version)}**: {m(_how(n))}; in {m(_where(n.where))}")
        out.extend(f"  - {line}" for line in _facts_markdown(n.facts))
    if not new_packages:
        out.append("None.")
    return [*out, ""]


def _md_version_changes(version_changes: Sequence[VersionChange]) -> list[str]:
    """The Markdown list of version changes; a major upgrade or a downgrade in bold."""
    m = _md
    out = [f"### Version changes ({len(version_changes)})", ""]
    for v in version_changes:
        out.append(
            f"- {m(v.name)} {m(_versions_text(v.old))} → {m(_versions_text(v.new))}: "
            f"{'**' + _KIND_TEXT[v.kind] + '**' if v.kind in ('major', 'downgrade') else _KIND_TEXT[v.kind]}"
            f"; in {m(_where(v.where))}"
        )
    if not version_changes:
        out.append("None.")
    return [*out, ""]


def _md_leaving(leaving: Sequence[LeavingPackage]) -> list[str]:
    """The Markdown list of packages that leave the locks and the index."""
    m = _md
    out = [f"### Packages that leave ({len(leaving)})", ""]
    for gone in leaving:
        out.append(
            f"- {m(gone.name)} {m(_versions_text(gone.old))}; was in {m(_where(gone.where))}"
        )
    if not leaving:
        out.append("None.")
    return [*out, ""]


def _md_r(r: RChanges, verified: RVerified) -> list[str]:
    """The Markdown R sections: packages new to, changed in and leaving the R lock."""
    m = _md
    out = [f"### R packages new to the R lock ({len(r.new_packages)})", ""]
    out += [f"{m(R_FACTS_SOURCE[0].upper() + R_FACTS_SOURCE[1:])}.", ""]
    if verified.packages:
        text = _verified_text(verified)
        out += [f"{m(text[0].upper() + text[1:])}.", ""]
    if r.note:
        out += [f"**Note: {m(r.note)}.**", ""]
    for n in r.new_packages:
        out.append(f"- **{m(n.name)} {m(n.version)}**: {m(_r_how(n.vetted_in, n.dependency_of))}")
        if n.facts is None:
            out.append(f"  - {m(NO_R_FACTS)}")
            continue
        compiles = "yes" if n.facts.needs_compilation else "no"
        upstream = _md_url(n.facts.upstream) if n.facts.upstream else "not named"
        out.append(f"  - licence: {m(n.facts.license) or 'not stated'}")
        out.append(f"  - compiles C/C++/Fortran code: {compiles}; from {upstream}")
    if not r.new_packages:
        out.append("None.")
    out += ["", f"### R version changes ({len(r.version_changes)})", ""]
    for v in r.version_changes:
        kind = _KIND_TEXT[v.kind]
        out.append(
            f"- {m(v.name)} {m(_versions_text(v.old))} → {m(_versions_text(v.new))}: "
            f"{'**' + kind + '**' if v.kind in ('major', 'downgrade') else kind}"
            f"; {m(_r_how(v.vetted_in, v.dependency_of))}"
        )
    if not r.version_changes:
        out.append("None.")
    out += ["", f"### R packages that leave ({len(r.leaving)})", ""]
    for gone in r.leaving:
        out.append(
            f"- {m(gone.name)} {m(_versions_text(gone.old))}; was "
            f"{m(_r_how(gone.vetted_in, gone.dependency_of))}"
        )
    if not r.leaving:
        out.append("None.")
    return [*out, ""]


def _facts_markdown(facts: PackageFacts | None) -> list[str]:
    m = _md
    if facts is None:
        return ["facts: not looked up"]
    if facts.problem:
        return [f"facts unavailable: {m(facts.problem)}"]
    urls = ", ".join(
        f"{label} {_md_url(url)}"
        for label, url in (("project", facts.project_url), ("source", facts.source_url))
        if url
    )
    yanked = f"**{m(_yanked_text(facts))}**" if facts.yanked else "not yanked"
    described = [
        m(facts.summary) or "(no summary)",
        f"licence: {m(facts.license) or 'not stated'}; {urls or 'no project or source URL'}",
    ]
    return [
        *(described if facts.metadata else [m(NO_METADATA)]),
        f"uploaded {m(facts.uploaded) or 'unknown'}, first release of the project "
        f"{m(facts.first_release) or 'unknown'}; {yanked}",
    ]


def review_json(review: Review) -> dict[str, Any]:
    """The review as plain JSON data (values as they are; JSON escapes them)."""
    changes = review.changes
    return {
        "base": review.base,
        "config": _config_json(review.config),
        "entries": [_asdict(c) for c in changes.entries],
        "new_packages": [
            {**_asdict(n, exclude=("facts",)), "facts": _asdict(n.facts) if n.facts else None}
            for n in changes.new_packages
        ],
        "version_changes": [_asdict(v) for v in changes.version_changes],
        "leaving": [_asdict(gone) for gone in changes.leaving],
        "r": {
            "new_packages": [
                {
                    **_asdict(n, exclude=("facts",)),
                    "facts": _asdict(n.facts) if n.facts else None,
                }
                for n in changes.r.new_packages
            ],
            "version_changes": [_asdict(v) for v in changes.r.version_changes],
            "leaving": [_asdict(gone) for gone in changes.r.leaving],
            "note": changes.r.note,
            "verified": _asdict(review.r_verified),
        },
        "facts_source": review.facts_source,
        "requests": review.requests,
        "vulnerabilities": {
            "checked": review.vulnerabilities.checked,
            "note": review.vulnerabilities.note,
            "found": [_asdict(v) for v in review.vulnerabilities.found],
        },
        "who_this_may_hurt": review.who_this_may_hurt,
        "problems": [
            {"file": p.file, "line": p.line, "message": p.message, "hint": p.hint}
            for p in review.all_problems
        ],
    }


def _asdict(obj: Any, exclude: Sequence[str] = ()) -> dict[str, Any]:
    from dataclasses import fields

    return {
        f.name: list(value) if isinstance(value := getattr(obj, f.name), tuple) else value
        for f in fields(obj)
        if f.name not in exclude
    }
