"""The vetted package index, pure core: model, wheel selection, pages, manifest and planning.

Nothing here touches the network or the file system, so all of it is unit-tested directly:
  - the model (Target, Root, DistFile, Release, IndexedPackage, IndexManifest, Locked; Pin
    comes from `imagebot.lockfile`),
  - wheel tags for the image's Python and platform, and the one wheel pip there would pick,
  - the PEP 503 HTML and PEP 691 JSON pages of the static index,
  - the manifest (what is in the index and why) and its JSON form,
  - planning an incremental build: what the previous manifest already answers, and which of
    its files a lock vouches for.

The adapters are `imagebot.pypi` (upstream simple API, verified downloads) and `imagebot.uv`;
`imagebot.index` orchestrates the build. Only the standard library is imported at
module level; `packaging` is imported where it is used.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imagebot.cran import RManifest
from imagebot.errors import PackageIndexError, Problem, RequirementsError
from imagebot.lockfile import Pin as Pin
from imagebot.lockfile import pins as lock_pins
from imagebot.requirements import INDEX_ONLY, normalize

MANIFEST_NAME = "imagebot-index.json"
MANIFEST_FORMAT = 1
GENERATED_BY = "imagebot index build"  # what marks OUT as an index imagebot wrote
SIMPLE_DIR = "simple"
FILES_DIR = "files"
INDEX_ONLY_SET = INDEX_ONLY
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
_PLATFORM = re.compile(r"^(?P<arch>[a-z0-9_]+)-manylinux_(?P<major>\d+)_(?P<minor>\d+)$")
# Pins of a lock or of `uv pip compile` output: the one lock parser, under its index name.
parse_compiled = lock_pins
# The legacy manylinux names pip and PyPI still use, by the glibc they stand for.
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


# --- model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The interpreter and platform the index serves: those of the rendered image."""

    python: str  # "3.11"
    platform: str  # uv --python-platform, e.g. "x86_64-manylinux_2_36"

    def describe(self) -> str:
        return f"Python {self.python} on {self.platform}"


@dataclass(frozen=True)
class Root:
    """One vetted requirement: a set entry or an index-only entry."""

    name: str
    version: str
    source: str  # the set it is vetted in ("index-only" for index-only.toml)
    reason: str
    requested_by: str
    extras: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return normalize(self.name)

    @property
    def pin(self) -> str:
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"{self.key}{extras}=={self.version}"


@dataclass(frozen=True)
class DistFile:
    filename: str
    url: str  # where it was fetched from (PyPI's file URL)
    sha256: str
    size: int
    requires_python: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "url": self.url,
            "sha256": self.sha256,
            "size": self.size,
            "requires_python": self.requires_python,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DistFile:
        return cls(
            filename=str(raw["filename"]),
            url=str(raw["url"]),
            sha256=str(raw["sha256"]),
            size=int(raw["size"]),
            requires_python=raw.get("requires_python"),
        )


@dataclass(frozen=True)
class Release:
    """What PyPI says about one name==version."""

    name: str  # as PyPI spells it
    version: str
    files: tuple[DistFile, ...]
    yanked: bool = False
    yanked_reason: str = ""


@dataclass(frozen=True)
class IndexedPackage:
    """One name==version in the index, its chosen file and why it is there."""

    name: str  # display name (PyPI's spelling)
    version: str
    file: DistFile
    vetted_in: tuple[str, ...]  # sets where it is a root
    dependency_of: tuple[str, ...]  # root pins whose closure needs it
    locked_in: tuple[str, ...] = ()  # sets whose image lock installs it

    @property
    def pin(self) -> Pin:
        return Pin(normalize(self.name), self.version)


@dataclass(frozen=True)
class IndexManifest:
    target: Target
    roots: tuple[Root, ...]
    closures: Mapping[str, tuple[Pin, ...]]  # root pin -> resolved closure (root included)
    packages: tuple[IndexedPackage, ...]  # sorted by (name, version)
    # The CRAN-like repository under OUT/cran, when R is vetted.
    r: RManifest = field(default_factory=RManifest)

    def versions(self, name: str) -> dict[str, IndexedPackage]:
        key = normalize(name)
        return {p.version: p for p in self.packages if p.pin.name == key}


