"""PURE: requirement sets (requirements/<set>.toml) -> validated, frozen RequirementSets.

A set file has an optional [set] table and one table per ecosystem. Every package is one
inline table on one line, so that a pull request adding a package is a one-line diff:

    [set]
    description = "Everyday data science"
    r_source = "debian"            # R packages from Debian's r-cran-* ("debian") or r_repo ("cran")

    [python]
    numpy = { version = "2.3.4", reason = "arrays", requested_by = "@anna" }
    scikit-learn = { version = "1.7.2", import = "sklearn", reason = "models", requested_by = "@ola" }

    [r]
    data.table = { version = "1.14.8", reason = "fast tables", requested_by = "@kari" }

    [apt]
    libpq5 = { version = "15.*", reason = "postgres client lib", requested_by = "@platform" }

`requirements/index-only.toml` (vetted for self-install, not in the image) has the same form
for [python] and [r], and may vet several versions of one package: each further version is
one line of its own, keyed `"name==version"`, with its own reason, requester and confirmation:

    tabulate = { version = "0.9.0", reason = "tables in reports", requested_by = "@anna" }
    "tabulate==0.8.10" = { reason = "the 2019 survey pipeline pins it", requested_by = "@ola" }

Validation reports every problem at once with file:line and a hint (see `check_sets`).
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagebot import validate
from imagebot.errors import Problem, RequirementsError
from imagebot.files import Unreadable, read_text

ECOSYSTEMS = ("python", "r", "apt")
R_SOURCES = ("debian", "cran")
# The [set] table: key -> what it means. Both keys are optional strings.
SET_KEYS = {
    "description": "one line shown in the Dockerfile and the docs; default empty",
    "r_source": f"where R packages come from: {' or '.join(R_SOURCES)}; default debian",
}
# An entry's fields: key -> what it means. Every value is a string except extras.
ENTRY_KEYS = {
    "version": "the exact version (required)",
    "reason": "why the package is needed, one line (required)",
    "requested_by": "who asked for it, e.g. @anna, one line (required)",
    "import": "Python only: the module to import when it differs from the name",
    "extras": 'Python only: a list of extras, e.g. ["excel"]',
    "safe_because": "the requester's confirmation: what they checked that makes them believe "
    "the package is safe, one line (imagebot review requires it on every entry a pull request "
    "adds or changes)",
}
REQUIRED_ENTRY_KEYS = ("version", "reason", "requested_by")

_PEP503 = re.compile(r"[-_.]+")
VERSION_IN_KEY = "=="  # `"name==version" = {...}`: one more vetted version of a package
_SET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*", re.ASCII)
_NAME_RULES: dict[str, tuple[Callable[[object], str], str, str]] = {
    # ecosystem -> (rule, what the message calls it, hint)
    "python": (validate.python_name, "a valid Python project name", "use the name as on PyPI"),
    "r": (validate.r_name, "a valid R package name", "use the name as on CRAN, e.g. data.table"),
    "apt": (
        validate.apt_name,
        "a valid Debian package name",
        "lowercase letters, digits and . + - only",
    ),
}
_VERSION_RULES: dict[str, tuple[Callable[[object], str], str, str]] = {
    "python": (
        validate.python_version,
        "an exact pin",
        'write the exact version, e.g. version = "2.3.4" (no ranges, no ==)',
    ),
    "r": (
        validate.r_version,
        "an exact R version",
        'write it as packageVersion() prints it, e.g. "1.14.8"',
    ),
    "apt": (
        validate.apt_version,
        "a Debian version",
        'use the version apt-cache policy shows, or an upstream prefix like "15.14*"',
    ),
}

ProblemSink = Callable[[int, str, str], None]  # (line, message, hint)


def normalize(name: str) -> str:
    """PEP 503 normalised project name."""
    return _PEP503.sub("-", name).lower()


@dataclass(frozen=True)
class Requirement:
    ecosystem: str  # "python" | "r" | "apt"
    name: str  # as written in the file
    version: str
    reason: str
    requested_by: str
    line: int  # 1-based line in the set file, 0 when unknown
    import_name: str | None = None  # python: the module to import when it differs from name
    extras: tuple[str, ...] = ()
    safe_because: str | None = None  # the requester's confirmation, one line

    @property
    def key(self) -> str:
        """Identity across sets: normalised for Python, exact for R and apt."""
        return normalize(self.name) if self.ecosystem == "python" else self.name

    @property
    def pin(self) -> str:
        """The requirement line for a resolver: name[extras]==version."""
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"{self.name}{extras}=={self.version}"


@dataclass(frozen=True)
class RequirementSet:
    name: str
    path: Path
    description: str
    r_source: str
    python: tuple[Requirement, ...]
    r: tuple[Requirement, ...]
    apt: tuple[Requirement, ...]

    def entries(self, ecosystem: str) -> tuple[Requirement, ...]:
        entries: tuple[Requirement, ...] = getattr(self, ecosystem)
        return entries

    def all_entries(self) -> tuple[Requirement, ...]:
        return self.python + self.r + self.apt


def line_numbers(text: str) -> dict[tuple[str, str], int]:
    """Map (table, key) to its 1-based line. tomllib has no positions, so scan the text."""
    lines: dict[tuple[str, str], int] = {}
    table = ""
    header = re.compile(r"\s*\[\s*([^\]]+?)\s*\]")
    key = re.compile(r"""\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_.-]+?))\s*=""")
    for number, line in enumerate(text.splitlines(), start=1):
        if m := header.match(line):
            table = m.group(1).strip().strip('"')
            continue
        if m := key.match(line):
            name = next(g for g in m.groups() if g is not None)
            lines.setdefault((table, name), number)
    return lines


def _flatten(table: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Undo TOML's dotted keys for R names like data.table, which TOML reads as nested tables."""
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping) and "version" not in value and value:
            nested = list(_flatten(value, name))
            if all(isinstance(v, Mapping) for _, v in nested):
                yield from nested
                continue
        yield name, value


