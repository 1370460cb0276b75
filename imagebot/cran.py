"""PURE: the vetted CRAN-like repository: DCF (PACKAGES), R versions, the closure, the layout.

R installs from a "CRAN-like repository": a directory tree with
    src/contrib/PACKAGES, PACKAGES.gz     one DCF stanza per current package (with MD5sum)
    src/contrib/<pkg>_<version>.tar.gz   the current version of each package
    src/contrib/Archive/<pkg>/<pkg>_<version>.tar.gz   older versions
`install.packages()` reads PACKAGES(.gz) and takes the current version; renv and
`remotes::install_version()` find older ones under Archive/. The vetted repository
(`OUT/cran`) has exactly that layout, holding every vetted R version, its closure over
Depends, Imports and LinkingTo (never Suggests), and nothing of R's own base and recommended
packages, which come with R.

DCF is line-based, so a value with a newline in it would add fields of its own (an `MD5sum`,
say): values are read with continuation lines folded, and written only when they are one line
of printable text. Names and versions follow R's rules (`imagebot.validate`).

The adapter that fetches and verifies files is `imagebot.cran_upstream`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imagebot import validate
from imagebot.errors import PackageIndexError

CRAN_DIR = "cran"  # OUT/cran, beside OUT/simple
CONTRIB = "src/contrib"
# R's base packages (shipped with R itself) and the recommended ones (r-recommended on Debian):
# a repository never serves them, and a closure stops at them.
BASE_PACKAGES = frozenset(
    {
        "R",
        "base",
        "compiler",
        "datasets",
        "graphics",
        "grDevices",
        "grid",
        "methods",
        "parallel",
        "splines",
        "stats",
        "stats4",
        "tcltk",
        "tools",
        "translations",
        "utils",
    }
)
RECOMMENDED_PACKAGES = frozenset(
    {
        "KernSmooth",
        "MASS",
        "Matrix",
        "boot",
        "class",
        "cluster",
        "codetools",
        "foreign",
        "lattice",
        "mgcv",
        "nlme",
        "nnet",
        "rpart",
        "spatial",
        "survival",
    }
)
WITH_R = BASE_PACKAGES | RECOMMENDED_PACKAGES
DEPENDENCY_FIELDS = ("Depends", "Imports", "LinkingTo")
# The fields the vetted PACKAGES carries, in this order (what install.packages and renv read).
PACKAGES_FIELDS = (
    "Package",
    "Version",
    "Depends",
    "Imports",
    "LinkingTo",
    "Suggests",
    "Enhances",
    "License",
    "License_is_FOSS",
    "License_restricts_use",
    "OS_type",
    "Archs",
    "MD5sum",
    "NeedsCompilation",
)
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.@/-]*", re.ASCII)
_DEPENDENCY = re.compile(
    r"\s*(?P<name>[^\s(]+)\s*(?:\(\s*(?P<op>>=|<=|==|>|<|!=)\s*(?P<version>[^\s)]+)\s*\))?\s*"
)
MAX_FIELD = 20_000  # characters of one PACKAGES value (long Suggests lists exist)
_MD5 = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


# --- DCF ----------------------------------------------------------------------------------------


def parse_dcf(text: str, where: str) -> list[dict[str, str]]:
    """Stanzas of a DCF file; continuation lines are folded into one line."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
        elif line[0] in " \t":
            if not key:
                raise _bad_dcf(where, number, "a continuation line before any field")
            current[key] = f"{current[key]} {line.strip()}".strip()
        else:
            name, colon, value = line.partition(":")
            if not colon or not _FIELD_NAME.fullmatch(name):
                raise _bad_dcf(where, number, f"not a 'Field: value' line: {line[:80]!r}")
            if name in current:
                raise _bad_dcf(where, number, f"field {name!r} twice in one stanza")
            key, current[name] = name, value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def _bad_dcf(where: str, line: int, what: str) -> PackageIndexError:
    return PackageIndexError(
        f"{where}:{line}: not a readable PACKAGES file ({what})",
        "check the CRAN-like upstream ([index] cran_upstream in imagebot.toml)",
    )