@dataclass(frozen=True)
class Locked:
    """One package of a resolved closure, with the target's wheels when the resolver knows them."""

    pin: Pin
    files: tuple[DistFile, ...] = ()


# --- pure: platform tags and wheel selection --------------------------------------------------


def parse_platform(platform: str) -> tuple[str, int, int]:
    """'x86_64-manylinux_2_36' -> ('x86_64', 2, 36)."""
    match = _PLATFORM.match(platform)
    if not match:
        raise PackageIndexError(
            f"unsupported image platform {platform!r}",
            "use <arch>-manylinux_<glibc major>_<minor>, e.g. x86_64-manylinux_2_36",
        )
    return match["arch"], int(match["major"]), int(match["minor"])


def platform_tags(platform: str) -> list[str]:
    """Wheel platform tags a glibc Linux of that version accepts, most specific first."""
    arch, major, minor = parse_platform(platform)
    tags: list[str] = []
    for glibc_minor in range(minor, 4, -1):
        tags.append(f"manylinux_{major}_{glibc_minor}_{arch}")
        legacy = _LEGACY_MANYLINUX.get((major, glibc_minor))
        if legacy:
            tags.append(f"{legacy}_{arch}")
    return tags


def target_tags(target: Target) -> dict[str, int]:
    """Every wheel tag the target interpreter accepts -> its priority (0 is best)."""
    from packaging import tags

    version = tuple(int(part) for part in target.python.split("."))
    interpreter = f"cp{version[0]}{version[1]}"
    platforms = platform_tags(target.platform)
    ordered = [
        *tags.cpython_tags(version, abis=[interpreter], platforms=platforms),
        *tags.compatible_tags(version, interpreter, platforms),
    ]
    priorities: dict[str, int] = {}
    for priority, tag in enumerate(ordered):
        priorities.setdefault(str(tag), priority)
    return priorities


def _supports_python(requires_python: str | None, python: str) -> bool:
    if not requires_python:
        return True
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return True  # PyPI has a few broken ones; the wheel tag already says enough
    return spec.contains(f"{python}.0", prereleases=True)


