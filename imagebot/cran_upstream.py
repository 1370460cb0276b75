"""ADAPTER: CRAN-like upstreams over HTTP, and the vetted repository written from them.

`CranUpstream` reads one upstream's `src/contrib/PACKAGES.gz` (or `PACKAGES`) and downloads
tarballs, from `src/contrib/` or, for an older version, `src/contrib/Archive/<pkg>/`, checking
each against the MD5sum (and SHA256 where given) of the PACKAGES stanza that vouches for it.
Requests go through `imagebot.http` with the one retry policy.

Production uses dated Posit Package Manager snapshots: `[index] cran_upstream` (the current
versions) and optional `cran_snapshots` (older dated snapshots, for older vetted versions,
each verified against its own snapshot's PACKAGES). A `__linux__/<distro>/` snapshot serves
binaries built for that distribution when the request's User-Agent names the R version and
platform, as R's own does; `r_user_agent` makes the build ask as the image's R would.

`resolve_cran_lock` writes the text of `requirements/cran.lock` (`imagebot lock`): every
vetted R entry's closure, from the upstreams' PACKAGES. `build_repository` writes OUT/cran into
the staging directory of `imagebot index build` from that lock: each locked version, its file
verified against both the lock and the upstream's PACKAGES; a file kept from the previous OUT
is reused only when it matches them.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imagebot import http
from imagebot.cran import (
    CONTRIB,
    Available,
    RIndexed,
    RManifest,
    RPackage,
    RRoot,
    archive_rds,
    archived_files,
    closure,
    packages_from_dcf,
    packages_text,
    placed,
)
from imagebot.cranlock import CranLock, cran_lock_inputs, format_cran_lock, locked_entries
from imagebot.errors import PackageIndexError
from imagebot.retry import retry_transient

ATTEMPTS = 4
TIMEOUT = 300.0
# What R 4.2 on x86_64 Debian sends; Posit Package Manager picks binaries by it.
DEFAULT_R_USER_AGENT = "R (4.2.2 x86_64-pc-linux-gnu x86_64 linux-gnu)"


class CranUpstream:
    def __init__(self, url: str, user_agent: str = DEFAULT_R_USER_AGENT, backoff: float = 0.5):
        self.url = url.rstrip("/")
        self.user_agent = user_agent
        self.backoff = backoff
        self.requests = 0
        self._lock = threading.Lock()

    def _get(self, url: str) -> http.Response:
        with self._lock:
            self.requests += 1
        return http.send(
            "GET",
            url,
            failure=PackageIndexError,
            headers={"User-Agent": self.user_agent},
            timeout=TIMEOUT,
        )

    def packages(self) -> list[RPackage]:
        """Every package the upstream's PACKAGES lists (PACKAGES.gz first, as R reads it)."""
        where = f"{self.url}/{CONTRIB}/PACKAGES"
        for name in ("PACKAGES.gz", "PACKAGES"):
            url = f"{self.url}/{CONTRIB}/{name}"
            got = retry_transient(
                functools.partial(self._get, url),
                what=f"reading {url}",
                attempts=ATTEMPTS,
                backoff=self.backoff,
            )
            if got.status == 404:
                continue
            if got.status != 200:
                raise PackageIndexError(
                    f"{http.display_url(url)} answered HTTP {got.status}",
                    "check [index] cran_upstream in imagebot.toml",
                )
            try:
                body = gzip.decompress(got.body) if name.endswith(".gz") else got.body
                text = body.decode("utf-8")
            except (OSError, EOFError, UnicodeDecodeError):
                raise PackageIndexError(
                    f"{http.display_url(url)} is not a UTF-8 PACKAGES file (gzip'd for .gz)",
                    "check [index] cran_upstream in imagebot.toml",
                ) from None
            return packages_from_dcf(text, where, self.url)
        raise PackageIndexError(
            f"{self.url} has no {CONTRIB}/PACKAGES: it is not a CRAN-like repository",
            "set [index] cran_upstream to a CRAN-like repository, e.g. "
            "https://packagemanager.posit.co/cran/2025-10-01",
        )

    def download(self, package: RPackage, dest: Path) -> tuple[str, int]:
        """Fetch the package's tarball into dest, verified; returns (sha256, size)."""
        urls = [
            f"{self.url}/{CONTRIB}/{package.filename}",
            f"{self.url}/{CONTRIB}/Archive/{package.name}/{package.filename}",
        ]

        def fetch() -> tuple[str, int] | None:
            for url in urls:
                with http.stream(
                    "GET",
                    url,
                    failure=PackageIndexError,
                    headers={"User-Agent": self.user_agent},
                    timeout=TIMEOUT,
                ) as got:
                    with self._lock:
                        self.requests += 1
                    if got.status == 404:
                        continue
                    if got.status != 200:
                        raise PackageIndexError(
                            f"{http.display_url(url)} answered HTTP {got.status}",
                            "check [index] cran_upstream in imagebot.toml",
                        )
                    with dest.open("wb") as handle:
                        for chunk in got.chunks():
                            handle.write(chunk)
                return verify(package, dest)
            return None

        found = retry_transient(
            fetch, what=f"downloading {package.filename}", attempts=ATTEMPTS, backoff=self.backoff
        )
        if found is None:
            raise PackageIndexError(
                f"{package.filename} is listed in {self.url}'s PACKAGES but not served",
                "the upstream is inconsistent; try again later or use another snapshot",
            )
        return found


