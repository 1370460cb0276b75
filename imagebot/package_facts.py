"""ADAPTER: facts about Python package versions, from the upstream index's own APIs.

For each (name, version) a reviewer should look at, two documents and never a wheel:

- the project's PEP 691 JSON page (`/simple/<name>/`), whose files carry PEP 700 `upload-time`
  and `yanked`: the version's upload date, the project's first upload and whether the version
  is yanked; one request per project;
- the PEP 658/714 metadata file of one of the version's wheels (`<wheel url>.metadata`), the
  wheel's METADATA read with `email.parser`: summary, licence, home page and source URL.

Some mirrors drop the `core-metadata` key from their pages while serving the files, so a wheel
whose page does not say is tried anyway (a 404 then means there is none); a wheel whose page
says `false` is not. Metadata files are checked against the sha256 the page gives for them.
Lookups run in a thread pool; `requests` counts every HTTP request made. Every value that comes
back is untrusted: URLs that `validate.url` refuses are dropped, the rest is cleaned by the
renderers in `imagebot.review_render`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from imagebot.errors import ImagebotError, PackageIndexError, TransientError
from imagebot.review import PackageFacts

PYPI_SIMPLE_URL = "https://pypi.org/simple"
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
WORKERS = 16
_SOURCE_LABEL = re.compile(r"source|repository|code|github|gitlab|bitbucket", re.IGNORECASE)
_CODE_HOST = re.compile(
    r"https://(github\.com|gitlab\.com|bitbucket\.org|codeberg\.org)/[^/]+/[^/]+"
)
_HOME_LABEL = re.compile(r"home\s*-?\s*page|homepage", re.IGNORECASE)

Fetch = Callable[[str, str], "tuple[int, bytes]"]
"""GET url with an Accept header -> (status, body); raises TransientError for transient faults."""


def http_fetch(url: str, accept: str) -> tuple[int, bytes]:
    """GET through the one HTTP client, retrying transient faults with the one policy."""
    from imagebot import http
    from imagebot.retry import retry_transient

    def once() -> tuple[int, bytes]:
        response = http.send("GET", url, failure=PackageIndexError, headers={"Accept": accept})
        return response.status, response.body

    return retry_transient(once, what=f"GET {http.display_url(url)}", attempts=4)


class PackageFactsSource:
    """Facts for many (name, version) pairs, in parallel, each project page fetched once."""

    def __init__(
        self,
        simple_url: str = PYPI_SIMPLE_URL,
        fetch: Fetch | None = None,
        workers: int = WORKERS,
    ) -> None:
        self.simple_url = simple_url.rstrip("/")
        self._fetch = fetch or http_fetch
        self.workers = workers
        self.requests = 0
        self._lock = threading.Lock()
        self._page_locks: dict[str, threading.Lock] = {}
        self._pages: dict[str, Mapping[str, Any]] = {}

    def facts(self, pins: Sequence[tuple[str, str]]) -> dict[tuple[str, str], PackageFacts]:
        if not pins:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.workers, len(pins))) as pool:
            found = list(pool.map(lambda pin: self._facts(*pin), pins))
        return {(f.name, f.version): f for f in found}

    def _get(self, url: str, accept: str = "*/*") -> tuple[int, bytes]:
        with self._lock:
            self.requests += 1
        return self._fetch(url, accept)

    def _facts(self, name: str, version: str) -> PackageFacts:
        try:
            page = self.project_page(name)
            return facts_from_page(name, version, page, self._metadata(page, version))
        except (ImagebotError, TransientError) as exc:
            message = getattr(exc, "message", str(exc))
            return PackageFacts(name, version, problem=message)

    def project_page(self, name: str) -> Mapping[str, Any]:
        """The project's PEP 691 JSON page, fetched once per project."""
        with self._lock:
            page_lock = self._page_locks.setdefault(name, threading.Lock())
        with page_lock:
            if name not in self._pages:
                url = f"{self.simple_url}/{name}/"
                status, body = self._get(url, JSON_CONTENT_TYPE)
                if status == 404:
                    raise PackageIndexError(f"{name} is not on {self.simple_url}")
                if status != 200:
                    raise PackageIndexError(f"{name}: HTTP {status} from {self.simple_url}")
                try:
                    page = json.loads(body)
                except ValueError:
                    raise PackageIndexError(f"{name}: the index's page is not JSON") from None
                if not isinstance(page, Mapping) or not isinstance(page.get("files"), list):
                    raise PackageIndexError(f"{name}: the index's page has no file list")
                self._pages[name] = page
            return self._pages[name]

    def _metadata(self, page: Mapping[str, Any], version: str) -> bytes | None:
        """The METADATA of one wheel of `version`, or None when no wheel has a metadata file."""
        for wheel in metadata_candidates(page, version):
            status, body = self._get(f"{wheel['url']}.metadata")
            if status == 404:
                continue
            if status != 200:
                raise PackageIndexError(f"{wheel['filename']}.metadata: HTTP {status}")
            expected = _metadata_sha256(wheel)
            if expected and hashlib.sha256(body).hexdigest() != expected:
                raise PackageIndexError(
                    f"{wheel['filename']}.metadata does not match the sha256 the index gives"
                )
            return body
        return None


