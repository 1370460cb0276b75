"""The vetted package index: a static PEP 503 / PEP 691 index built from the allowlist.

Only what is vetted can be installed inside a pod, so the index holds exactly:
  - every Python package of every requirement set (the image's allowlist), at its pinned version,
  - every package of the optional `requirements/index-only.toml` (vetted for self-install, not
    baked into the image),
  - the dependency closure of each of those roots, resolved by uv for the image's Python
    and platform,
  - and every version the image's layer locks (`requirements/<set>.lock`) install.

Layout of OUT (any static host can serve it; production uses a bucket):

    OUT/imagebot-index.json          manifest: what is in the index and why
    OUT/simple/index.html|.json      PEP 503 root page / PEP 691 JSON
    OUT/simple/<project>/index.html  one page per project, links carry #sha256=...
    OUT/simple/<project>/index.json
    OUT/files/<wheel>                the distributions, verified against PyPI's sha256

The module is layered: pure functions (tags, wheel selection, pages, manifest, closures) at the
top; adapters (PyPI's PEP 691 API over HTTP, uv, the file system, the HTTP server) below;
`build_index` orchestrates and returns a `BuildResult`. Only the standard library is imported at module level: `packaging`,
`rich`, `tenacity` and `uv` are imported where they are used.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from imagebot.errors import PackageIndexError, Problem, RequirementsError
from imagebot.requirements import normalize

MANIFEST_NAME = "imagebot-index.json"
MANIFEST_FORMAT = 1
SIMPLE_DIR = "simple"
FILES_DIR = "files"
INDEX_ONLY_SET = "index-only"
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
PYPI_SIMPLE_URL = "https://pypi.org/simple"
_PLATFORM = re.compile(r"^(?P<arch>[a-z0-9_]+)-manylinux_(?P<major>\d+)_(?P<minor>\d+)$")
_PIN_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)"
)
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


@dataclass(frozen=True, order=True)
class Pin:
    name: str  # normalised
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


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
class Manifest:
    target: Target
    roots: tuple[Root, ...]
    closures: Mapping[str, tuple[Pin, ...]]  # root pin -> resolved closure (root included)
    packages: tuple[IndexedPackage, ...]  # sorted by (name, version)

    def versions(self, name: str) -> dict[str, IndexedPackage]:
        key = normalize(name)
        return {p.version: p for p in self.packages if p.pin.name == key}


@dataclass(frozen=True)
class BuildResult:
    out: Path
    target: Target
    roots: int
    packages: int
    files: int
    downloaded: int
    reused: int
    bytes_downloaded: int
    metadata_fetches: int  # PyPI JSON requests
    resolutions: int  # uv runs
    seconds: float
    phases: Mapping[str, float] = field(default_factory=dict)  # seconds per stage


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
        versions = _sorted_versions(e.version for e in entries)
        pages[f"{SIMPLE_DIR}/{project}/index.html"] = render_project_html(project, files)
        pages[f"{SIMPLE_DIR}/{project}/index.json"] = render_project_json(project, files, versions)
    return pages


def _sorted_versions(versions: Iterable[str]) -> list[str]:
    from packaging.version import InvalidVersion, Version

    def key(version: str) -> tuple[int, Any]:
        try:
            return (1, Version(version))
        except InvalidVersion:
            return (0, version)

    return sorted(set(versions), key=key)


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


@dataclass(frozen=True)
class Locked:
    """One package of a resolved closure, with the target's wheels when the resolver knows them."""

    pin: Pin
    files: tuple[DistFile, ...] = ()


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


def parse_compiled(text: str) -> list[Pin]:
    """Pins from `uv pip compile` output (name==version lines; comments, hashes ignored)."""
    pins: list[Pin] = []
    for line in text.splitlines():
        match = _PIN_LINE.match(line.strip())
        if match:
            pins.append(Pin(normalize(match["name"]), match["version"]))
    return pins


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