def wheel_priority(filename: str, priorities: Mapping[str, int]) -> int | None:
    """Best priority among the wheel's tags, or None when the target cannot install it."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        _, _, _, wheel_tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    found = [priorities[str(tag)] for tag in wheel_tags if str(tag) in priorities]
    return min(found) if found else None


def select_file(release: Release, target: Target, priorities: Mapping[str, int]) -> DistFile:
    """The one wheel pip on the target would pick; raise naming the package when none fits."""
    pin = f"{release.name}=={release.version}"
    if release.yanked:
        reason = f" ({release.yanked_reason})" if release.yanked_reason else ""
        raise PackageIndexError(
            f"{pin} is yanked on PyPI{reason}",
            "vet a version that is not yanked (see the project's release history on PyPI)",
        )
    candidates: list[tuple[int, str, DistFile]] = []
    for dist in release.files:
        if not dist.filename.endswith(".whl"):
            continue
        priority = wheel_priority(dist.filename, priorities)
        if priority is not None and _supports_python(dist.requires_python, target.python):
            candidates.append((priority, dist.filename, dist))
    if not candidates:
        raise PackageIndexError(
            f"{pin} has no wheel for {target.describe()} (PyPI has {describe_files(release)})",
            "vet a version that ships a wheel for the image's platform; the index serves "
            "wheels only, so pods never compile code",
        )
    return min(candidates)[2]


def describe_files(release: Release) -> str:
    """'an sdist and 13 wheels for other Pythons or platforms', for error messages."""
    wheels = sum(1 for f in release.files if f.filename.endswith(".whl"))
    others = len(release.files) - wheels
    parts = []
    if others:
        parts.append("an sdist" if others == 1 else f"{others} sdists")
    if wheels:
        noun = "wheel" if wheels == 1 else "wheels"
        parts.append(f"{wheels} {noun} for other Pythons or platforms")
    return " and ".join(parts) or "no files"


# --- pure: pages -------------------------------------------------------------------------------


def file_href(dist: DistFile) -> str:
    """Link from simple/<project>/ to files/<wheel>, with the hash pip verifies."""
    return f"../../{FILES_DIR}/{dist.filename}#sha256={dist.sha256}"


def render_project_html(name: str, files: Sequence[DistFile]) -> str:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        '<meta name="pypi:repository-version" content="1.1">',
        f"<title>Links for {html.escape(name)}</title>",
        "</head>",
        "<body>",
        f"<h1>Links for {html.escape(name)}</h1>",
    ]
    for dist in sorted(files, key=lambda f: f.filename):
        requires = (
            f' data-requires-python="{html.escape(dist.requires_python)}"'
            if dist.requires_python
            else ""
        )
        lines.append(
            f'<a href="{html.escape(file_href(dist))}"{requires}>{html.escape(dist.filename)}</a><br>'
        )
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def render_project_json(name: str, files: Sequence[DistFile], versions: Sequence[str]) -> str:
    entries = []
    for dist in sorted(files, key=lambda f: f.filename):
        entry: dict[str, Any] = {
            "filename": dist.filename,
            "url": file_href(dist).split("#", 1)[0],
            "hashes": {"sha256": dist.sha256},
            "size": dist.size,
        }
        if dist.requires_python:
            entry["requires-python"] = dist.requires_python
        entries.append(entry)
    document = {
        "meta": {"api-version": "1.1"},
        "name": normalize(name),
        "versions": list(versions),
        "files": entries,
    }
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def render_root_html(projects: Iterable[str]) -> str:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        '<meta name="pypi:repository-version" content="1.1">',
        "<title>Vetted packages</title>",
        "</head>",
        "<body>",
    ]
    for project in sorted(normalize(p) for p in projects):
        lines.append(f'<a href="{project}/">{project}</a><br>')
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def render_root_json(projects: Iterable[str]) -> str:
    document = {
        "meta": {"api-version": "1.1"},
        "projects": [{"name": p} for p in sorted(normalize(p) for p in projects)],
    }
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def render_pages(packages: Sequence[IndexedPackage]) -> dict[str, str]:
    """Relative path under OUT -> text, for every page of the simple index."""
    by_project: dict[str, list[IndexedPackage]] = {}
    for package in packages:
        by_project.setdefault(package.pin.name, []).append(package)
    pages = {
        f"{SIMPLE_DIR}/index.html": render_root_html(by_project),
        f"{SIMPLE_DIR}/index.json": render_root_json(by_project),
    }
    for project, entries in sorted(by_project.items()):
        files = [e.file for e in entries]
        versions = sorted_versions(e.version for e in entries)
        pages[f"{SIMPLE_DIR}/{project}/index.html"] = render_project_html(project, files)
        pages[f"{SIMPLE_DIR}/{project}/index.json"] = render_project_json(project, files, versions)
    return pages


@functools.lru_cache(maxsize=65536)
def _parsed_version(text: str) -> Any:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        return None


def sorted_versions(versions: Iterable[str]) -> list[str]:
    """Distinct versions in PEP 440 order; any that are not PEP 440 first, as text."""

    def key(version: str) -> tuple[int, Any]:
        parsed = _parsed_version(version)
        return (0, version) if parsed is None else (1, parsed)

    return sorted(set(versions), key=key)


def same_version(a: str, b: str) -> bool:
    """PEP 440 equality (1.0 == 1.0.0); plain string equality for non-PEP 440 versions."""
    if a == b:
        return True
    parsed_a, parsed_b = _parsed_version(a), _parsed_version(b)
    return parsed_a is not None and parsed_a == parsed_b


# --- pure: roots, closures, manifest ----------------------------------------------------------


def collect_roots(
    set_roots: Sequence[tuple[str, Sequence[Any]]],
    index_only: Sequence[Any],
    index_only_path: str = "requirements/index-only.toml",
) -> list[Root]:
    """Roots from (set name, python Requirements) pairs plus index-only Requirements.

    An index-only entry may vet another version of a package that is in a set (users pin older
    versions for old projects), but not the same version again.
    """
    roots: list[Root] = []
    seen: dict[tuple[str, str], str] = {}
    problems: list[Problem] = []
    for source, requirements in [*set_roots, (INDEX_ONLY_SET, index_only)]:
        for req in requirements:
            root = Root(
                name=req.name,
                version=req.version,
                source=source,
                reason=req.reason,
                requested_by=req.requested_by,
                extras=tuple(req.extras),
            )
            ident = (root.key, root.version)
            if ident in seen and source == INDEX_ONLY_SET:
                problems.append(
                    Problem(
                        index_only_path,
                        req.line,
                        f"{req.name}=={req.version} is already vetted in set {seen[ident]!r}",
                        "remove it from index-only.toml; every set package is in the index",
                    )
                )
                continue
            seen.setdefault(ident, source)
            roots.append(root)
    if problems:
        raise RequirementsError(problems, index_only_path, "fix the entries above")
    return roots


def parse_pylock(text: str) -> list[Locked]:
    """Packages and wheels from a PEP 751 pylock.toml (as `uv pip compile --format
    pylock.toml` writes it for one platform)."""
    import tomllib
    import urllib.parse

    locked: list[Locked] = []
    for package in tomllib.loads(text).get("packages", []):
        files = tuple(
            DistFile(
                filename=urllib.parse.unquote(wheel["url"].rsplit("/", 1)[-1]),
                url=wheel["url"],
                sha256=wheel["hashes"]["sha256"],
                size=int(wheel.get("size", 0)),
            )
            for wheel in package.get("wheels", [])
            if "url" in wheel and "sha256" in wheel.get("hashes", {})
        )
        locked.append(Locked(Pin(normalize(package["name"]), str(package["version"])), files))
    return locked


def index_packages(
    roots: Sequence[Root],
    closures: Mapping[str, Sequence[Pin]],
    releases: Mapping[Pin, Release],
    chosen: Mapping[Pin, DistFile],
    locked: Mapping[str, Sequence[Pin]] | None = None,
) -> list[IndexedPackage]:
    """Everything the index serves, with why: the sets a pin is vetted in, the roots needing it,
    the image layers (set locks) installing it."""
    vetted_in: dict[Pin, set[str]] = {}
    dependency_of: dict[Pin, set[str]] = {}
    locked_in: dict[Pin, set[str]] = {}
    for set_name, pins in (locked or {}).items():
        for pin in pins:
            locked_in.setdefault(pin, set()).add(set_name)
    for root in roots:
        closure = closures[root.pin]
        # uv may spell the version differently (1.17 vs 1.17.0): match the root by name.
        root_pin = next((p for p in closure if p.name == root.key), Pin(root.key, root.version))
        vetted_in.setdefault(root_pin, set()).add(root.source)
        for pin in closure:
            if pin != root_pin:
                dependency_of.setdefault(pin, set()).add(str(root_pin))
    packages = [
        IndexedPackage(
            name=releases[pin].name,
            version=pin.version,
            file=chosen[pin],
            vetted_in=tuple(sorted(vetted_in.get(pin, ()))),
            dependency_of=tuple(sorted(dependency_of.get(pin, ()))),
            locked_in=tuple(sorted(locked_in.get(pin, ()))),
        )
        for pin in sorted(set(vetted_in) | set(dependency_of) | set(locked_in))
    ]
    return packages


def manifest_to_json(manifest: IndexManifest) -> str:
    document = {
        "format": MANIFEST_FORMAT,
        "generated_by": GENERATED_BY,
        "target": {"python": manifest.target.python, "platform": manifest.target.platform},
        "roots": [
            {
                "name": r.name,
                "version": r.version,
                "extras": list(r.extras),
                "set": r.source,
                "reason": r.reason,
                "requested_by": r.requested_by,
                "closure": [str(p) for p in manifest.closures[r.pin]],
            }
            for r in manifest.roots
        ],
        "packages": [
            {
                "name": p.name,
                "version": p.version,
                "vetted_in": list(p.vetted_in),
                "dependency_of": list(p.dependency_of),
                "locked_in": list(p.locked_in),
                "file": p.file.to_json(),
            }
            for p in manifest.packages
        ],
    }
    if manifest.r.roots:
        document["r"] = manifest.r.to_json()
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def manifest_from_json(text: str, where: str) -> IndexManifest:
    try:
        raw = json.loads(text)
        if raw.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {MANIFEST_FORMAT}")
        target = Target(python=raw["target"]["python"], platform=raw["target"]["platform"])
        roots: list[Root] = []
        closures: dict[str, tuple[Pin, ...]] = {}
        for r in raw["roots"]:
            root = Root(
                name=r["name"],
                version=r["version"],
                source=r["set"],
                reason=r["reason"],
                requested_by=r["requested_by"],
                extras=tuple(r.get("extras", ())),
            )
            roots.append(root)
            closures[root.pin] = tuple(
                Pin(*pin.split("==", 1)) for pin in r["closure"] if "==" in pin
            )
        packages = tuple(
            IndexedPackage(
                name=p["name"],
                version=p["version"],
                file=DistFile.from_json(p["file"]),
                vetted_in=tuple(p["vetted_in"]),
                dependency_of=tuple(p["dependency_of"]),
                locked_in=tuple(p.get("locked_in", ())),
            )
            for p in raw["packages"]
        )
        r = RManifest.from_json(raw["r"]) if "r" in raw else RManifest()
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise PackageIndexError(
            f"{where}: not a readable imagebot index manifest ({str(exc)[:200]})",
            "rebuild the index with imagebot index build",
        ) from None
    return IndexManifest(
        target=target, roots=tuple(roots), closures=closures, packages=packages, r=r
    )


def image_target(images: Iterable[Any]) -> Target:
    """The one (python, platform) of the images built from sets: what pods and the hub run."""
    targets = {Target(i.python, i.platform) for i in images if i.sets}
    if len(targets) != 1:
        described = ", ".join(sorted(t.describe() for t in targets)) or "none"
        raise PackageIndexError(
            f"the index serves one Python and platform; images with sets use: {described}",
            "give every image with sets the same python and platform in imagebot.toml",
        )
    return targets.pop()


def manifest_url(index_url: str) -> str:
    """The manifest sits at the index root, beside simple/: <root>/imagebot-index.json."""
    base = index_url.rstrip("/")
    if base.endswith(f"/{SIMPLE_DIR}"):
        base = base[: -len(SIMPLE_DIR) - 1]
    return f"{base}/{MANIFEST_NAME}"


# --- pure: planning an incremental build ------------------------------------------------------


def reusable_manifest(previous: IndexManifest | None, target: Target) -> IndexManifest | None:
    """The previous build's manifest when it can answer for this one: same Python and platform."""
    if previous is None or previous.target != target:
        return None  # another Python or platform: nothing carries over
    return previous