def checksums(path: Path) -> tuple[str, str, int]:
    """(md5, sha256, size) of a file."""
    md5, sha256, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            md5.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return md5.hexdigest(), sha256.hexdigest(), size


def verify(package: RPackage, path: Path) -> tuple[str, int]:
    """(sha256, size) when the file matches the upstream's checksums; else remove it and raise."""
    md5, sha256, size = checksums(path)
    if md5 != package.md5 or (package.sha256 is not None and sha256 != package.sha256):
        path.unlink(missing_ok=True)
        raise PackageIndexError(
            f"{package.filename} from {package.repository} does not match the MD5sum of the "
            f"upstream's PACKAGES ({package.md5}; the file has {md5})",
            "the file or the upstream was tampered with or is corrupt; nothing was published",
        )
    return sha256, size


def _kept(old: Path, package: RPackage) -> tuple[str, int] | None:
    """The previous build's copy, when it still matches the upstream's checksums."""
    if not old.is_file() or old.is_symlink():
        return None
    md5, sha256, size = checksums(old)
    if md5 != package.md5 or (package.sha256 is not None and sha256 != package.sha256):
        return None
    return sha256, size


@dataclass(frozen=True)
class RepositoryResult:
    manifest: RManifest
    downloaded: int
    reused: int
    bytes_downloaded: int
    requests: int


def fetch_listed(upstreams: Sequence[CranUpstream], jobs: int = 8) -> list[list[RPackage]]:
    """Each upstream's PACKAGES, read in parallel, in the upstreams' order."""
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(upstreams)))) as pool:
        return list(pool.map(lambda u: u.packages(), upstreams))


def resolve_cran_lock(
    roots: Sequence[RRoot], upstreams: Sequence[CranUpstream], user_agent: str, jobs: int = 8
) -> str:
    """The text of requirements/cran.lock: each root's closure over the upstreams' PACKAGES."""
    closures = closure(roots, Available.from_upstreams(fetch_listed(upstreams, jobs)))
    inputs = cran_lock_inputs(roots, [u.url for u in upstreams], user_agent)
    return format_cran_lock(roots, closures, inputs)


def build_repository(
    staging: Path,
    previous: Path,
    roots: Sequence[RRoot],
    upstreams: Sequence[CranUpstream],
    jobs: int = 8,
    *,
    lock: CranLock,
) -> RepositoryResult:
    """Write the vetted repository into `staging` (OUT/cran of the staging directory): exactly
    the packages of `lock` (requirements/cran.lock), each as its upstream lists it."""
    listed = fetch_listed(upstreams, jobs)
    by_url = {u.url: u for u in upstreams}
    entries = locked_entries(
        lock, {u.url: found for u, found in zip(upstreams, listed, strict=True)}
    )
    rows = placed(entries)
    counts = {"downloaded": 0, "reused": 0, "bytes": 0}
    counting = threading.Lock()

    def stage(row: tuple[RPackage, str, bool, tuple[str, ...], tuple[str, ...]]) -> RIndexed:
        package, path, current, vetted_in, dependency_of = row
        dest = staging / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        kept = _kept(previous / path, package)
        if kept is not None:
            _link_or_copy(previous / path, dest)
            sha256, size = kept
            key = "reused"
        else:
            sha256, size = by_url[package.repository].download(package, dest)
            key = "downloaded"
        with counting:
            counts[key] += 1
            counts["bytes"] += size if key == "downloaded" else 0
        return RIndexed(package, path, sha256, size, vetted_in, dependency_of, current)

    staging.mkdir(parents=True, exist_ok=True)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        indexed = list(pool.map(stage, rows))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    _write_package_lists(staging / CONTRIB, indexed)
    manifest = RManifest(tuple(roots), tuple(indexed), tuple(u.url for u in upstreams))
    return RepositoryResult(
        manifest,
        counts["downloaded"],
        counts["reused"],
        counts["bytes"],
        sum(u.requests for u in upstreams),
    )


def _write_package_lists(contrib: Path, indexed: Sequence[RIndexed]) -> None:
    """The repository's PACKAGES, PACKAGES.gz and, for older versions, Meta/archive.rds."""
    text = packages_text(indexed)
    contrib.mkdir(parents=True, exist_ok=True)
    (contrib / "PACKAGES").write_text(text, encoding="utf-8")
    (contrib / "PACKAGES.gz").write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    archived = archived_files(indexed)
    if archived:
        (contrib / "Meta").mkdir(exist_ok=True)
        (contrib / "Meta" / "archive.rds").write_bytes(archive_rds(archived))


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)
