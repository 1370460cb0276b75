"""PURE: OSV advisory records and whether a package version is affected by one.

An OSV record (https://ossf.github.io/osv-schema/) names the packages it affects, each with
ranges of events and an explicit `versions` list:

    affected:
    - package: {ecosystem: PyPI, name: requests}
      ranges:
      - type: ECOSYSTEM
        events: [{introduced: "0"}, {fixed: "2.20.0"}]
      versions: ["2.19.0", ...]

A version is affected when it is in `versions`, or inside an ECOSYSTEM range: events are sorted
by version ("0" first) and walked in order; `introduced` at or below the version opens the range,
`fixed` at or below it closes it, and `last_affected` below it closes it. PyPI versions compare
as PEP 440 versions (`packaging`). GIT and SEMVER ranges are not evaluated: PyPI records carry an
ECOSYSTEM range or the `versions` list for every version they affect. Withdrawn records affect
nothing.

Records come as JSON (the OSV API) or YAML (the Python Packaging Advisory Database); both parse
into the same `Advisory`. `packaging` and `ruamel.yaml` are imported where they are used.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from imagebot.requirements import normalize
from imagebot.validate import InvalidValue

PYPI = "PyPI"  # the OSV ecosystem name of Python packages
CRAN = "CRAN"  # the OSV ecosystem name of R packages (R's own version order, imagebot.cran)
MAX_SUMMARY = 160
_ADVISORY_ID = re.compile(r"[A-Za-z][A-Za-z0-9]*-[A-Za-z0-9._:-]{1,100}", re.ASCII)
_WHITESPACE = re.compile(r"\s+")


class RecordError(ValueError):
    """A record that is not OSV; the caller names the file or URL it came from."""


def advisory_id(value: object) -> str:
    """An OSV id or alias (PYSEC-2018-28, GHSA-x84v-xcm2-53pg, CVE-2018-18074).

    It becomes part of a URL (`/v1/vulns/{id}`) and of printed lines, so it is ASCII letters,
    digits and `-._:` only, a prefix, a dash, then at most 100 characters.
    """
    if not isinstance(value, str) or not _ADVISORY_ID.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:60] + "..."
        raise InvalidValue(
            f"{shown} is not an advisory id",
            "use the id as OSV shows it, e.g. PYSEC-2018-28, GHSA-x84v-xcm2-53pg or CVE-2018-18074",
        )
    return value


def _is_advisory_id(value: object) -> bool:
    return isinstance(value, str) and _ADVISORY_ID.fullmatch(value) is not None


# --- the record model -------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    kind: str  # "introduced" | "fixed" | "last_affected" | "limit"
    version: str


@dataclass(frozen=True)
class Range:
    type: str  # "ECOSYSTEM" | "SEMVER" | "GIT"
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Affected:
    ecosystem: str
    name: str  # PEP 503 normalised for PyPI, as written otherwise
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]


@dataclass(frozen=True)
class Severity:
    type: str  # e.g. CVSS_V3
    score: str  # e.g. the CVSS vector


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str  # one line: the record's summary, else the start of its details
    modified: str
    withdrawn: str  # when it was withdrawn; "" for a record in force
    severity: tuple[Severity, ...]
    severity_label: str  # database_specific.severity (GHSA: LOW, MODERATE, HIGH, CRITICAL)
    affected: tuple[Affected, ...]

    def names(self) -> tuple[str, ...]:
        """The id and every alias: what a waiver may name."""
        return (self.id, *self.aliases)

    def affects(self, ecosystem: str, name: str, version: str) -> bool:
        if self.withdrawn:
            return False
        return any(is_affected(version, a) for a in self._entries(ecosystem, name))

    def fixed_versions(self, ecosystem: str, name: str, version: str) -> tuple[str, ...]:
        """The `fixed` versions above `version`, lowest first: where an upgrade can go."""
        parsed = _version(version, ecosystem)
        fixed: set[str] = set()
        for entry in self._entries(ecosystem, name):
            for rng in entry.ranges:
                if rng.type != "ECOSYSTEM":
                    continue
                for event in rng.events:
                    if event.kind != "fixed":
                        continue
                    target = _version(event.version, ecosystem)
                    if parsed is None or target is None or target > parsed:
                        fixed.add(event.version)
        return tuple(sorted(fixed, key=lambda v: _sort_key(v, ecosystem)))

    def _entries(self, ecosystem: str, name: str) -> Iterable[Affected]:
        key = package_key(ecosystem, name)
        return (a for a in self.affected if (a.ecosystem, a.name) == key)


def package_key(ecosystem: str, name: str) -> tuple[str, str]:
    """How a package is matched: PyPI names PEP 503 normalised, others exact."""
    return (ecosystem, normalize(name) if ecosystem == PYPI else name)


# --- what is audited, and what was found ----------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One version that the image installs or the index serves, and where it comes from."""

    ecosystem: str  # the OSV ecosystem, e.g. PyPI
    name: str  # PEP 503 normalised for PyPI
    version: str
    origins: tuple[str, ...]  # e.g. "requirements/base.lock", "index"

    @property
    def key(self) -> tuple[str, str]:
        return (self.ecosystem, self.name)

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def merge_packages(packages: Iterable[Package]) -> list[Package]:
    """One Package per (ecosystem, name, version), with every origin; sorted by name, version."""
    merged: dict[tuple[str, str, str], list[str]] = {}
    for package in packages:
        origins = merged.setdefault((*package.key, package.version), [])
        origins.extend(o for o in package.origins if o not in origins)
    return [
        Package(ecosystem, name, version, tuple(origins))
        for (ecosystem, name, version), origins in sorted(
            merged.items(), key=lambda item: (item[0][:2], _sort_key(item[0][2], item[0][0]))
        )
    ]