def manifest_to_json(manifest: Manifest) -> str:
    document = {
        "format": MANIFEST_FORMAT,
        "generated_by": "imagebot index build",
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
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def manifest_from_json(text: str, where: str) -> Manifest:
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
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PackageIndexError(
            f"{where}: not a readable imagebot index manifest ({exc})",
            "rebuild the index with imagebot index build",
        ) from None
    return Manifest(target=target, roots=tuple(roots), closures=closures, packages=packages)


# --- adapters: PyPI, uv, files ----------------------------------------------------------------


class PackageSource(Protocol):
    """Where releases and files come from: PyPI in production, a fake in unit tests."""

    def release(self, name: str, version: str) -> Release: ...

    def download(self, dist: DistFile, dest: Path) -> None: ...


class Resolver(Protocol):
    def closure(self, root: Root, target: Target) -> list[Locked]: ...


class _Transient(Exception):
    """A fault worth retrying: 5xx, 429, connection reset, timeout."""


def _retrying(func: Callable[[], Any], backoff: float = 0.5) -> Any:
    """Call func; retry transient faults 3 times with exponential backoff (0.5 s, 1 s, 2 s)."""
    from tenacity import (
        retry,
        retry_if_exception_type,
        stop_after_attempt,
        wait_exponential,
    )

    wrapped = retry(
        retry=retry_if_exception_type(_Transient),
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=backoff, max=8),
        reraise=True,
    )(func)
    return wrapped()


def _open(url: str, timeout: float = 60, accept: str = "*/*") -> Any:
    headers = {"User-Agent": "imagebot-index", "Accept": accept}
    request = urllib.request.Request(url, headers=headers)
    try:
        # No shared SSLContext: measured 2-3x slower here, since resumed TLS sessions are slow
        # through some proxies; a context per request costs little next to a download.
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(f"HTTP {exc.code} from {url}") from exc
        raise
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise _Transient(f"{url}: {getattr(exc, 'reason', exc)}") from exc


class PyPI:
    """PyPI through its PEP 691 JSON simple API, and file downloads, with retries.

    The simple API (`/simple/<name>/`, Accept: application/vnd.pypi.simple.v1+json) is what pip
    and uv use, so mirrors and proxies serve it; it carries sha256, size, requires-python and
    yanked for every file. One request per project, however many versions the index needs.
    """

    def __init__(self, simple_url: str = PYPI_SIMPLE_URL, backoff: float = 0.5) -> None:
        self.simple_url = simple_url.rstrip("/")
        self.backoff = backoff
        self._lock = threading.Lock()
        self._project_locks: dict[str, threading.Lock] = {}
        self._projects: dict[str, Mapping[str, Any]] = {}
        self.metadata_fetches = 0

    def release(self, name: str, version: str) -> Release:
        project = self._project(name)
        release = release_from_simple_json(project, version)
        if release is None:
            recent = _sorted_versions(versions_in_simple_json(project))[-5:]
            raise PackageIndexError(
                f"{name}=={version}: PyPI has no version {version!r}",
                f"recent versions of {name}: {', '.join(recent) or 'none'}",
            )
        return release

    def _project(self, name: str) -> Mapping[str, Any]:
        key = normalize(name)
        with self._lock:
            project_lock = self._project_locks.setdefault(key, threading.Lock())
        with project_lock:
            if key not in self._projects:
                self._projects[key] = self._fetch_project(name, key)
                with self._lock:
                    self.metadata_fetches += 1
            return self._projects[key]

    def _fetch_project(self, name: str, key: str) -> Mapping[str, Any]:
        url = f"{self.simple_url}/{key}/"
        try:
            raw: Mapping[str, Any] = _retrying(
                lambda: _read_json(url, JSON_CONTENT_TYPE), self.backoff
            )
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise PackageIndexError(
                    f"package {name!r} does not exist on PyPI",
                    "check the spelling of the name (https://pypi.org/project/<name>/)",
                ) from None
            raise PackageIndexError(
                f"{name}: PyPI answered HTTP {exc.code} for {url}", "retry later"
            ) from None
        except _Transient as exc:
            raise PackageIndexError(
                f"{name}: the package index {self.simple_url} is unreachable ({exc})",
                "check the network (or IMAGEBOT_UPSTREAM_INDEX) and retry; OUT was not changed",
            ) from None
        return raw

    def download(self, dist: DistFile, dest: Path) -> None:
        def fetch() -> None:
            digest = hashlib.sha256()
            partial = dest.with_name(dest.name + ".part")
            with _open(dist.url, timeout=300) as response, partial.open("wb") as out:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != dist.sha256:
                partial.unlink(missing_ok=True)
                raise PackageIndexError(
                    f"{dist.filename}: sha256 {digest.hexdigest()} does not match PyPI's "
                    f"{dist.sha256}",
                    "the download was corrupted or tampered with; retry, and report it if it "
                    "persists",
                )
            os.replace(partial, dest)

        try:
            _retrying(fetch, self.backoff)
        except (_Transient, urllib.error.HTTPError) as exc:
            raise PackageIndexError(
                f"{dist.filename}: download failed ({exc})", "check the network and retry"
            ) from None