def _dcf_value(value: str, what: str) -> None:
    """Refuse a PACKAGES value that is not one line of printable text: it would change the
    file's shape."""
    try:
        validate.one_line(value, limit=MAX_FIELD)
    except validate.InvalidValue as exc:
        raise PackageIndexError(
            f"{what}: {exc.message}",
            "the upstream's PACKAGES has a value that would change the file's shape",
        ) from None


def write_dcf(stanzas: Iterable[Mapping[str, str]]) -> str:
    """DCF text; refuses a field name or value that is not one line of printable text."""
    blocks = []
    for stanza in stanzas:
        lines = []
        for name, value in stanza.items():
            if not _FIELD_NAME.fullmatch(name):
                raise PackageIndexError(f"refusing DCF field name {name!r}", "this is a bug")
            _dcf_value(value, f"refusing to write {stanza.get('Package', '?')}'s {name}")
            lines.append(f"{name}: {value}" if value else f"{name}:")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


# --- versions and dependencies -------------------------------------------------------------------


def version_key(version: str) -> tuple[int, ...]:
    """R's package_version order: numbers split on '.' and '-' ("1.1-0" == "1.1.0")."""
    return tuple(int(part) for part in re.split(r"[.-]", version))


def sort_key(version: str) -> tuple[tuple[int, ...], str]:
    """A sort key in R's version order that also takes a version R would not parse (last)."""
    try:
        return version_key(version), version
    except ValueError:
        return (), version


def same_r_version(a: str, b: str) -> bool:
    try:
        return version_key(a) == version_key(b)
    except ValueError:
        return a == b


@dataclass(frozen=True)
class Dependency:
    name: str
    op: str = ""  # ">=", "==", ...; "" for any version
    version: str = ""

    def allows(self, version: str) -> bool:
        if not self.op:
            return True
        have, want = version_key(version), version_key(self.version)
        return {
            ">=": have >= want,
            "<=": have <= want,
            ">": have > want,
            "<": have < want,
            "==": have == want,
            "!=": have != want,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.name} ({self.op} {self.version})" if self.op else self.name


def parse_dependencies(value: str, where: str) -> tuple[Dependency, ...]:
    """`R (>= 3.5), R6 (>= 2.2.0), methods` -> Dependency per entry (R itself included)."""
    found = []
    for part in value.split(","):
        if not part.strip():
            continue
        match = _DEPENDENCY.fullmatch(part)
        name = match["name"] if match else ""
        try:
            if match is None:
                raise validate.InvalidValue(f"{part.strip()[:80]!r}", "")
            if name != "R":
                validate.r_name(name)
            if match["version"]:
                validate.r_version(match["version"])
        except validate.InvalidValue:
            raise PackageIndexError(
                f"{where}: dependency {part.strip()[:80]!r} is not 'name' or 'name (op version)'",
                "check the CRAN-like upstream's PACKAGES",
            ) from None
        found.append(Dependency(name, match["op"] or "", match["version"] or ""))
    return tuple(found)


# --- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RPackage:
    """One name_version of a CRAN-like repository, from its PACKAGES stanza."""

    name: str
    version: str
    md5: str
    fields: Mapping[str, str]  # the stanza's PACKAGES_FIELDS, as the upstream wrote them
    repository: str = ""  # the upstream it came from
    sha256: str | None = None  # when the upstream publishes one

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version}.tar.gz"

    @property
    def needs_compilation(self) -> bool:
        return self.fields.get("NeedsCompilation", "no").lower() == "yes"

    def dependencies(self) -> tuple[Dependency, ...]:
        """Depends, Imports and LinkingTo, without R and its base and recommended packages."""
        where = f"{self.name} {self.version}"
        return tuple(
            dep
            for name in DEPENDENCY_FIELDS
            for dep in parse_dependencies(self.fields.get(name, ""), where)
            if dep.name not in WITH_R
        )