@dataclass(frozen=True)
class Finding:
    """A package version that an advisory in force affects."""

    package: Package
    advisory: Advisory
    fixed: tuple[str, ...]  # versions that fix it, above the package's; empty: no fix known

    @property
    def fix_text(self) -> str:
        return f"fixed in {', '.join(self.fixed)}" if self.fixed else "no fixed version known"


def find_affected(
    packages: Sequence[Package], records: Mapping[tuple[str, str], Sequence[Advisory]]
) -> list[Finding]:
    """Every (package, advisory) pair where the advisory affects the package's version.

    `records` holds the candidate records per package key (what the source had for that
    name); each is evaluated here, so a directory and the API give the same answer.
    """
    findings: list[Finding] = []
    for package in packages:
        seen: set[str] = set()
        for advisory in records.get(package.key, ()):
            if advisory.id in seen:
                continue
            seen.add(advisory.id)
            if advisory.affects(package.ecosystem, package.name, package.version):
                fixed = advisory.fixed_versions(package.ecosystem, package.name, package.version)
                findings.append(Finding(package, advisory, fixed))
    return findings


# --- range evaluation -------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _version(text: str, ecosystem: str = PYPI) -> Any:
    """The comparable version: PEP 440 for PyPI, R's package_version order for CRAN; None when
    `text` is not one (legacy versions, git hashes)."""
    if ecosystem == CRAN:
        from imagebot.cran import version_key

        try:
            return version_key(text)
        except ValueError:
            return None
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        return None


def _sort_key(text: str, ecosystem: str = PYPI) -> tuple[int, Any]:
    parsed = _version(text, ecosystem)
    return (0, parsed) if parsed is not None else (1, text)


def in_range(version: str, rng: Range, ecosystem: str = PYPI) -> bool:
    """Whether `version` falls inside one ECOSYSTEM range (see the module docstring).

    A range with an event that is not a PEP 440 version cannot be ordered, so it matches
    nothing; the record's explicit `versions` list still applies.
    """
    if rng.type != "ECOSYSTEM":
        return False
    parsed = _version(version, ecosystem)
    if parsed is None:
        return False
    bounds: list[tuple[Any, Event]] = []
    limits: list[Any] = []
    for event in rng.events:
        if event.kind == "introduced" and event.version == "0":
            bounds.append((None, event))  # "0" is below every version, pre-releases included
            continue
        bound = _version(event.version, ecosystem)
        if bound is None:
            return False
        if event.kind == "limit":
            limits.append(bound)
        else:
            bounds.append((bound, event))
    if limits and not any(parsed < limit for limit in limits):
        return False
    bounds.sort(key=lambda item: (item[0] is not None, item[0] if item[0] is not None else 0))
    affected = False
    for bound, event in bounds:
        if event.kind == "introduced":
            if bound is None or parsed >= bound:
                affected = True
        elif event.kind == "fixed":
            if parsed >= bound:
                affected = False
        elif event.kind == "last_affected" and parsed > bound:
            affected = False
    return affected


def in_versions(version: str, versions: Sequence[str], ecosystem: str = PYPI) -> bool:
    """Whether `version` is in an explicit list; the ecosystem's equality (2.0 == 2.0.0 in PEP
    440, 1.1-0 == 1.1.0 in R) when both parse."""
    if version in versions:
        return True
    parsed = _version(version, ecosystem)
    return parsed is not None and any(_version(v, ecosystem) == parsed for v in versions)


