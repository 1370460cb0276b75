"""ADAPTER: where OSV advisory records come from: a directory of records, or the OSV API.

- `DirectorySource`: a checkout of an OSV database laid out as `<root>/vulns/<project>/<ID>.yaml`
  (the Python Packaging Advisory Database, the R Consortium's R advisory database) or
  `<root>/<project>/<ID>.json`, or several merged into one tree. Only the directories of the
  packages being audited are read, matched by PEP 503 normalised name; each record says which
  ecosystem and package it affects, and `imagebot.advisories` matches R names exactly.
- `OsvApi`: `POST {base}/v1/querybatch` in batches of at most 1000 queries, following each
  query's `next_page_token`; the answer holds ids only, so each new id is then read with
  `GET {base}/v1/vulns/{id}`, in parallel, once per run. Transient faults are retried
  (`imagebot.retry`), through the one HTTP client (`imagebot.http`).

Both are asked about PyPI and CRAN packages (R's OSV ecosystem) and return the candidate
records per package; `imagebot.advisories` decides which versions they affect, so the two
sources give the same findings for the same records.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from imagebot.advisories import (
    CRAN,
    PYPI,
    Advisory,
    Package,
    RecordError,
    advisory_from_mapping,
    advisory_id,
    parse_record,
)
from imagebot.errors import AdvisorySourceError, TransientError
from imagebot.requirements import normalize
from imagebot.validate import InvalidValue

OSV_API_URL = "https://api.osv.dev"
PYPA_DATABASE = "https://github.com/pypa/advisory-database"
RECORD_SUFFIXES = (".yaml", ".yml", ".json")
MAX_RECORD_BYTES = 4 << 20  # the largest PyPI records (long `versions` lists) are ~100 kB
AUDITED_ECOSYSTEMS = (PYPI, CRAN)  # what either source is asked about
MAX_BATCH = 1000  # the OSV API's limit on queries per querybatch
MAX_PAGES = 100  # per query; a server that keeps sending tokens is broken, not busy


@dataclass(frozen=True)
class Records:
    """What a source answered: candidate records per package key, and what it cost."""

    by_package: Mapping[tuple[str, str], tuple[Advisory, ...]]
    requests: int = 0
    files_read: int = 0


class AdvisorySource(Protocol):
    @property
    def description(self) -> str: ...

    def records(self, packages: Sequence[Package]) -> Records: ...


def source_for(location: str, base: Path, **api_options: Any) -> AdvisorySource:
    """The source `location` names: an http(s) URL of an OSV API, else a directory.

    A relative directory is taken relative to `base` (the directory of imagebot.toml).
    """
    if location.startswith(("https://", "http://")):
        from imagebot import validate
        from imagebot.http import display_url

        try:
            url = validate.url(location)
        except InvalidValue as exc:
            shown = exc.message.replace(location, display_url(location))  # no password shown
            raise AdvisorySourceError(f"advisory source: {shown}", exc.hint) from None
        return OsvApi(url, **api_options)
    if "://" in location:
        raise AdvisorySourceError(
            f"advisory source {location!r} is neither an http(s) URL nor a directory",
            f"use {OSV_API_URL} or the path of a checkout of an OSV database",
        )
    return DirectorySource(base / location)


# --- a directory of records -------------------------------------------------------------------


class DirectorySource:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def description(self) -> str:
        return os.path.normpath(self.root)

    def records(self, packages: Sequence[Package]) -> Records:
        projects = self._project_dirs()
        files_read = 0
        by_package: dict[tuple[str, str], tuple[Advisory, ...]] = {}
        for key in sorted({p.key for p in packages if p.ecosystem in AUDITED_ECOSYSTEMS}):
            found: list[Advisory] = []
            for directory in projects.get(normalize(key[1]), ()):
                for path in sorted(directory.iterdir()):
                    if path.suffix in RECORD_SUFFIXES and path.is_file():
                        found.append(self._read(path))
                        files_read += 1
            by_package[key] = tuple(found)
        return Records(by_package, files_read=files_read)

    def _project_dirs(self) -> dict[str, list[Path]]:
        """Project directories by normalised name (`jw.util` serves jw-util); one listing."""
        base = self.root / "vulns" if (self.root / "vulns").is_dir() else self.root
        try:
            entries = list(os.scandir(base))
        except OSError as exc:
            raise AdvisorySourceError(
                f"advisory directory {self.description}: {exc.strerror or exc}",
                f"check out an OSV database there (git clone --depth 1 {PYPA_DATABASE} "
                f"{self.description}), or use the OSV API: --source {OSV_API_URL}",
            ) from None
        projects: dict[str, list[Path]] = {}
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                projects.setdefault(normalize(entry.name), []).append(Path(entry.path))
        if not projects:
            raise AdvisorySourceError(
                f"advisory directory {self.root} holds no project directories, "
                "so it is not an OSV database (an empty source would pass every package)",
                "point it at a checkout of an OSV database: vulns/<project>/<ID>.yaml",
            )
        return projects

    def _read(self, path: Path) -> Advisory:
        try:
            if path.stat().st_size > MAX_RECORD_BYTES:
                raise RecordError(f"larger than {MAX_RECORD_BYTES >> 20} MB")
            return parse_record(path.read_text(encoding="utf-8"), path.suffix)
        except (RecordError, OSError, UnicodeDecodeError) as exc:
            raise AdvisorySourceError(
                f"{path}: not a readable OSV record ({exc})",
                "fix or remove the file, or update the checkout of the advisory database",
            ) from None


# --- the OSV API ------------------------------------------------------------------------------


class OsvApi:
    """The OSV API (https://google.github.io/osv.dev/api/) or a server that answers like it."""

    def __init__(
        self,
        base_url: str = OSV_API_URL,
        *,
        batch_size: int = MAX_BATCH,
        jobs: int = 8,
        attempts: int = 4,
        backoff: float = 0.5,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.jobs = jobs
        self.attempts = attempts
        self.backoff = backoff
        self.on_retry = on_retry
        self._lock = threading.Lock()
        self._requests = 0
        self._cache: dict[str, Advisory] = {}

    @property
    def description(self) -> str:
        from imagebot.http import display_url

        return display_url(self.base_url)

    def records(self, packages: Sequence[Package]) -> Records:
        before = self._requests
        audited = [p for p in packages if p.ecosystem in AUDITED_ECOSYSTEMS]
        ids = self._query(audited)
        self._fetch(sorted({i for found in ids.values() for i in found} - self._cache.keys()))
        by_package: dict[tuple[str, str], dict[str, Advisory]] = {}
        for index, package in enumerate(audited):
            records = by_package.setdefault(package.key, {})
            records.update((i, self._cache[i]) for i in sorted(ids[index]))
        return Records(
            {key: tuple(found.values()) for key, found in by_package.items()},
            requests=self._requests - before,
        )

    def _query(self, packages: Sequence[Package]) -> dict[int, set[str]]:
        """The ids each package's version matches, by position in `packages`."""
        found: dict[int, set[str]] = {i: set() for i in range(len(packages))}
        pending: list[tuple[int, str]] = [(i, "") for i in range(len(packages))]
        pages = 0
        while pending:
            pages += 1
            if pages > MAX_PAGES * max(1, -(-len(packages) // self.batch_size)):
                raise AdvisorySourceError(
                    f"{self.description}: querybatch kept sending next_page_token",
                    "the advisory API is misbehaving; retry later or use a directory source",
                )
            batch, pending = pending[: self.batch_size], pending[self.batch_size :]
            queries = [_query_json(packages[i], token) for i, token in batch]
            answer = self._post("/v1/querybatch", {"queries": queries})
            results = answer.get("results") if isinstance(answer, Mapping) else None
            if not isinstance(results, list) or len(results) != len(batch):
                raise self._malformed("querybatch", "`results` does not match the queries")
            for (index, _), result in zip(batch, results, strict=True):
                if not isinstance(result, Mapping):
                    raise self._malformed("querybatch", "a result is not an object")
                for vuln in result.get("vulns") or []:
                    try:
                        found[index].add(advisory_id(vuln.get("id")))
                    except (InvalidValue, AttributeError):
                        raise self._malformed(
                            "querybatch", "a vulnerability id is not valid"
                        ) from None
                token = result.get("next_page_token")
                if token:
                    pending.append((index, str(token)))
        return found

    def _fetch(self, ids: Iterable[str]) -> None:
        wanted = list(ids)
        if not wanted:
            return
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            for ident, advisory in zip(wanted, pool.map(self._vuln, wanted), strict=True):
                self._cache[ident] = advisory
        finally:
            # On a failure or Ctrl-C, requests not started yet are dropped, not waited for.
            pool.shutdown(wait=True, cancel_futures=True)

    def _vuln(self, ident: str) -> Advisory:
        raw = self._request("GET", f"/v1/vulns/{ident}", None)
        try:
            advisory = advisory_from_mapping(raw)
        except RecordError as exc:
            raise self._malformed(f"vulns/{ident}", str(exc)) from None
        if advisory.id != ident and ident not in advisory.aliases:
            raise self._malformed(f"vulns/{ident}", f"the record's id is {advisory.id}")
        return advisory

    def _post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, json.dumps(body).encode())

    def _request(self, method: str, path: str, data: bytes | None) -> Any:
        from imagebot import http
        from imagebot.retry import retry_transient

        url = f"{self.base_url}{path}"

        def once() -> http.Response:
            with self._lock:
                self._requests += 1
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            return http.send(method, url, failure=AdvisorySourceError, headers=headers, data=data)

        what = f"{method} {http.display_url(url)}"
        try:
            response = retry_transient(
                once,
                what=what,
                attempts=self.attempts,
                backoff=self.backoff,
                on_retry=self.on_retry,
            )
        except TransientError as exc:
            raise AdvisorySourceError(
                f"{what}: {exc.message} (after {self.attempts} attempts)",
                "the advisory API is unreachable; retry later, or set [advisories] source to "
                "a directory checkout of the database",
            ) from None
        if response.status != 200:
            raise AdvisorySourceError(
                f"{what}: HTTP {response.status}",
                "check [advisories] source in imagebot.toml: it must be an OSV API base URL, "
                f"e.g. {OSV_API_URL}",
            )
        try:
            return json.loads(response.body)
        except (ValueError, RecursionError):
            raise self._malformed(path.lstrip("/"), "the answer is not JSON") from None

    def _malformed(self, what: str, why: str) -> AdvisorySourceError:
        return AdvisorySourceError(
            f"{self.description}: unexpected answer to {what}: {why}",
            "is [advisories] source an OSV API? e.g. " + OSV_API_URL,
        )


def _query_json(package: Package, page_token: str) -> dict[str, Any]:
    query: dict[str, Any] = {
        "package": {"ecosystem": package.ecosystem, "name": package.name},
        "version": package.version,
    }
    if page_token:
        query["page_token"] = page_token
    return query