def packages_from_dcf(text: str, where: str, repository: str = "") -> list[RPackage]:
    """Every stanza of a PACKAGES file as an RPackage; a stanza with a bad name, version or
    checksum is an error, not skipped: the upstream's index is what vouches for the files."""
    return [package_from_stanza(stanza, where, repository) for stanza in parse_dcf(text, where)]


def package_from_stanza(stanza: Mapping[str, str], where: str, repository: str) -> RPackage:
    """One PACKAGES (or `requirements/cran.lock`) stanza as an RPackage, every value checked."""
    name, version, md5 = (stanza.get(k, "") for k in ("Package", "Version", "MD5sum"))
    try:
        validate.r_name(name)
        validate.r_version(version)
    except validate.InvalidValue as exc:
        raise PackageIndexError(
            f"{where}: package {name[:80]!r} {version[:40]!r}: {exc.message}",
            "check the CRAN-like upstream's PACKAGES",
        ) from None
    if not _MD5.fullmatch(md5):
        raise PackageIndexError(
            f"{where}: {name} {version} has no MD5sum to verify its file by",
            "use an upstream whose PACKAGES carries MD5sum (CRAN, Posit Package Manager)",
        )
    sha256 = stanza.get("SHA256")
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise PackageIndexError(f"{where}: {name} {version}: bad SHA256", "check the upstream")
    kept = {k: stanza[k] for k in PACKAGES_FIELDS if k in stanza}
    for key, value in kept.items():
        _dcf_value(value, f"{where}: {name} {version}: {key}")
    return RPackage(name, version, md5, kept, repository, sha256)


@dataclass(frozen=True)
class RRoot:
    """One vetted R package version: an index-only [r] entry or a cran set's entry."""

    name: str
    version: str
    source: str  # the set ("index-only" for index-only.toml)
    reason: str
    requested_by: str

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class RIndexed:
    """One file of the vetted repository and why it is there."""

    package: RPackage
    path: str  # relative to OUT/cran, e.g. src/contrib/R6_2.5.1.tar.gz
    sha256: str
    size: int
    vetted_in: tuple[str, ...]
    dependency_of: tuple[str, ...]
    current: bool  # in PACKAGES (else under Archive/)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.package.name,
            "version": self.package.version,
            "path": self.path,
            "md5": self.package.md5,
            "sha256": self.sha256,
            "size": self.size,
            "current": self.current,
            "upstream": self.package.repository,
            "needs_compilation": self.package.needs_compilation,
            "depends": [str(d) for d in self.package.dependencies()],
            "vetted_in": list(self.vetted_in),
            "dependency_of": list(self.dependency_of),
            "fields": dict(self.package.fields),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RIndexed:
        package = RPackage(
            name=validate.r_name(raw["name"]),
            version=validate.r_version(raw["version"]),
            md5=str(raw["md5"]),
            fields={str(k): str(v) for k, v in dict(raw.get("fields", {})).items()},
            repository=str(raw.get("upstream", "")),
        )
        return cls(
            package=package,
            path=str(raw["path"]),
            sha256=str(raw["sha256"]),
            size=int(raw["size"]),
            vetted_in=tuple(str(s) for s in raw.get("vetted_in", ())),
            dependency_of=tuple(str(s) for s in raw.get("dependency_of", ())),
            current=bool(raw.get("current", True)),
        )