def parse_set(path: Path, text: str) -> tuple[RequirementSet | None, list[Problem]]:
    """Parse and validate one set file on its own. Returns the set (if readable) and problems."""
    problems: list[Problem] = []

    def problem(line: int, message: str, hint: str) -> None:
        problems.append(Problem(str(path), line, message, hint))

    _check_set_name(path.stem, problem)
    raw = _load_toml(text, problem)
    if raw is None:
        return None, problems
    lines = line_numbers(text)
    _check_tables(raw, text, lines, problem)
    description, r_source = _set_meta(raw.get("set", {}), lines, problem)
    parsed = {eco: _parse_table(eco, raw.get(eco, {}), lines, problem) for eco in ECOSYSTEMS}
    return (
        RequirementSet(
            name=path.stem,
            path=path,
            description=description,
            r_source=r_source,
            python=parsed["python"],
            r=parsed["r"],
            apt=parsed["apt"],
        ),
        problems,
    )


def _check_set_name(name: str, problem: ProblemSink) -> None:
    if not _SET_NAME.fullmatch(name):
        problem(
            0,
            f"set name {name!r} is not lowercase letters, digits, '-' or '_'",
            "rename the file, e.g. requirements/datascience.toml",
        )
    elif name in RESERVED_SET_NAMES:
        problem(
            0,
            f"set name {name!r} is reserved: requirements/{name}.lock is the R lock of the "
            "packages served from a CRAN-like repository, not a set's lock",
            f"rename the file (and the set in imagebot.toml), e.g. requirements/r{name}.toml",
        )


def _load_toml(text: str, problem: ProblemSink) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", 0) or 0
        if not line and (m := re.search(r"line (\d+)", str(exc))):
            line = int(m.group(1))
        problem(
            line, f"invalid TOML: {exc}", "fix the syntax; one package per line as an inline table"
        )
    except RecursionError:
        problem(0, "invalid TOML: nested too deeply", "one package per line as an inline table")
    return None