def unresolved_roots(roots: Sequence[Root], previous: IndexManifest | None) -> list[Root]:
    """Roots the previous build did not resolve: only these are checked and resolved again."""
    return [r for r in roots if previous is None or r.pin not in previous.closures]


def previous_releases(previous: IndexManifest | None) -> dict[Pin, Release]:
    """Each pin of the previous build with the one file it chose, so it is not asked for again."""
    return {
        package.pin: Release(package.name, package.version, (package.file,))
        for package in (previous.packages if previous else ())
    }


def confirmed_releases(
    previous: IndexManifest | None, trusted: Mapping[Pin, frozenset[str]]
) -> dict[Pin, Release]:
    """The previous build's choices whose file a trusted source (the image's locks) vouches
    for. OUT and its manifest can be rewritten by anyone who can write OUT, so a file whose
    hash only the manifest records is checked against the upstream again."""
    return {
        pin: release
        for pin, release in previous_releases(previous).items()
        if f"sha256:{release.files[0].sha256}" in trusted.get(pin, frozenset())
    }


def pins_to_index(
    closures: Mapping[str, Sequence[Pin]], locked: Mapping[str, Sequence[Pin]]
) -> list[Pin]:
    """Every pin the index serves: the roots' closures and the image's layer locks."""
    return sorted(
        {pin for closure in closures.values() for pin in closure}
        | {pin for layer in locked.values() for pin in layer}
    )