def _read_json(url: str, accept: str = "application/json") -> Any:
    with _open(url, accept=accept) as response:
        return json.load(response)


_SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz")


def file_version(filename: str) -> str | None:
    """The version text in a wheel or sdist file name, or None (string work only: PyPI
    documents list thousands of files and this runs for each of them)."""
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return parts[1] if len(parts) in (5, 6) else None
    for suffix in _SDIST_SUFFIXES:
        if filename.endswith(suffix):
            _, dash, version = filename[: -len(suffix)].rpartition("-")
            return version if dash else None
    return None


@functools.lru_cache(maxsize=65536)
def _parsed_version(text: str) -> Any:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        return None


def same_version(a: str, b: str) -> bool:
    """PEP 440 equality (1.0 == 1.0.0); plain string equality for non-PEP 440 versions."""
    if a == b:
        return True
    parsed_a, parsed_b = _parsed_version(a), _parsed_version(b)
    return parsed_a is not None and parsed_a == parsed_b


def versions_in_simple_json(project: Mapping[str, Any]) -> set[str]:
    if project.get("versions"):
        return {str(v) for v in project["versions"]}
    found = (file_version(f["filename"]) for f in project.get("files", []))
    return {v for v in found if v}


def release_from_simple_json(project: Mapping[str, Any], version: str) -> Release | None:
    """One version's files from a PEP 691 project document; None when it has no files."""
    entries = [
        f
        for f in project.get("files", [])
        if same_version(file_version(f["filename"]) or "", version)
    ]
    if not entries:
        return None
    live = [f for f in entries if not f.get("yanked")]
    reasons = {str(f["yanked"]) for f in entries if isinstance(f.get("yanked"), str)}
    files = tuple(
        DistFile(
            filename=f["filename"],
            url=f["url"],
            sha256=f["hashes"]["sha256"],
            size=int(f.get("size") or 0),
            requires_python=f.get("requires-python") or None,
        )
        for f in live
        if "sha256" in f.get("hashes", {})
    )
    return Release(
        name=str(project.get("name", "")) or normalize(entries[0]["filename"].split("-")[0]),
        version=version,
        files=files,
        yanked=not live,
        yanked_reason="; ".join(sorted(r for r in reasons if r)),
    )


