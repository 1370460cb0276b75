"""ADAPTER: the upstream package index (PyPI or a mirror) over HTTP.

`PyPI` reads one PEP 691 JSON project document per package (`/simple/<name>/`, the API pip and
uv use, so mirrors and proxies serve it too) and downloads files, verifying each against the
sha256 the index published. Transient faults (5xx, 429, connection reset, timeout) are retried
with exponential backoff; a 404 fails at once as "package does not exist".

Parsing of the project documents is pure and sits at the bottom. Only the standard library is
imported at module level; `tenacity` is imported where it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from imagebot.errors import PackageIndexError
from imagebot.index_pages import (
    JSON_CONTENT_TYPE,
    DistFile,
    Release,
    same_version,
    sorted_versions,
)
from imagebot.requirements import normalize

PYPI_SIMPLE_URL = "https://pypi.org/simple"


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
            raw: Mapping[str, Any] = _retrying(
                lambda: json.loads(_read(url, JSON_CONTENT_TYPE)), self.backoff
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


def _read(url: str, accept: str = "*/*") -> bytes:
    with _open(url, accept=accept) as response:
        data: bytes = response.read()
    return data


def fetch_text(url: str, what: str, hint: str, backoff: float = 0.5) -> str:
    """GET url as UTF-8 text, retrying transient faults; any failure names what was read."""
    try:
        data: bytes = _retrying(lambda: _read(url), backoff)
    except (urllib.error.HTTPError, _Transient) as exc:
        raise PackageIndexError(f"cannot read {what} {url}: {exc}", hint) from None
    return data.decode("utf-8")


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
