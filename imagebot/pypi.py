"""ADAPTER: the upstream package index (PyPI or a mirror) over HTTP.

`PyPI` reads one PEP 691 JSON project document per package (`/simple/<name>/`, the API pip and
uv use, so mirrors and proxies serve it too) and downloads files, verifying each against the
sha256 the index published. Requests go through `imagebot.http`; transient faults (5xx, 429,
connection reset, timeout) are retried by the one retry policy, 4 tries with exponential
backoff; a 404 fails at once as "package does not exist".

Parsing of the project documents is pure and sits at the bottom.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from imagebot import http
from imagebot.errors import PackageIndexError, TransientError
from imagebot.index_pages import (
    JSON_CONTENT_TYPE,
    DistFile,
    Release,
    same_version,
    sorted_versions,
)
from imagebot.requirements import normalize
from imagebot.retry import retry_transient

T = TypeVar("T")

PYPI_SIMPLE_URL = "https://pypi.org/simple"
ATTEMPTS = 4
METADATA_TIMEOUT = 60.0
DOWNLOAD_TIMEOUT = 300.0


def _retrying(action: Callable[[], T], what: str, backoff: float = 0.5) -> T:
    """The retry policy as the index uses it: 4 tries, waiting backoff, 2*backoff, 4*backoff."""
    return retry_transient(action, what=what, attempts=ATTEMPTS, backoff=backoff)


def _get(url: str, accept: str = "*/*") -> http.Response:
    return http.send(
        "GET", url, failure=PackageIndexError, headers={"Accept": accept}, timeout=METADATA_TIMEOUT
    )


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
            recent = sorted_versions(versions_in_simple_json(project))[-5:]
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
            response = _retrying(lambda: _get(url, JSON_CONTENT_TYPE), url, self.backoff)
        except TransientError as exc:
            raise PackageIndexError(
                f"{name}: the package index {http.display_url(self.simple_url)} is unreachable "
                f"({exc.message})",
                "check the network (or IMAGEBOT_UPSTREAM_INDEX) and retry; OUT was not changed",
            ) from None
        if response.status == 404:
            raise PackageIndexError(
                f"package {name!r} does not exist on PyPI",
                "check the spelling of the name (https://pypi.org/project/<name>/)",
            )
        if response.status != 200:
            raise PackageIndexError(
                f"{name}: PyPI answered HTTP {response.status} for {http.display_url(url)}",
                "retry later",
            )
        try:
            raw = json.loads(response.body)
        except ValueError:
            raise PackageIndexError(
                f"{name}: the package index sent invalid JSON for {http.display_url(url)}",
                "check IMAGEBOT_UPSTREAM_INDEX: it must serve the PEP 691 JSON simple API",
            ) from None
        if not isinstance(raw, dict):
            raise PackageIndexError(
                f"{name}: the package index sent no project document for {http.display_url(url)}",
                "check IMAGEBOT_UPSTREAM_INDEX: it must serve the PEP 691 JSON simple API",
            )
        return raw

    def download(self, dist: DistFile, dest: Path) -> None:
        def fetch() -> None:
            digest = hashlib.sha256()
            partial = dest.with_name(dest.name + ".part")
            with http.stream(
                "GET", dist.url, failure=PackageIndexError, timeout=DOWNLOAD_TIMEOUT
            ) as response:
                if response.status != 200:
                    raise PackageIndexError(
                        f"{dist.filename}: download failed (HTTP {response.status} from "
                        f"{http.display_url(response.url)})",
                        "check the network and retry",
                    )
                with partial.open("wb") as out:
                    for chunk in response.chunks():
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
            _retrying(fetch, dist.filename, self.backoff)
        except TransientError as exc:
            raise PackageIndexError(
                f"{dist.filename}: download failed ({exc.message})", "check the network and retry"
            ) from None


def fetch_text(url: str, what: str, hint: str, backoff: float = 0.5) -> str:
    """GET url as UTF-8 text, retrying transient faults; any failure names what was read."""
    shown = http.display_url(url)
    try:
        response = _retrying(lambda: _get(url), shown, backoff)
    except TransientError as exc:
        raise PackageIndexError(f"cannot read {what} {shown}: {exc.message}", hint) from None
    except PackageIndexError as exc:
        raise PackageIndexError(f"cannot read {what} {shown}: {exc.message}", hint) from None
    if response.status != 200:
        raise PackageIndexError(f"cannot read {what} {shown}: HTTP {response.status}", hint)
    try:
        return response.body.decode("utf-8")
    except UnicodeDecodeError:
        raise PackageIndexError(f"cannot read {what} {shown}: it is not UTF-8 text", hint) from None


# --- PEP 691 project documents (pure) ---------------------------------------------------------


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