class UvResolver:
    """Resolve one root's closure with `uv pip compile` for the target Python and platform."""

    def __init__(
        self, uv_bin: str | None = None, index_url: str | None = None, cache: bool = True
    ) -> None:
        if uv_bin is None:
            from uv import find_uv_bin

            uv_bin = find_uv_bin()
        self.uv_bin = uv_bin
        self.index_url = index_url
        self.cache = cache
        self._lock = threading.Lock()
        self.runs = 0

    def closure(self, root: Root, target: Target) -> list[Locked]:
        """The root's closure with the target's wheels (url, sha256, size) from uv's PEP 751
        output: uv read PyPI to resolve, so the index needs no metadata request of its own."""
        with self._lock:
            self.runs += 1
        return parse_pylock(self.compile([root.pin], target, root.pin, pylock=True))

    def compile(
        self,
        lines: Sequence[str],
        target: Target,
        what: str,
        hashes: bool = False,
        pylock: bool = False,
    ) -> str:
        command = [
            self.uv_bin,
            "pip",
            "compile",
            "-",
            "--python-version",
            target.python,
            "--python-platform",
            target.platform,
            "--only-binary",
            ":all:",
            "--no-header",
            "--no-annotate",
            "--quiet",
        ]
        if hashes:
            command.append("--generate-hashes")
        if pylock:
            command += ["--format", "pylock.toml"]
        if self.index_url:
            command += ["--index-url", self.index_url]
        if not self.cache:
            command.append("--no-cache")  # the in-house index changes under the same URLs
        env = {**os.environ, "UV_NO_PROGRESS": "1", "NO_COLOR": "1"}
        done = subprocess.run(
            command,
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise PackageIndexError(
                f"cannot resolve {what} for {target.describe()}: {summarize_uv_error(done.stderr)}",
                "vet versions whose dependencies resolve for the image's Python and platform",
            )
        return done.stdout


def summarize_uv_error(stderr: str) -> str:
    """uv's explanation in one line: the 'Because ...' sentence, without the resolver dump."""
    text = " ".join(line.strip() for line in stderr.splitlines() if line.strip())
    text = re.sub("^(error|\u00d7):?\\s*", "", text)
    text = text.replace("No solution found when resolving dependencies: ", "")
    text = text.replace("No solution found when resolving dependencies ", "")
    text = re.sub("\u2570\u2500\u25b6\\s*|cause:\\s*", "", text)
    return text[:400] or "uv failed without a message"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def read_previous_manifest(out: Path) -> Manifest | None:
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return manifest_from_json(path.read_text(encoding="utf-8"), str(path))
    except PackageIndexError:
        return None  # an unreadable old manifest only costs a full rebuild


def check_out_dir(out: Path) -> None:
    """Refuse to replace a directory that is not an index we built."""
    if out.exists() and not out.is_dir():
        raise PackageIndexError(f"{out} exists and is not a directory", "choose another OUT")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise PackageIndexError(
            f"{out} is not empty and has no {MANIFEST_NAME}, so it is not an imagebot index",
            "choose an empty or new directory; imagebot replaces OUT as a whole",
        )


def swap_in(staging: Path, out: Path) -> None:
    """Replace OUT by the finished staging directory (two renames on one file system)."""
    if not out.exists():
        os.rename(staging, out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    retired.rmdir()
    os.rename(out, retired)
    try:
        os.rename(staging, out)
    except OSError:
        os.rename(retired, out)
        raise
    shutil.rmtree(retired, ignore_errors=True)


# --- progress ---------------------------------------------------------------------------------


class Progress(Protocol):
    """Download progress. Files are added while metadata is still being read, so the total
    grows as the build goes."""

    def add(self, dist: DistFile) -> None: ...

    def advance(self, dist: DistFile) -> None: ...

    def close(self) -> None: ...


class PlainProgress:
    """One line per finished download on stderr (CI logs, pipes)."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.total = 0
        self.done = 0
        self._lock = threading.Lock()

    def add(self, dist: DistFile) -> None:
        with self._lock:
            self.total += 1

    def advance(self, dist: DistFile) -> None:
        with self._lock:
            self.done += 1
            self.echo(f"[{self.done}/{self.total}] {dist.filename} ({dist.size / 1e6:.1f} MB)")

    def close(self) -> None:
        pass


class RichProgress:
    """A byte progress bar on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichBar

        self.bar = RichBar(
            TextColumn("downloading {task.fields[files]} files"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.task = self.bar.add_task("download", total=0, files=0)
        self.total = 0
        self.files = 0
        self._lock = threading.Lock()

    def add(self, dist: DistFile) -> None:
        with self._lock:
            if not self.files:
                self.bar.start()
            self.total += dist.size
            self.files += 1
            self.bar.update(self.task, total=self.total, files=self.files)

    def advance(self, dist: DistFile) -> None:
        self.bar.advance(self.task, dist.size)

    def close(self) -> None:
        self.bar.stop()


class NoProgress:
    def add(self, dist: DistFile) -> None:
        pass

    def advance(self, dist: DistFile) -> None:
        pass

    def close(self) -> None:
        pass


class FileStager:
    """Puts each chosen file into the staging directory as soon as it is known: a hard link to
    OUT's copy when that has the right hash, else a verified download. Work runs in a thread
    pool, so downloads overlap the metadata reads of the packages still to choose."""

    def __init__(
        self, out: Path, staging: Path, source: PackageSource, progress: Progress, jobs: int
    ) -> None:
        self.old_files = out / FILES_DIR
        self.files_dir = staging / FILES_DIR
        self.files_dir.mkdir()
        self.source = source
        self.progress = progress
        self.pool = ThreadPoolExecutor(max_workers=jobs)
        self.futures: list[Future[None]] = []
        self.staged: set[str] = set()
        self.reused: list[DistFile] = []
        self.downloaded: list[DistFile] = []
        self._lock = threading.Lock()

    def submit(self, dist: DistFile) -> None:
        if dist.filename in self.staged:
            return  # each file is fetched once, however many packages need it
        self.staged.add(dist.filename)
        self.futures.append(self.pool.submit(self._stage, dist))

    def _stage(self, dist: DistFile) -> None:
        old, new = self.old_files / dist.filename, self.files_dir / dist.filename
        if old.is_file() and sha256_file(old) == dist.sha256:
            link_or_copy(old, new)
            with self._lock:
                self.reused.append(dist)
            return
        self.progress.add(dist)
        self.source.download(dist, new)
        self.progress.advance(dist)
        with self._lock:
            self.downloaded.append(dist)

    def finish(self) -> None:
        """Wait for every file; on the first failure, stop the rest and raise it."""
        try:
            for future in self.futures:
                future.result()
        except BaseException:
            self.abort()
            raise
        self.pool.shutdown(wait=True)
        self.progress.close()

    def abort(self) -> None:
        """Cancel what has not started and wait for what has: nothing writes afterwards."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.progress.close()


# --- orchestration ----------------------------------------------------------------------------


@dataclass
class BuildOptions:
    jobs: int = 8  # parallel downloads and metadata requests
    resolve_jobs: int = 4  # parallel uv runs
    refresh: bool = False  # re-resolve every root and re-read PyPI, ignoring the old manifest
    echo: Callable[[str], None] = field(default=lambda _line: None)


def build_index(
    out: Path,
    roots: Sequence[Root],
    target: Target,
    source: PackageSource,
    resolver: Resolver,
    progress: Progress,
    options: BuildOptions | None = None,
    locked: Mapping[str, Sequence[Pin]] | None = None,
) -> BuildResult:
    """Resolve, fetch and write the index into a staging directory, then swap it in as OUT.

    Downloads start as soon as a root's closure is resolved, while other roots still resolve.
    Any failure leaves OUT as it was and removes the staging directory.
    """
    options = options or BuildOptions()
    locked = locked or {}
    started = time.monotonic()
    out = out.absolute()
    check_out_dir(out)
    previous = None if options.refresh else read_previous_manifest(out)
    if previous is not None and previous.target != target:
        previous = None  # another Python or platform: nothing carries over
    phases: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        phases[name] = round(now - clock, 2)
        clock = now

    checked = _check_new_roots(roots, target, source, previous, options)
    lap("check roots")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        stager = FileStager(out, staging, source, progress, options.jobs)
        chooser = FileChooser(target, previous, checked, stager.submit)
        try:
            closures = _resolve_closures(roots, target, resolver, previous, options, chooser.offer)
            lap("resolve (downloads running)")
            pins = sorted(
                {pin for closure in closures.values() for pin in closure}
                | {pin for layer in locked.values() for pin in layer}
            )
            chooser.complete(pins, source, options)
        except BaseException:
            stager.abort()  # no download may still be writing when staging is removed
            raise
        stager.finish()
        lap("rest of the files")
        packages = index_packages(roots, closures, chooser.releases, chooser.chosen, locked)
        manifest = Manifest(target, tuple(roots), closures, tuple(packages))
        _write_pages(staging, packages, manifest)
        swap_in(staging, out)
        lap("pages and swap")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildResult(
        out=out,
        target=target,
        roots=len(roots),
        packages=len(packages),
        files=len(stager.reused) + len(stager.downloaded),
        downloaded=len(stager.downloaded),
        reused=len(stager.reused),
        bytes_downloaded=sum(d.size for d in stager.downloaded),
        metadata_fetches=getattr(source, "metadata_fetches", 0),
        resolutions=getattr(resolver, "runs", 0),
        seconds=time.monotonic() - started,
        phases=phases,
    )


def _check_new_roots(
    roots: Sequence[Root],
    target: Target,
    source: PackageSource,
    previous: Manifest | None,
    options: BuildOptions,
) -> dict[Pin, Release]:
    """Vet new roots against PyPI before resolving, so that a missing package, a yanked version
    or one without a wheel for the target is reported as such, not as a resolver failure."""
    new = [r for r in roots if previous is None or r.pin not in previous.closures]
    priorities = target_tags(target)

    def check(root: Root) -> Release:
        try:
            release = source.release(root.key, root.version)
            select_file(release, target, priorities)
        except PackageIndexError as exc:
            exc.message = f"{exc.message} [vetted in set {root.source!r}]"
            exc.args = (exc.message,)
            raise
        return release

    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        fetched = list(pool.map(check, new))
    return {Pin(r.key, r.version): release for r, release in zip(new, fetched, strict=True)}


def _resolve_closures(
    roots: Sequence[Root],
    target: Target,
    resolver: Resolver,
    previous: Manifest | None,
    options: BuildOptions,
    on_resolved: Callable[[Sequence[Locked]], None],
) -> dict[str, tuple[Pin, ...]]:
    """Each root's closure; each new one goes to `on_resolved` as soon as uv returns it.
    An unchanged root keeps the closure it had, so the index stays stable between builds."""
    known = dict(previous.closures) if previous else {}
    todo = [r for r in roots if r.pin not in known]
    if todo:
        options.echo(f"resolving {len(todo)} of {len(roots)} vetted packages with uv")
    with ThreadPoolExecutor(max_workers=options.resolve_jobs) as pool:
        futures = {pool.submit(resolver.closure, root, target): root for root in todo}
        try:
            for future in as_completed(futures):
                closure = future.result()
                known[futures[future].pin] = tuple(entry.pin for entry in closure)
                on_resolved(closure)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return {r.pin: known[r.pin] for r in roots}


class FileChooser:
    """Chooses each pin's wheel from the first source that knows it and hands it on at once:
    the old manifest, PyPI's metadata read for the roots, the resolver's output, and last
    PyPI's metadata read now (pins only the image locks name)."""

    def __init__(
        self,
        target: Target,
        previous: Manifest | None,
        checked: Mapping[Pin, Release],
        on_chosen: Callable[[DistFile], None],
    ) -> None:
        self.target = target
        self.priorities = target_tags(target)
        self.on_chosen = on_chosen
        self.known: dict[Pin, Release] = {}
        for package in previous.packages if previous else ():
            self.known[package.pin] = Release(package.name, package.version, (package.file,))
        for pin, release in checked.items():
            self.known.setdefault(pin, release)
        self.releases: dict[Pin, Release] = {}
        self.chosen: dict[Pin, DistFile] = {}

    def choose(self, pin: Pin, release: Release) -> None:
        self.releases[pin] = release
        self.chosen[pin] = select_file(release, self.target, self.priorities)
        self.on_chosen(self.chosen[pin])

    def offer(self, closure: Sequence[Locked]) -> None:
        """A freshly resolved closure: choose what can be chosen without asking PyPI."""
        for entry in closure:
            if entry.pin in self.chosen:
                continue
            if entry.pin in self.known:
                self.choose(entry.pin, self.known[entry.pin])
            elif entry.files:
                self.choose(entry.pin, Release(entry.pin.name, entry.pin.version, entry.files))

    def complete(self, pins: Sequence[Pin], source: PackageSource, options: BuildOptions) -> None:
        """Choose every pin not chosen yet, reading PyPI's metadata where nothing else knows it."""
        todo = []
        for pin in pins:
            if pin in self.chosen:
                continue
            if pin in self.known:
                self.choose(pin, self.known[pin])
            else:
                todo.append(pin)
        if todo:
            options.echo(f"reading PyPI metadata for {len(todo)} of {len(pins)} packages")
        with ThreadPoolExecutor(max_workers=options.jobs) as pool:
            futures = {pool.submit(source.release, p.name, p.version): p for p in todo}
            try:
                for future in as_completed(futures):
                    self.choose(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def _write_pages(staging: Path, packages: Sequence[IndexedPackage], manifest: Manifest) -> None:
    for relative, text in render_pages(packages).items():
        path = staging / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (staging / MANIFEST_NAME).write_text(manifest_to_json(manifest), encoding="utf-8")
    # mkdtemp makes 0700; a static host (or a container user) must be able to read the index.
    for path in [staging, *staging.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


# --- the vetted allowlist from config ---------------------------------------------------------


def image_target(images: Iterable[Any]) -> Target:
    """The one (python, platform) of the rendered images: what pods run."""
    targets = {Target(i.python, i.platform) for i in images if i.sets}
    if len(targets) != 1:
        described = ", ".join(sorted(t.describe() for t in targets)) or "none"
        raise PackageIndexError(
            f"the index serves one Python and platform; rendered images use: {described}",
            "give every rendered image the same python and platform in imagebot.toml",
        )
    return targets.pop()


def load_roots(requirements_dir: Path) -> list[Root]:
    """Every vetted Python requirement: all sets plus requirements/index-only.toml."""
    from imagebot.requirements import load_sets, parse_set

    sets = load_sets(requirements_dir)
    index_only_path = requirements_dir / f"{INDEX_ONLY_SET}.toml"
    index_only: Sequence[Any] = ()
    if index_only_path.is_file():
        parsed, problems = parse_set(index_only_path, index_only_path.read_text(encoding="utf-8"))
        if problems or parsed is None:
            raise RequirementsError(problems, str(index_only_path), "fix the entries above")
        if parsed.r or parsed.apt:
            raise PackageIndexError(
                f"{index_only_path}: only [python] packages can be vetted for self-install",
                "move R and apt packages to a requirement set",
            )
        index_only = parsed.python
    return collect_roots(
        [(s.name, s.python) for s in sets], index_only, index_only_path=str(index_only_path)
    )


def load_locks(requirements_dir: Path, set_names: Iterable[str]) -> dict[str, list[Pin]]:
    """Pins of the image's layered locks (`requirements/<set>.lock`, written by `imagebot
    lock`), so that every version the image installs can also be installed from the index."""
    locks: dict[str, list[Pin]] = {}
    for name in set_names:
        path = requirements_dir / f"{name}.lock"
        if path.is_file():
            locks[name] = parse_compiled(path.read_text(encoding="utf-8"))
    return locks


def load_manifest(location: str) -> Manifest:
    """The manifest of an index: a local OUT directory, a manifest file, or the index URL."""
    if "://" in location and not location.startswith("file://"):
        url = manifest_url(location)
        try:
            text = _retrying(lambda: _fetch_text(url))
        except (urllib.error.HTTPError, _Transient) as exc:
            raise PackageIndexError(
                f"cannot read the index manifest {url}: {exc}",
                "check the index URL (imagebot.toml [index] url) or pass --index OUT_DIR",
            ) from None
        return manifest_from_json(text, url)
    path = Path(location.removeprefix("file://"))
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        raise PackageIndexError(
            f"{path}: no index manifest there",
            "build the index first (imagebot index build OUT) or pass --index with its location",
        ) from None
    return manifest_from_json(text, str(path))


def manifest_url(index_url: str) -> str:
    """The manifest sits at the index root, beside simple/: <root>/imagebot-index.json."""
    base = index_url.rstrip("/")
    if base.endswith(f"/{SIMPLE_DIR}"):
        base = base[: -len(SIMPLE_DIR) - 1]
    return f"{base}/{MANIFEST_NAME}"


def _fetch_text(url: str) -> str:
    with _open(url) as response:
        data: bytes = response.read()
    return data.decode("utf-8")


# --- serving ----------------------------------------------------------------------------------


def make_server(out: Path, host: str = "127.0.0.1", port: int = 5556, quiet: bool = False) -> Any:
    """A threaded static server for OUT that also answers PEP 691 JSON when asked for it.

    A bucket serves index.html only; this server additionally picks index.json for clients
    whose Accept header asks for application/vnd.pypi.simple.v1+json (pip and uv do).
    """
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class IndexRequestHandler(SimpleHTTPRequestHandler):
        negotiated_json = False

        def send_head(self) -> Any:
            route = self.path.split("?", 1)[0].split("#", 1)[0]
            local = Path(self.translate_path(route))
            accept = self.headers.get("Accept", "")
            if (
                route.endswith("/")
                and JSON_CONTENT_TYPE in accept
                and (local / "index.json").is_file()
            ):
                self.path = route + "index.json"
                self.negotiated_json = True
            return super().send_head()

        def guess_type(self, path: Any) -> str:
            if self.negotiated_json:
                return JSON_CONTENT_TYPE
            return super().guess_type(path)

        def end_headers(self) -> None:
            self.send_header("Vary", "Accept")
            super().end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            if not quiet:
                super().log_message(format, *args)

    if not (out / SIMPLE_DIR).is_dir():
        raise PackageIndexError(
            f"{out} has no {SIMPLE_DIR}/ directory, so it is not a built index",
            "build it first: imagebot index build OUT",
        )
    handler = partial(IndexRequestHandler, directory=str(out))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise PackageIndexError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "choose another --port, or stop what is using it",
        ) from None