@dataclass(frozen=True)
class RManifest:
    """The R part of the index manifest."""

    roots: tuple[RRoot, ...] = ()
    packages: tuple[RIndexed, ...] = ()
    upstreams: tuple[str, ...] = ()

    def versions(self, name: str) -> dict[str, RIndexed]:
        return {p.package.version: p for p in self.packages if p.package.name == name}

    def to_json(self) -> dict[str, Any]:
        return {
            "upstreams": list(self.upstreams),
            "roots": [
                {
                    "name": r.name,
                    "version": r.version,
                    "set": r.source,
                    "reason": r.reason,
                    "requested_by": r.requested_by,
                }
                for r in self.roots
            ],
            "packages": [p.to_json() for p in self.packages],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RManifest:
        roots = tuple(
            RRoot(
                validate.r_name(r["name"]),
                validate.r_version(r["version"]),
                str(r["set"]),
                str(r["reason"]),
                str(r["requested_by"]),
            )
            for r in raw.get("roots", ())
        )
        packages = tuple(RIndexed.from_json(p) for p in raw.get("packages", ()))
        return cls(roots, packages, tuple(str(u) for u in raw.get("upstreams", ())))


# --- the closure ------------------------------------------------------------------------------


@dataclass
class Available:
    """What the upstreams offer: name -> version -> package, first upstream first."""

    by_name: dict[str, dict[str, RPackage]] = field(default_factory=dict)
    current: dict[str, RPackage] = field(default_factory=dict)  # the first upstream's version

    @classmethod
    def from_upstreams(cls, upstreams: Sequence[Sequence[RPackage]]) -> Available:
        available = cls()
        for packages in upstreams:
            for package in packages:
                versions = available.by_name.setdefault(package.name, {})
                versions.setdefault(package.version, package)
                available.current.setdefault(package.name, package)
        return available

    def exact(self, name: str, version: str) -> RPackage | None:
        for have, package in self.by_name.get(name, {}).items():
            if same_r_version(have, version):
                return package
        return None


def closure(roots: Sequence[RRoot], available: Available) -> dict[str, tuple[RPackage, ...]]:
    """Each root's closure (root first). A dependency takes a vetted version when one fits,
    else the first upstream's current version; a constraint nothing fits is an error."""
    vetted: dict[str, list[RPackage]] = {}
    for root in roots:
        package = available.exact(root.name, root.version)
        if package is None:
            have = ", ".join(sorted(available.by_name.get(root.name, {}), key=version_key))
            raise PackageIndexError(
                f"R package {root.pin} [vetted in {root.source!r}] is not in the CRAN upstream"
                + (f" (it has {have})" if have else ""),
                "vet a version the upstream serves, or add an older dated snapshot to "
                "[index] cran_snapshots in imagebot.toml",
            )
        vetted.setdefault(root.name, []).append(package)
    result: dict[str, tuple[RPackage, ...]] = {}
    for root in roots:
        top = available.exact(root.name, root.version)
        assert top is not None  # checked above
        result[root.pin] = _walk(top, vetted, available, root)
    return result


def _walk(
    top: RPackage, vetted: Mapping[str, list[RPackage]], available: Available, root: RRoot
) -> tuple[RPackage, ...]:
    seen: dict[str, RPackage] = {top.name: top}
    todo = [top]
    while todo:
        package = todo.pop()
        for dep in package.dependencies():
            if dep.name in seen:
                if not dep.allows(seen[dep.name].version):
                    raise _unmet(root, package, dep, seen[dep.name].version)
                continue
            choices = list(vetted.get(dep.name, ()))
            upstream_current = available.current.get(dep.name)
            fits = _fitting(dep, choices)
            if not fits and upstream_current is not None:
                choices.append(upstream_current)
                fits = _fitting(dep, [upstream_current])
            if not fits:
                offered = choices[-1].version if choices else None
                raise _unmet(root, package, dep, offered)
            seen[dep.name] = fits[0]
            todo.append(fits[0])
    return (top, *sorted((p for n, p in seen.items() if n != top.name), key=lambda p: p.name))


def _fitting(dep: Dependency, choices: Sequence[RPackage]) -> list[RPackage]:
    """The choices that satisfy dep, highest version first."""
    return sorted(
        (c for c in choices if dep.allows(c.version)),
        key=lambda c: version_key(c.version),
        reverse=True,
    )


def _unmet(
    root: RRoot, package: RPackage, dep: Dependency, offered: str | None
) -> PackageIndexError:
    have = f"the upstream has {offered}" if offered else "the upstream does not have it"
    return PackageIndexError(
        f"R package {root.pin} [vetted in {root.source!r}]: {package.name} {package.version} "
        f"needs {dep}; {have}",
        f"vet a version of it that fits (index-only.toml [r]), or another version of {root.name}",
    )


def layout(
    roots: Sequence[RRoot], closures: Mapping[str, Sequence[RPackage]]
) -> list[tuple[RPackage, str, bool, tuple[str, ...], tuple[str, ...]]]:
    """(package, path, current, vetted_in, dependency_of) for every file of the repository:
    the highest version of each name is current (PACKAGES), the others go under Archive/."""
    vetted_in: dict[tuple[str, str], set[str]] = {}
    dependency_of: dict[tuple[str, str], set[str]] = {}
    packages: dict[tuple[str, str], RPackage] = {}
    for root in roots:
        top, *deps = closures[root.pin]
        packages[(top.name, top.version)] = top
        vetted_in.setdefault((top.name, top.version), set()).add(root.source)
        for dep in deps:
            packages[(dep.name, dep.version)] = dep
            dependency_of.setdefault((dep.name, dep.version), set()).add(root.pin)
    return placed(
        (
            package,
            tuple(sorted(vetted_in.get(key, ()))),
            tuple(sorted(dependency_of.get(key, ()))),
        )
        for key, package in sorted(packages.items())
    )


def placed(
    entries: Iterable[tuple[RPackage, tuple[str, ...], tuple[str, ...]]],
) -> list[tuple[RPackage, str, bool, tuple[str, ...], tuple[str, ...]]]:
    """(package, path, current, vetted_in, dependency_of) for (package, vetted_in,
    dependency_of): the highest version of each name is current (PACKAGES), the others go
    under Archive/. Rows keep the entries' order."""
    listed = list(entries)
    highest: dict[str, str] = {}
    for package, _, _ in listed:
        name, version = package.name, package.version
        if name not in highest or version_key(version) > version_key(highest[name]):
            highest[name] = version
    rows = []
    for package, vetted_in, dependency_of in listed:
        current = highest[package.name] == package.version
        path = (
            f"{CONTRIB}/{package.filename}"
            if current
            else f"{CONTRIB}/Archive/{package.name}/{package.filename}"
        )
        rows.append((package, path, current, vetted_in, dependency_of))
    return rows


def packages_text(indexed: Iterable[RIndexed]) -> str:
    """The vetted PACKAGES: one stanza per current package, sorted by name."""
    current = sorted((p for p in indexed if p.current), key=lambda p: p.package.name)
    return write_dcf(
        {k: p.package.fields[k] for k in PACKAGES_FIELDS if k in p.package.fields}
        | {"MD5sum": p.package.md5}
        for p in current
    )


# --- Meta/archive.rds: older versions, as remotes::install_version() looks them up -------------
#
# remotes reads src/contrib/Meta/archive.rds: a named list, one data.frame per package whose
# row names are "<pkg>/<pkg>_<version>.tar.gz" under Archive/. R's serialization format
# (version 2, XDR) is written here directly: the build machine needs no R.

_NILVALUE, _SYMSXP, _LISTSXP, _CHARSXP, _REALSXP, _INTSXP, _STRSXP, _VECSXP = (
    254,
    1,
    2,
    9,
    14,
    13,
    16,
    19,
)
_ASCII_LEVEL = 64  # CHARSXP levels: ASCII_MASK


def _int(value: int) -> bytes:
    return value.to_bytes(4, "big", signed=True)


def _flags(kind: int, *, obj: bool = False, attr: bool = False, tag: bool = False) -> bytes:
    levels = _ASCII_LEVEL if kind == _CHARSXP else 0
    return _int(kind | obj << 8 | attr << 9 | tag << 10 | levels << 12)


def _chars(text: str) -> bytes:
    data = text.encode("ascii")  # names and versions are ASCII (validate.r_name/r_version)
    return _flags(_CHARSXP) + _int(len(data)) + data


def _strings(values: Sequence[str]) -> bytes:
    return _flags(_STRSXP) + _int(len(values)) + b"".join(_chars(v) for v in values)


def _attributes(pairs: Sequence[tuple[str, bytes]]) -> bytes:
    out = b""
    for name, value in pairs:
        out += _flags(_LISTSXP, tag=True) + _flags(_SYMSXP) + _chars(name) + value
    return out + _int(_NILVALUE)


def _data_frame(rows: Sequence[tuple[str, int]]) -> bytes:
    """data.frame(size, mtime) with row names <pkg>/<file>; mtime orders the versions."""
    sizes = _flags(_INTSXP) + _int(len(rows)) + b"".join(_int(size) for _, size in rows)
    mtime = (
        _flags(_REALSXP, attr=True)
        + _int(len(rows))
        + b"".join(struct.pack(">d", float(i)) for i in range(len(rows)))
        + _attributes([("class", _strings(["POSIXct", "POSIXt"]))])
    )
    return (
        _flags(_VECSXP, obj=True, attr=True)
        + _int(2)
        + sizes
        + mtime
        + _attributes(
            [
                ("names", _strings(["size", "mtime"])),
                ("class", _strings(["data.frame"])),
                ("row.names", _strings([path for path, _ in rows])),
            ]
        )
    )


def archive_rds(archived: Mapping[str, Sequence[tuple[str, int]]]) -> bytes:
    """gzip'd RDS of {package: data.frame} for the files under Archive/ (oldest first)."""
    import gzip

    names = sorted(archived)
    body = (
        b"X\n"
        + _int(2)
        + _int(0x040202)  # written as by R 4.2.2
        + _int(0x020300)  # readable by R >= 2.3.0
        + _flags(_VECSXP, attr=True)
        + _int(len(names))
        + b"".join(_data_frame(archived[name]) for name in names)
        + _attributes([("names", _strings(names))])
    )
    return gzip.compress(body, mtime=0)


def archived_files(indexed: Iterable[RIndexed]) -> dict[str, list[tuple[str, int]]]:
    """Package -> [(<pkg>/<file>, size)] of its Archive/ files, oldest version first."""
    found: dict[str, list[tuple[RIndexed, str, int]]] = {}
    for p in indexed:
        if not p.current:
            name = p.package.name
            found.setdefault(name, []).append((p, f"{name}/{p.package.filename}", p.size))
    return {
        name: [
            (path, size)
            for _, path, size in sorted(rows, key=lambda r: version_key(r[0].package.version))
        ]
        for name, rows in found.items()
    }


_TARBALL = re.compile(
    r"([A-Za-z][A-Za-z0-9.]*[A-Za-z0-9])_[0-9]+(?:[.-][0-9]+)+\.tar\.gz", re.ASCII
)
REPOSITORY_INDEX_FILES = ("PACKAGES", "PACKAGES.gz", "Meta/archive.rds")


def repository_object(key: str) -> str | None:
    """What a key under OUT (`cran/src/contrib/...`) is: "file" (a package tarball, immutable
    by name), "index" (PACKAGES, PACKAGES.gz, Meta/archive.rds: publish them after the files
    they list), or None for anything `index build` never writes there."""
    prefix = f"{CRAN_DIR}/{CONTRIB}/"
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    if rest in REPOSITORY_INDEX_FILES:
        return "index"
    parts = rest.split("/")
    if len(parts) == 1 and _TARBALL.fullmatch(parts[0]):
        return "file"
    if len(parts) == 3 and parts[0] == "Archive":
        match = _TARBALL.fullmatch(parts[2])
        if match and match[1] == parts[1]:
            return "file"
    return None


def cran_url(index_url: str) -> str:
    """The vetted repository sits beside simple/: <root>/cran."""
    base = index_url.rstrip("/")
    if base.endswith("/simple"):
        base = base[: -len("/simple")]
    return f"{base}/{CRAN_DIR}"