def _check_tables(
    raw: Mapping[str, Any], text: str, lines: Mapping[tuple[str, str], int], problem: ProblemSink
) -> None:
    for table in raw:
        if table not in (*ECOSYSTEMS, "set"):
            problem(
                lines.get(("", table), 0) or _table_line(text, table),
                f"unknown table [{table}]",
                f"use [set], {', '.join(f'[{e}]' for e in ECOSYSTEMS)}",
            )


def _set_meta(
    meta: Any, lines: Mapping[tuple[str, str], int], problem: ProblemSink
) -> tuple[str, str]:
    """The [set] table's (description, r_source); defaults when a value is refused."""
    if not isinstance(meta, Mapping):
        problem(0, "[set] must be a table", "write [set] on its own line")
        return "", "debian"
    for key in meta:
        if key not in SET_KEYS:
            problem(lines.get(("set", key), 0), f"unknown key set.{key}", _allowed(key, SET_KEYS))
    description = meta.get("description", "")
    try:
        validate.one_line(description)
    except validate.InvalidValue as exc:
        problem(lines.get(("set", "description"), 0), f"set.description: {exc.message}", exc.hint)
        description = ""
    r_source = meta.get("r_source", "debian")
    if r_source not in R_SOURCES:
        problem(
            lines.get(("set", "r_source"), 0),
            f"unknown r_source {_shown(r_source)}",
            f"use one of: {', '.join(R_SOURCES)}",
        )
        r_source = "debian"
    return description, r_source


def _allowed(key: str, keys: Iterable[str]) -> str:
    """The hint for an unknown key: the closest allowed one, then all of them."""
    import difflib

    allowed = sorted(keys)
    close = difflib.get_close_matches(key, allowed, n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"{guess}allowed: {', '.join(allowed)}"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}..."


def _bare(name: str) -> str:
    """A name inside a message: escaped like repr, without the quotes."""
    return _shown(name)[1:-1]


def _parse_table(
    ecosystem: str, table: Any, lines: Mapping[tuple[str, str], int], problem: ProblemSink
) -> tuple[Requirement, ...]:
    if not isinstance(table, Mapping):
        problem(0, f"[{ecosystem}] must be a table", f"write [{ecosystem}] on its own line")
        return ()
    entries: list[Requirement] = []
    for key, entry in _flatten(table):
        line = lines.get((ecosystem, key), 0)
        name, keyed_version = split_key(key)
        if keyed_version is not None and isinstance(entry, Mapping):
            entry = _with_keyed_version(name, keyed_version, entry, line, problem)
        requirement = _parse_entry(ecosystem, name, entry, line, problem)
        if requirement is not None:
            entries.append(requirement)
    _check_sorted(entries, ecosystem, problem)
    return tuple(entries)


def split_key(key: str) -> tuple[str, str | None]:
    """`"tabulate==0.8.10"` -> ("tabulate", "0.8.10"); a plain key has no version."""
    name, sep, version = key.partition(VERSION_IN_KEY)
    return (name, version) if sep else (key, None)


def _with_keyed_version(
    name: str, version: str, entry: Mapping[str, Any], line: int, problem: ProblemSink
) -> Mapping[str, Any]:
    """The entry with the key's version; a `version` field beside it must say the same."""
    written = entry.get("version", version)
    if written != version:
        problem(
            line,
            f"{_bare(name)}: the key says version {_shown(version)}, "
            f"the version field {_shown(written)}",
            f'write the version once: "{_bare(name)}=={_bare(version)}" = {{ reason = ... }}',
        )
    return {**entry, "version": version}