def _version_of(filename: str) -> str | None:
    from imagebot.pypi import file_version

    return file_version(filename)


def _files_of(page: Mapping[str, Any], version: str) -> list[Mapping[str, Any]]:
    from imagebot.index_pages import same_version

    return [
        f
        for f in page.get("files", [])
        if isinstance(f, Mapping)
        and isinstance(f.get("filename"), str)
        and same_version(_version_of(f["filename"]) or "", version)
    ]


def _metadata_flag(wheel: Mapping[str, Any]) -> Any:
    for key in ("core-metadata", "data-dist-info-metadata"):
        if key in wheel:
            return wheel[key]
    return None  # the page does not say


def _metadata_sha256(wheel: Mapping[str, Any]) -> str:
    flag = _metadata_flag(wheel)
    if isinstance(flag, Mapping) and isinstance(flag.get("sha256"), str):
        return str(flag["sha256"])
    return ""


def metadata_candidates(page: Mapping[str, Any], version: str) -> list[Mapping[str, Any]]:
    """PURE: the version's wheels that may have a metadata file, pure-Python wheels first;
    at most two are tried."""
    wheels = [
        f
        for f in _files_of(page, version)
        if f["filename"].endswith(".whl")
        and isinstance(f.get("url"), str)
        and _metadata_flag(f) is not False
    ]
    wheels.sort(key=lambda f: (not f["filename"].endswith("-none-any.whl"), f["filename"]))
    return wheels[:2]


def facts_from_page(
    name: str, version: str, page: Mapping[str, Any], metadata: bytes | None
) -> PackageFacts:
    """PURE: the facts from a project page and (when there is one) a METADATA file."""
    files = _files_of(page, version)
    if not files:
        raise PackageIndexError(f"{name} has no files for version {version} on the index")
    times = [t for f in page.get("files", []) if isinstance(t := f.get("upload-time"), str)]
    mine = [t for f in files if isinstance(t := f.get("upload-time"), str)]
    yanked = all(f.get("yanked") for f in files)
    reasons = sorted({str(f["yanked"]) for f in files if isinstance(f.get("yanked"), str)})
    fields = parse_metadata(metadata) if metadata is not None else {}
    return PackageFacts(
        name=name,
        version=version,
        summary=fields.get("summary", ""),
        license=fields.get("license", ""),
        project_url=fields.get("project_url", ""),
        source_url=fields.get("source_url", ""),
        uploaded=min(mine)[:10] if mine else "",
        first_release=min(times)[:10] if times else "",
        yanked=yanked,
        yanked_reason="; ".join(r for r in reasons if r) if yanked else "",
        metadata=metadata is not None,
    )


def parse_metadata(data: bytes) -> dict[str, str]:
    """PURE: summary, licence, project and source URLs from core metadata (RFC 822 style)."""
    from email.parser import BytesHeaderParser
    from email.policy import compat32

    message = BytesHeaderParser(policy=compat32).parsebytes(data)

    def header(key: str) -> str:
        value = message.get(key)
        return str(value).strip() if value is not None else ""

    labelled: list[tuple[str, str]] = []
    for raw in message.get_all("Project-URL") or []:
        label, _, url = str(raw).partition(",")
        labelled.append((label.strip(), url.strip()))
    home = header("Home-page") or next(
        (u for label, u in labelled if _HOME_LABEL.search(label)), ""
    )
    source = next((u for label, u in labelled if _SOURCE_LABEL.search(label)), "")
    if not source and _CODE_HOST.match(home):
        source = home
    return {
        "summary": header("Summary"),
        "license": _licence(header("License-Expression"), header("License"), message),
        "project_url": _safe_url(home),
        "source_url": _safe_url(source),
    }


def _licence(expression: str, text: str, message: Any) -> str:
    if expression:
        return expression
    classifiers = [
        str(c).split("::")[-1].strip()
        for c in message.get_all("Classifier") or []
        if str(c).startswith("License ::") and str(c).count("::") >= 2
    ]
    first_line = text.splitlines()[0].strip() if text.strip() else ""
    if first_line and len(first_line) <= 80 and len(text.splitlines()) == 1:
        return first_line
    if classifiers:
        return ", ".join(classifiers)
    return f"{first_line[:77]}..." if first_line else ""


def _safe_url(url: str) -> str:
    from imagebot.validate import InvalidValue
    from imagebot.validate import url as valid_url

    if not url:
        return ""
    try:
        return valid_url(url)
    except InvalidValue:
        return ""