def is_affected(version: str, affected: Affected) -> bool:
    return in_versions(version, affected.versions, affected.ecosystem) or any(
        in_range(version, rng, affected.ecosystem) for rng in affected.ranges
    )


# --- parsing ----------------------------------------------------------------------------------


def parse_json(text: str) -> Advisory:
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RecordError(f"not JSON ({exc})") from None
    return advisory_from_mapping(raw)


def parse_yaml(text: str) -> Advisory:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        raw = YAML(typ="safe", pure=True).load(text)
    except (YAMLError, RecursionError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecordError(f"not YAML ({first})") from None
    return advisory_from_mapping(raw)


def parse_record(text: str, suffix: str) -> Advisory:
    """A record from a file's text; `suffix` (".json", ".yaml", ".yml") says which format."""
    return parse_json(text) if suffix == ".json" else parse_yaml(text)


def advisory_from_mapping(raw: Any) -> Advisory:
    """An Advisory from a parsed OSV document. Fields imagebot does not use are ignored."""
    if not isinstance(raw, Mapping):
        raise RecordError("an OSV record is a mapping with an `id`")
    try:
        ident = advisory_id(raw.get("id"))
    except InvalidValue as exc:
        raise RecordError(exc.message) from None
    # Aliases are shown and matched against waivers only; a malformed one (real records hold
    # "GHSA-...," with a comma) is dropped rather than failing the whole audit.
    aliases = tuple(a for a in _list(raw, "aliases") if _is_advisory_id(a))
    affected = tuple(_affected(item) for item in _list(raw, "affected"))
    database = raw.get("database_specific")
    label = database.get("severity") if isinstance(database, Mapping) else None
    return Advisory(
        id=ident,
        aliases=aliases,
        summary=_summary(raw),
        modified=_timestamp(raw.get("modified")),
        withdrawn=_timestamp(raw.get("withdrawn")),
        severity=tuple(
            Severity(_text(s.get("type")), _text(s.get("score")))
            for s in _list(raw, "severity")
            if isinstance(s, Mapping)
        ),
        severity_label=_text(label).upper() if isinstance(label, str) else "",
        affected=affected,
    )


def _list(raw: Mapping[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError(f"`{key}` must be a list")
    return value


def _affected(item: Any) -> Affected:
    if not isinstance(item, Mapping):
        raise RecordError("each `affected` entry must be a mapping")
    package = item.get("package")
    if not isinstance(package, Mapping):
        raise RecordError("an `affected` entry has no `package`")
    ecosystem, name = package.get("ecosystem"), package.get("name")
    if not isinstance(ecosystem, str) or not isinstance(name, str):
        raise RecordError("an affected package needs a string `ecosystem` and `name`")
    ranges = []
    for rng in _list(item, "ranges"):
        if not isinstance(rng, Mapping):
            raise RecordError("each range must be a mapping")
        events = []
        for event in _list(rng, "events"):
            if not isinstance(event, Mapping) or len(event) != 1:
                raise RecordError("each range event must have exactly one key")
            ((kind, version),) = event.items()
            if kind in ("introduced", "fixed", "last_affected", "limit"):
                events.append(Event(str(kind), _text(version)))
        ranges.append(Range(_text(rng.get("type")), tuple(events)))
    versions = tuple(_text(v) for v in _list(item, "versions"))
    return Affected(ecosystem, package_key(ecosystem, name)[1], tuple(ranges), versions)


def _text(value: Any) -> str:
    """A scalar as text (YAML reads `versions: [0.5]` as a float; OSV means the string)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RecordError(f"expected a string, got {type(value).__name__}")
    return str(value)


def _timestamp(value: Any) -> str:
    """An RFC 3339 time as text (unquoted YAML timestamps arrive as datetime)."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return one_line_text(_text(value), 64)


def _summary(raw: Mapping[str, Any]) -> str:
    summary = raw.get("summary")
    if isinstance(summary, str) and summary.strip():
        return one_line_text(summary, MAX_SUMMARY)
    details = raw.get("details")
    return one_line_text(details, MAX_SUMMARY) if isinstance(details, str) else ""


def one_line_text(text: str, limit: int) -> str:
    """Record text made safe to print: one line, printable characters only, at most `limit`.

    Advisory text comes from outside (a database, an API); it reaches terminals and CI logs.
    """
    printable = "".join(c if c.isprintable() else " " for c in text)
    flat = _WHITESPACE.sub(" ", printable).strip()
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."