def _table_line(text: str, table: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*\[\s*{re.escape(table)}\s*\]", line):
            return number
    return 0


def _parse_entry(
    ecosystem: str, name: str, entry: Any, line: int, problem: ProblemSink
) -> Requirement | None:
    """One entry as a Requirement, or None after reporting every problem it has."""

    def report(message: str, hint: str) -> None:
        problem(line, message, hint)

    if not isinstance(entry, Mapping):
        report(
            f"{ecosystem} entry {_shown(name)} must be an inline table",
            f'write {name} = {{ version = "...", reason = "...", requested_by = "..." }}',
        )
        return None
    checks = (
        _unknown_fields(name, entry, report),
        _required_fields(name, entry, report),
        _entry_name(ecosystem, name, report),
        _entry_version(ecosystem, name, entry.get("version"), report),
        _import_name(ecosystem, name, entry.get("import"), report),
        _extras(name, entry.get("extras", []), report),
        _confirmation(name, entry.get("safe_because"), report),
    )
    if not all(checks):
        return None
    return Requirement(
        ecosystem=ecosystem,
        name=name,
        version=entry["version"],
        reason=entry["reason"].strip(),
        requested_by=entry["requested_by"].strip(),
        line=line,
        import_name=entry.get("import"),
        extras=tuple(entry.get("extras", [])),
        safe_because=entry["safe_because"].strip() if "safe_because" in entry else None,
    )


Report = Callable[[str, str], None]  # (message, hint) for the entry being parsed


def _unknown_fields(name: str, entry: Mapping[str, Any], report: Report) -> bool:
    unknown = [key for key in entry if key not in ENTRY_KEYS]
    for key in unknown:
        report(f"unknown field {_shown(key)} in entry {_shown(name)}", _allowed(key, ENTRY_KEYS))
    return not unknown


def _required_fields(name: str, entry: Mapping[str, Any], report: Report) -> bool:
    ok = True
    for key in REQUIRED_ENTRY_KEYS:
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            what = "reason (why it is needed)" if key == "reason" else key
            report(f"entry {_shown(name)} is missing {what}", f'add {key} = "..." to the entry')
            ok = False
        elif key != "version":
            try:
                validate.one_line(value)
            except validate.InvalidValue as exc:
                report(f"{_shown(name)}: {key}: {exc.message}", exc.hint)
                ok = False
    return ok


def _confirmation(name: str, value: Any, report: Report) -> bool:
    if value is None:
        return True
    try:
        validate.one_line(value)
    except validate.InvalidValue as exc:
        report(f"{_shown(name)}: safe_because: {exc.message}", exc.hint)
        return False
    return True


def _entry_name(ecosystem: str, name: str, report: Report) -> bool:
    rule, what, hint = _NAME_RULES[ecosystem]
    try:
        rule(name)
    except validate.InvalidValue:
        report(f"{_shown(name)} is not {what}", hint)
        return False
    if ecosystem == "python" and name != normalize(name):
        report(f"{name!r} is not normalised", f"write it as {normalize(name)!r} (PEP 503)")
        return False
    return True


def _entry_version(ecosystem: str, name: str, version: Any, report: Report) -> bool:
    if not isinstance(version, str) or not version.strip():
        return False  # reported as missing
    rule, what, hint = _VERSION_RULES[ecosystem]
    try:
        rule(version)
    except validate.InvalidValue:
        report(f"{_bare(name)}: version {_shown(version)} is not {what}", hint)
        return False
    return True


def _import_name(ecosystem: str, name: str, import_name: Any, report: Report) -> bool:
    if import_name is None:
        return True
    hint = 'e.g. import = "sklearn"'
    if ecosystem != "python":
        report(f"{_bare(name)}: 'import' is only for Python entries", hint)
        return False
    try:
        validate.python_module(import_name)
    except validate.InvalidValue as exc:
        report(f"{_bare(name)}: import: {exc.message}", hint)
        return False
    return True


def _extras(name: str, extras: Any, report: Report) -> bool:
    if not isinstance(extras, list):
        extras = [extras]
    for extra in extras:
        try:
            validate.python_extra(extra)
        except validate.InvalidValue as exc:
            report(f"{_bare(name)}: extras: {exc.message}", 'e.g. extras = ["excel"]')
            return False
    return True


def _check_sorted(entries: Sequence[Requirement], ecosystem: str, problem: ProblemSink) -> None:
    for before, after in itertools.pairwise(entries):
        if after.key.lower() < before.key.lower():
            problem(
                after.line,
                f"[{ecosystem}] is not sorted: {after.name!r} comes after {before.name!r}",
                f"move {after.name!r} above {before.name!r} (imagebot add keeps the order)",
            )
            return


def check_sets(sets: Sequence[RequirementSet]) -> list[Problem]:
    """Cross-set rules: a package may be vetted in one set only (per ecosystem)."""
    problems: list[Problem] = []
    seen: dict[tuple[str, str], tuple[RequirementSet, Requirement]] = {}
    for req_set in sets:
        for entry in req_set.all_entries():
            ident = (entry.ecosystem, entry.key)
            if ident in seen:
                first_set, first = seen[ident]
                if first_set is req_set:
                    problems.append(
                        Problem(
                            str(req_set.path),
                            entry.line,
                            f"{entry.ecosystem} package {entry.name!r} is twice in set "
                            f"{req_set.name!r} (line {first.line})",
                            "an image installs one version of a package; vet other versions "
                            "in requirements/index-only.toml",
                        )
                    )
                    continue
                problems.append(
                    Problem(
                        str(req_set.path),
                        entry.line,
                        f"{entry.ecosystem} package {entry.name!r} is already in set "
                        f"{first_set.name!r} ({first_set.path}:{first.line})",
                        "keep it in one set only; later layers can use what earlier ones install",
                    )
                )
            else:
                seen[ident] = (req_set, entry)
    return problems


def set_path(requirements_dir: Path, name: str) -> Path:
    return requirements_dir / f"{name}.toml"


def _unreadable(exc: Unreadable) -> Problem:
    if exc.missing:
        return Problem(
            str(exc.path),
            0,
            "requirement set file not found",
            "create it or remove the set from imagebot.toml",
        )
    return Problem(str(exc.path), 0, exc.reason, "write the set as a UTF-8 TOML file")


def load_sets(requirements_dir: Path, names: Sequence[str] | None = None) -> list[RequirementSet]:
    """Load the named sets (default: every *.toml that is a set) and validate them together.

    Raises RequirementsError listing every problem in every file.
    """
    if names is None:
        paths = sorted(p for p in requirements_dir.glob("*.toml") if p.stem not in NOT_SETS)
    else:
        paths = [set_path(requirements_dir, n) for n in names]
    sets: list[RequirementSet] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            text = read_text(path)
        except Unreadable as exc:
            problems.append(_unreadable(exc))
            continue
        req_set, found = parse_set(path, text)
        problems.extend(found)
        if req_set is not None:
            sets.append(req_set)
    problems.extend(check_sets(sets))
    if problems:
        raise RequirementsError(
            problems, str(requirements_dir), "fix the entries above, then run imagebot check again"
        )
    return sets


# --- imagebot add: one new line, in sorted position -----------------------------------------

INDEX_ONLY = "index-only"  # requirements/index-only.toml: vetted for self-install only
INDEX_ONLY_ECOSYSTEMS = ("python", "r")
NOT_SETS = frozenset({INDEX_ONLY, "waivers"})  # requirements/*.toml that are not layer sets
# Names no set may take: requirements/cran.lock is the R lock (imagebot.cranlock), so a set
# named cran would share its lock file. A cran.toml is still read, and refused by name.
RESERVED_SET_NAMES = frozenset({"cran"})
# Pattern strings used by `imagebot add` only; `re` compiles and caches them on first use,
# so `imagebot check` does not pay for them.
_BARE_KEY = r"^[A-Za-z0-9_-]+$"
_DOTTED_BARE_KEY = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$"
_HEADER = r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$"
_ENTRY_KEY = r"""^\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_.-]+?))\s*="""
_ADD_SPEC = r"^([A-Za-z0-9][A-Za-z0-9._+-]*)(?:\[([A-Za-z0-9_.,-]+)\])?\s*(==?)\s*(\S+)$"


def known_set_names(requirements_dir: Path) -> list[str]:
    return sorted(p.stem for p in requirements_dir.glob("*.toml") if p.stem not in NOT_SETS)


def add_targets(requirements_dir: Path) -> list[str]:
    """Where `imagebot add --set` may write: every set, and index-only when the file exists."""
    extra = [INDEX_ONLY] if set_path(requirements_dir, INDEX_ONLY).is_file() else []
    return known_set_names(requirements_dir) + extra


def load_index_only(
    requirements_dir: Path, sets: Sequence[RequirementSet]
) -> RequirementSet | None:
    """requirements/index-only.toml, validated with its own rules, or None when there is none.

    Raises RequirementsError listing every problem."""
    path = set_path(requirements_dir, INDEX_ONLY)
    if not path.exists():
        return None
    try:
        text = read_text(path)
    except Unreadable as exc:
        raise RequirementsError([_unreadable(exc)], str(path), "fix the file") from None
    return parse_index_only(path, text, sets)


def parse_index_only(path: Path, text: str, sets: Sequence[RequirementSet]) -> RequirementSet:
    """index-only.toml's text, parsed and checked; raises RequirementsError on any problem."""
    parsed, problems = parse_set(path, text)
    if parsed is not None:
        problems += index_only_problems(parsed, sets)
    if problems or parsed is None:
        raise RequirementsError(problems, str(path), "fix the entries above")
    return parsed


def index_only_problems(
    index_only: RequirementSet, sets: Sequence[RequirementSet] = ()
) -> list[Problem]:
    """index-only.toml's own rules: [python] and [r] only, each name==version once, and not
    a version that a set already vets (every set package is served anyway)."""
    problems: list[Problem] = []
    path = str(index_only.path)
    for entry in index_only.apt:
        problems.append(
            Problem(
                path,
                entry.line,
                f"apt package {entry.name!r} cannot be vetted for self-install",
                "pods install no system packages; ask for it in a requirement set",
            )
        )
    in_sets = {(e.ecosystem, e.key, e.version): s.name for s in sets for e in s.all_entries()}
    seen: dict[tuple[str, str, str], int] = {}
    for entry in index_only.python + index_only.r:
        ident = (entry.ecosystem, entry.key, entry.version)
        if ident in seen:
            problems.append(
                Problem(
                    path,
                    entry.line,
                    f"{entry.name}=={entry.version} is vetted twice (line {seen[ident]})",
                    "keep one line per version",
                )
            )
        elif ident in in_sets:
            problems.append(
                Problem(
                    path,
                    entry.line,
                    f"{entry.name}=={entry.version} is already vetted in set {in_sets[ident]!r}",
                    "remove it from index-only.toml; every set package is in the index",
                )
            )
        seen.setdefault(ident, entry.line)
    return problems


@dataclass(frozen=True)
class NewEntry:
    """A package that `imagebot add` is about to write."""

    ecosystem: str
    name: str
    version: str
    extras: tuple[str, ...] = ()
    reason: str = ""
    requested_by: str = ""
    import_name: str | None = None
    versioned_key: bool = False  # written as "name==version" (one more vetted version)
    safe_because: str = ""

    @property
    def key(self) -> str:
        """The TOML key: the name, or "name==version" for one more version of a package."""
        return f"{self.name}{VERSION_IN_KEY}{self.version}" if self.versioned_key else self.name

    @property
    def sort_key(self) -> str:
        return _sort_key(self.ecosystem, self.key)

    @property
    def description(self) -> str:
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        sep = "=" if self.ecosystem == "apt" else "=="
        return f"{self.ecosystem} {self.name}{extras}{sep}{self.version}"

    def with_metadata(self, reason: str, requested_by: str, import_name: str | None) -> NewEntry:
        import dataclasses

        return dataclasses.replace(
            self, reason=reason, requested_by=requested_by, import_name=import_name
        )

    def toml_line(self) -> str:
        if self.versioned_key:
            return self._line(_toml_string(self.key), [])
        return self._line(
            _toml_key(self.ecosystem, self.name), [f"version = {_toml_string(self.version)}"]
        )

    def _line(self, key: str, fields: list[str]) -> str:
        if self.extras:
            fields.append(f"extras = [{', '.join(_toml_string(x) for x in self.extras)}]")
        if self.import_name:
            fields.append(f"import = {_toml_string(self.import_name)}")
        fields.append(f"reason = {_toml_string(self.reason)}")
        fields.append(f"requested_by = {_toml_string(self.requested_by)}")
        if self.safe_because:
            fields.append(f"safe_because = {_toml_string(self.safe_because)}")
        return f"{key} = {{ {', '.join(fields)} }}"


def _sort_key(ecosystem: str, key: str) -> str:
    """Entries sort by name (PEP 503 for Python), then further versions after the plain key."""
    name, version = split_key(key)
    name = normalize(name) if ecosystem == "python" else name
    return (name + (VERSION_IN_KEY + version if version is not None else "")).lower()


def _toml_string(value: str) -> str:
    import json

    # A JSON string (with non-ASCII kept) is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=False)


def _toml_key(ecosystem: str, name: str) -> str:
    if re.match(_BARE_KEY, name) or (ecosystem == "r" and re.match(_DOTTED_BARE_KEY, name)):
        return name  # R's data.table stays bare, like the rest of the file
    return _toml_string(name)


def parse_add_spec(ecosystem: str, spec: str) -> NewEntry:
    """`numpy==2.3.4`, `pandas[excel]==2.3.3`, `data.table==1.14.8`, `libpq5=15.14*`."""
    from imagebot.errors import UsageError

    if ecosystem not in ECOSYSTEMS:
        raise UsageError(
            f"unknown package kind {ecosystem!r}",
            f"use one of: {', '.join(ECOSYSTEMS)}, e.g. imagebot add python numpy==2.3.4 ...",
        )
    example = {"python": "numpy==2.3.4", "r": "data.table==1.14.8", "apt": "libpq5=15.14*"}
    match = re.match(_ADD_SPEC, spec.strip())
    exact = match is not None and (match.group(3) == "=") == (ecosystem == "apt")
    if match is None or not exact or (match.group(2) and ecosystem != "python"):
        sep = "=" if ecosystem == "apt" else "=="
        raise UsageError(
            f"{ecosystem} package {spec!r} is not NAME{sep}VERSION",
            f"pin one exact version, e.g. imagebot add {ecosystem} {example[ecosystem]} ...",
        )
    name, extras, _, version = match.groups()
    if ecosystem == "python":
        name = normalize(name)
    extra_names = tuple(x.strip() for x in extras.split(",") if x.strip()) if extras else ()
    return NewEntry(ecosystem, name, version, extra_names)


def insert_entry(text: str, entry: NewEntry) -> tuple[str, int]:
    """The file text with `entry` as one new line in sorted order; and that line's number.

    Only one line is added (plus a table header when the table is new): comments, blank
    lines and every other byte stay as they are.
    """
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    new_line = entry.toml_line() + newline
    header = next(
        (
            i
            for i, line in enumerate(lines)
            if (m := re.match(_HEADER, line)) and m.group(1) == entry.ecosystem
        ),
        None,
    )
    if header is None:
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += newline
        block = ([newline] if lines and lines[-1].strip() else []) + [
            f"[{entry.ecosystem}]{newline}",
            new_line,
        ]
        return "".join(lines + block), len(lines) + len(block)
    end = next(
        (i for i in range(header + 1, len(lines)) if re.match(_HEADER, lines[i])), len(lines)
    )
    position = _sorted_position(lines, header, end, entry)
    if position == len(lines) and lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += newline
    lines.insert(position, new_line)
    return "".join(lines), position + 1


def _sorted_position(lines: Sequence[str], header: int, end: int, entry: NewEntry) -> int:
    """Before the first greater entry (and the comments right above it), else after the last."""
    last_entry = header
    for i in range(header + 1, end):
        match = re.match(_ENTRY_KEY, lines[i])
        if match is None or lines[i].lstrip().startswith("#"):
            continue
        name = next(g for g in match.groups() if g is not None)
        if _sort_key(entry.ecosystem, name) > entry.sort_key:
            while i - 1 > header and lines[i - 1].lstrip().startswith("#"):
                i -= 1
            return i
        last_entry = i
    return last_entry + 1


@dataclass(frozen=True)
class AddedEntry:
    text: str  # the new file text
    line: int
    description: str


def add_entry(requirements_dir: Path, set_name: str, entry: NewEntry) -> AddedEntry:
    """Validate every set, refuse duplicates, insert the entry, re-validate. Writes nothing."""
    sets = load_sets(requirements_dir)  # raises on problems that were there before
    if set_name == INDEX_ONLY:
        return _add_index_only(requirements_dir, sets, entry)
    for req_set in sets:
        for existing in req_set.entries(entry.ecosystem):
            if existing.key.lower() == entry.sort_key:
                raise RequirementsError(
                    [
                        Problem(
                            str(req_set.path),
                            existing.line,
                            f"{entry.ecosystem} package {existing.name!r} is already in set "
                            f"{req_set.name!r} at version {existing.version}",
                            "change the version on that line instead; a package lives in one set",
                        )
                    ],
                    f"set {set_name!r}",
                    "imagebot add does not add a package twice",
                )
    path = set_path(requirements_dir, set_name)
    text, line = insert_entry(read_text(path), entry)  # keeps CRLF line ends
    new_set, problems = parse_set(path, text)
    problems.extend(
        check_sets([s for s in sets if s.name != set_name] + ([new_set] if new_set else []))
    )
    if problems:
        raise RequirementsError(
            problems,
            f"the new entry for {set_name!r}",
            "fix the package spec or options; nothing was written",
        )
    return AddedEntry(text, line, entry.description)


def _add_index_only(
    requirements_dir: Path, sets: Sequence[RequirementSet], entry: NewEntry
) -> AddedEntry:
    """One more vetted package or version in index-only.toml; a name it already lists gets
    a `"name==version"` line of its own, with its own reason and requester."""
    path = set_path(requirements_dir, INDEX_ONLY)
    text = read_text(path)
    current, problems = parse_set(path, text)
    if current is not None:
        problems += index_only_problems(current, sets)
    if problems or current is None:
        raise RequirementsError(problems, str(path), "fix the entries above, then add again")
    if entry.ecosystem not in INDEX_ONLY_ECOSYSTEMS:
        raise RequirementsError(
            [Problem(str(path), 0, f"{entry.description}: index-only.toml vets Python and R", "")],
            f"set {INDEX_ONLY!r}",
            "pods install no system packages; add apt packages to a requirement set",
        )
    key = _sort_key(entry.ecosystem, entry.name)
    same = [e for e in current.entries(entry.ecosystem) if e.key.lower() == key]
    if again := next((e for e in same if e.version == entry.version), None):
        raise RequirementsError(
            [
                Problem(
                    str(path),
                    again.line,
                    f"{entry.description} is already vetted here",
                    "nothing to add; edit that line to change its reason or requester",
                )
            ],
            f"set {INDEX_ONLY!r}",
            "imagebot add does not add a version twice",
        )
    if same:
        import dataclasses

        entry = dataclasses.replace(entry, versioned_key=True)
    new_text, line = insert_entry(text, entry)
    new, problems = parse_set(path, new_text)
    if new is not None:
        problems += index_only_problems(new, sets)
    if problems or new is None:
        raise RequirementsError(
            problems,
            f"the new entry for {INDEX_ONLY!r}",
            "fix the package spec; nothing was written",
        )
    return AddedEntry(new_text, line, entry.description)
