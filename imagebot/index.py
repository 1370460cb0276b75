"""The vetted package index: build it from the allowlist, and serve it.

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
    OUT/cran/src/contrib/PACKAGES[.gz]   the vetted CRAN-like repository, when R is vetted:
    OUT/cran/src/contrib/<pkg>_<v>.tar.gz and Archive/<pkg>/ (see imagebot.cran)

Five modules share the work:
  - `imagebot.index_pages` (pure): the model, wheel selection, pages, manifest, planning;
  - `imagebot.pypi` (adapter): the upstream simple API and verified downloads, with retries;
  - `imagebot.uv` (adapter): the one uv wrapper, isolated from the repository's configuration;
  - `imagebot.index_server`: `index serve`, a static server confined to OUT;
  - this module: `build_index` (resolve with uv, stage files, write pages, swap OUT in; returns
    a `BuildResult`), progress on stderr, and the allowlist, lock and manifest loaders.
Nothing in OUT is trusted: a file kept from an earlier build must match a hash that the image's
locks or the upstream vouch for. Only the standard library is imported at module level: `rich`
is imported where it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from imagebot.cran import CRAN_DIR, RManifest, RRoot
from imagebot.cranlock import (
    CRAN_LOCK_NAME,
    LOCK_HINT,
    CranLock,
    cran_lock_path,
    cran_lock_status,
    cran_roots,
    cran_upstream_urls,
    no_upstream_error,
)
from imagebot.errors import PackageIndexError, StaleError
from imagebot.files import Unreadable, read_text
from imagebot.index_pages import (
    FILES_DIR,
    GENERATED_BY,
    INDEX_ONLY_SET,
    MANIFEST_NAME,
    DistFile,
    IndexedPackage,
    IndexManifest,
    Locked,
    Pin,
    Release,
    Root,
    Target,
    collect_roots,
    confirmed_releases,
    index_packages,
    manifest_from_json,
    manifest_to_json,
    manifest_url,
    parse_pylock,
    pins_to_index,
    render_pages,
    reusable_manifest,
    select_file,
    target_tags,
    unresolved_roots,
)
from imagebot.lockfile import lock_path, parse_lock, split_blocks
from imagebot.uv import ResolveFailed, Resolver, requirement_line, summarize
from imagebot.validate import InvalidValue

if TYPE_CHECKING:
    from imagebot.config import Config

# --- ports and results ------------------------------------------------------------------------


class PackageSource(Protocol):
    """Where releases and files come from: PyPI in production, a fake in unit tests."""

    def release(self, name: str, version: str) -> Release: ...

    def download(self, dist: DistFile, dest: Path) -> None: ...


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
    r_packages: int = 0  # files of OUT/cran
    r_downloaded: int = 0
    r_reused: int = 0
    r_bytes_downloaded: int = 0

    def to_json(self) -> dict[str, object]:
        """The summary `index build --json` prints: every field, OUT as a string."""
        summary = asdict(self)
        summary["out"] = str(self.out)
        return summary


# --- resolving with uv -------------------------------------------------------------------------


def resolve_closure(resolver: Resolver, root: Root, target: Target) -> list[Locked]:
    """The root's closure with the target's wheels (url, sha256, size) from uv's PEP 751
    output: uv read the upstream to resolve, so the index needs no metadata request of its own.
    The resolver must write pylock.toml (`Uv(pylock=True)`)."""
    try:
        line = requirement_line(root.key, root.version, root.extras)
    except InvalidValue as exc:
        raise PackageIndexError(
            f"{exc.message} [vetted in set {root.source!r}]", exc.hint
        ) from None
    try:
        text = resolver.compile({"vetted.in": line + "\n"}, "", target.python, target.platform)
    except ResolveFailed as failed:
        raise PackageIndexError(
            f"cannot resolve {root.pin} for {target.describe()}: {summarize(failed.output)}",
            "vet versions whose dependencies resolve for the image's Python and platform",
        ) from None
    return parse_pylock(text)


# --- files: OUT, staging and the swap ----------------------------------------------------------


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


def read_previous_manifest(out: Path) -> IndexManifest | None:
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return manifest_from_json(path.read_text(encoding="utf-8"), str(path))
    except (PackageIndexError, UnicodeDecodeError):
        return None  # an index of another format only costs a full rebuild


def check_out_dir(out: Path) -> None:
    """Refuse to replace anything but a directory that is an index imagebot wrote."""
    if out.is_symlink():
        raise PackageIndexError(
            f"{out} is a symbolic link; imagebot replaces OUT as a whole and does not follow it",
            "pass the real directory, or a new one",
        )
    if out.exists() and not out.is_dir():
        raise PackageIndexError(f"{out} exists and is not a directory", "choose another OUT")
    if out.is_dir() and any(out.iterdir()) and not _written_by_imagebot(out / MANIFEST_NAME):
        raise PackageIndexError(
            f"{out} is not empty and has no {MANIFEST_NAME} that imagebot wrote, "
            "so it is not an imagebot index",
            "choose an empty or new directory; imagebot replaces OUT as a whole",
        )


def _written_by_imagebot(manifest: Path) -> bool:
    """A manifest file (not a link) that says `imagebot index build` wrote it."""
    if manifest.is_symlink() or not manifest.is_file():
        return False
    try:
        raw = json.loads(manifest.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(raw, dict) and raw.get("generated_by") == GENERATED_BY


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


# --- orchestration ----------------------------------------------------------------------------


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
        if old.is_file() and not old.is_symlink() and sha256_file(old) == dist.sha256:
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


@dataclass
class IndexBuildOptions:
    jobs: int = 8  # parallel downloads and metadata requests
    resolve_jobs: int = 4  # parallel uv runs
    refresh: bool = False  # re-resolve every root and re-read PyPI, ignoring the old manifest
    echo: Callable[[str], None] = field(default=lambda _line: None)


@dataclass(frozen=True)
class ImageLocks:
    """What the image's layer locks (`requirements/<set>.lock`) say: the pins of each set, so
    that every version the image installs is served too, and each pin's file hashes, which
    vouch for files an earlier build left in OUT."""

    pins: Mapping[str, Sequence[Pin]] = field(default_factory=dict)
    hashes: Mapping[Pin, frozenset[str]] = field(default_factory=dict)


class Laps:
    """Seconds per stage of a build, for the summary."""

    def __init__(self) -> None:
        self.started = self.clock = time.monotonic()
        self.phases: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name] = round(now - self.clock, 2)
        self.clock = now


def build_index(
    out: Path,
    roots: Sequence[Root],
    target: Target,
    source: PackageSource,
    resolver: Resolver,
    progress: Progress,
    options: IndexBuildOptions | None = None,
    locks: ImageLocks | None = None,
    cran: CranInputs | None = None,
) -> BuildResult:
    """Resolve, fetch and write the index into a staging directory, then swap it in as OUT.

    Downloads start as soon as a root's closure is resolved, while other roots still resolve.
    Any failure (or SIGINT/SIGTERM) leaves OUT as it was and removes the staging directory.
    `resolver` writes pylock.toml (`imagebot.uv.Uv(pylock=True)`).
    """
    options = options or IndexBuildOptions()
    locks = locks or ImageLocks()
    laps = Laps()
    out = out.absolute()
    check_out_dir(out)
    previous = None if options.refresh else reusable_manifest(read_previous_manifest(out), target)
    checked = _check_new_roots(roots, target, source, previous, options)
    laps.lap("check roots")
    with _staging(out) as staging:
        stager = FileStager(out, staging, source, progress, options.jobs)
        known = confirmed_releases(previous, locks.hashes)
        chooser = FileChooser(target, known, checked, stager.submit)
        closures = _resolve_and_stage(
            roots, target, resolver, previous, options, locks, source, stager, chooser, laps
        )
        packages = index_packages(roots, closures, chooser.releases, chooser.chosen, locks.pins)
        r = _build_cran(staging, out, cran, options)
        laps.lap("R repository")
        r_manifest = r.manifest if r else RManifest()
        manifest = IndexManifest(target, tuple(roots), closures, tuple(packages), r_manifest)
        _write_pages(staging, packages, manifest)
        swap_in(staging, out)
        laps.lap("pages and swap")
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
        seconds=time.monotonic() - laps.started,
        phases=laps.phases,
        r_packages=len(r.manifest.packages) if r else 0,
        r_downloaded=r.downloaded if r else 0,
        r_reused=r.reused if r else 0,
        r_bytes_downloaded=r.bytes_downloaded if r else 0,
    )


@dataclass(frozen=True)
class CranInputs:
    """The vetted R packages, the CRAN-like upstreams they come from (first: current) and
    requirements/cran.lock, whose packages the repository serves exactly."""

    roots: Sequence[RRoot]
    upstreams: Sequence[Any]  # imagebot.cran_upstream.CranUpstream, or a fake
    lock: CranLock | None = None  # fresh (checked by the caller); required when roots exist


def _build_cran(
    staging: Path, out: Path, cran: CranInputs | None, options: IndexBuildOptions
) -> Any:
    """OUT/cran in the staging directory, or None when no R package is vetted."""
    if cran is None or not cran.roots:
        return None
    if not cran.upstreams:
        raise no_upstream_error(cran.roots)
    if cran.lock is None:
        raise StaleError(f"lock files out of date: {CRAN_LOCK_NAME} (missing)", LOCK_HINT)
    from imagebot.cran_upstream import build_repository

    options.echo(
        f"R: {len(cran.roots)} vetted packages, {len(cran.lock.packages)} locked in "
        f"{CRAN_LOCK_NAME}, from {cran.upstreams[0].url}"
    )
    return build_repository(
        staging / CRAN_DIR,
        out / CRAN_DIR,
        cran.roots,
        cran.upstreams,
        options.jobs,
        lock=cran.lock,
    )


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A new directory beside OUT, removed on the way out unless it was swapped in as OUT;
    `finally` runs on SIGTERM and Ctrl-C too (both raise through the CLI's boundary)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _resolve_and_stage(
    roots: Sequence[Root],
    target: Target,
    resolver: Resolver,
    previous: IndexManifest | None,
    options: IndexBuildOptions,
    locks: ImageLocks,
    source: PackageSource,
    stager: FileStager,
    chooser: FileChooser,
    laps: Laps,
) -> dict[str, tuple[Pin, ...]]:
    """Resolve the roots and choose every file, staging each as soon as it is chosen; return
    the closures once every file is in staging."""
    try:
        closures = _resolve_closures(roots, target, resolver, previous, options, chooser.offer)
        laps.lap("resolve (downloads running)")
        chooser.complete(pins_to_index(closures, locks.pins), source, options)
    except BaseException:
        stager.abort()  # no download may still be writing when staging is removed
        raise
    stager.finish()
    laps.lap("rest of the files")
    return closures


def _check_new_roots(
    roots: Sequence[Root],
    target: Target,
    source: PackageSource,
    previous: IndexManifest | None,
    options: IndexBuildOptions,
) -> dict[Pin, Release]:
    """Vet new roots against PyPI before resolving, so that a missing package, a yanked version
    or one without a wheel for the target is reported as such, not as a resolver failure."""
    new = unresolved_roots(roots, previous)
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
    previous: IndexManifest | None,
    options: IndexBuildOptions,
    on_resolved: Callable[[Sequence[Locked]], None],
) -> dict[str, tuple[Pin, ...]]:
    """Each root's closure; each new one goes to `on_resolved` as soon as uv returns it.
    An unchanged root keeps the closure it had, so the index stays stable between builds."""
    known = dict(previous.closures) if previous else {}
    todo = unresolved_roots(roots, previous)
    if todo:
        options.echo(f"resolving {len(todo)} of {len(roots)} vetted packages with uv")
    with ThreadPoolExecutor(max_workers=options.resolve_jobs) as pool:
        futures = {pool.submit(resolve_closure, resolver, root, target): root for root in todo}
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
    the old manifest where a lock vouches for its file, PyPI's metadata read for the roots, the
    resolver's output, and last PyPI's metadata read now."""

    def __init__(
        self,
        target: Target,
        known: Mapping[Pin, Release],
        checked: Mapping[Pin, Release],
        on_chosen: Callable[[DistFile], None],
    ) -> None:
        self.target = target
        self.priorities = target_tags(target)
        self.on_chosen = on_chosen
        self.known = dict(known)
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

    def complete(
        self, pins: Sequence[Pin], source: PackageSource, options: IndexBuildOptions
    ) -> None:
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


def _write_pages(
    staging: Path, packages: Sequence[IndexedPackage], manifest: IndexManifest
) -> None:
    for relative, text in render_pages(packages).items():
        path = staging / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (staging / MANIFEST_NAME).write_text(manifest_to_json(manifest), encoding="utf-8")
    # mkdtemp makes 0700; a static host (or a container user) must be able to read the index.
    for path in [staging, *staging.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


# --- the vetted allowlist from config ---------------------------------------------------------


@dataclass(frozen=True)
class VettedInputs:
    """What the index serves: the target, the Python roots, the image's locks, the R roots."""

    target: Target
    roots: list[Root]
    locks: ImageLocks
    cran: CranInputs
    not_served: tuple[str, ...] = ()  # registered pins an advisory blocks: who must move


def vetted_inputs(config: Config) -> VettedInputs:
    """What the index serves, from imagebot.toml, the sets and the image's locks."""
    from imagebot.cran_upstream import CranUpstream
    from imagebot.environments import keep_serving
    from imagebot.index_pages import image_target

    target = image_target(config.images.values())
    roots = load_roots(config.requirements_dir)
    kept = keep_serving(config, roots)  # every version a registered environment pins
    roots = [*roots, *kept.roots]
    image_sets = [name for image in config.locked_images for name in image.sets]
    r_roots = load_r_roots(config.requirements_dir)
    urls = cran_upstream_urls(config)
    cran = CranInputs(
        r_roots,
        [CranUpstream(url, config.index.r_user_agent) for url in urls],
        _fresh_cran_lock(config, r_roots, urls),
    )
    locks = load_locks(config.requirements_dir, image_sets)
    return VettedInputs(target, roots, locks, cran, tuple(kept.lines()))


def build_vetted_index(
    config: Config,
    out: Path,
    *,
    env: Mapping[str, str],
    inputs: VettedInputs | None = None,
    jobs: int = 8,
    refresh: bool = False,
    progress: Progress | None = None,
    echo: Callable[[str], None] = lambda _line: None,
) -> BuildResult:
    """`index build OUT` for imagebot.toml: everything vetted, from the upstream the
    environment names (IMAGEBOT_UPSTREAM_INDEX, default PyPI; a mirror has the same API)."""
    from imagebot.pypi import PyPI
    from imagebot.uv import Uv, upstream_index

    vetted = inputs or vetted_inputs(config)
    upstream = upstream_index(env)
    return build_index(
        out,
        vetted.roots,
        vetted.target,
        PyPI(upstream),
        Uv(upstream, hashes=False, annotate=False, pylock=True),
        progress or NoProgress(),
        IndexBuildOptions(jobs=jobs, refresh=refresh, echo=echo),
        vetted.locks,
        vetted.cran,
    )


def load_roots(requirements_dir: Path) -> list[Root]:
    """Every vetted Python requirement: all sets plus requirements/index-only.toml."""
    from imagebot.requirements import load_sets

    sets = load_sets(requirements_dir)
    index_only = _index_only(requirements_dir, sets)
    return collect_roots(
        [(s.name, s.python) for s in sets],
        index_only.python if index_only else (),
        index_only_path=str(requirements_dir / f"{INDEX_ONLY_SET}.toml"),
    )


def load_r_roots(requirements_dir: Path) -> list[RRoot]:
    """Every vetted R package from a CRAN-like repository: the R entries of sets with
    r_source = "cran", and index-only.toml's [r]. Sets with Debian's r-cran-* are not served
    (their packages are in the image only)."""
    from imagebot.requirements import load_sets

    sets = load_sets(requirements_dir)
    return cran_roots(sets, _index_only(requirements_dir, sets))


def _fresh_cran_lock(
    config: Config, roots: Sequence[RRoot], urls: Sequence[str]
) -> CranLock | None:
    """requirements/cran.lock when R packages are vetted; a missing, stale or hand-edited lock
    is refused (exit 5): the index serves exactly what the reviewed lock says."""
    if not roots:
        return None
    if not urls:
        raise no_upstream_error(roots)
    from imagebot.lockfile import read_text_or_none

    path = cran_lock_path(config.requirements_dir)
    status = cran_lock_status(path, read_text_or_none(path), roots, urls, config.index.r_user_agent)
    return status.require_fresh()


def _index_only(requirements_dir: Path, sets: Sequence[Any]) -> Any:
    """requirements/index-only.toml, validated, or None when there is none."""
    from imagebot.requirements import parse_index_only

    path = requirements_dir / f"{INDEX_ONLY_SET}.toml"
    if not path.exists():
        return None
    return parse_index_only(path, _read_input(path), sets)


def _read_input(path: Path) -> str:
    try:
        return read_text(path)
    except Unreadable as exc:
        raise PackageIndexError(str(exc), f"make {path.name} a UTF-8 text file") from None


def load_locks(requirements_dir: Path, set_names: Iterable[str]) -> ImageLocks:
    """Pins and hashes of the image's layered locks (`requirements/<set>.lock`, written by
    `imagebot lock`). A lock whose text fails its content digest lends its pins, never its
    hashes: it cannot vouch for a file."""
    pins: dict[str, list[Pin]] = {}
    hashes: dict[Pin, frozenset[str]] = {}
    for name in set_names:
        path = lock_path(requirements_dir, name)
        if not path.exists():
            continue
        text = _read_input(path)
        packages = split_blocks(text)
        pins[name] = [package.pin for package in packages]
        lock = parse_lock(name, text)
        if lock is not None and lock.intact:
            for package in packages:
                hashes[package.pin] = hashes.get(package.pin, frozenset()) | package.hashes
    return ImageLocks(pins, hashes)


def load_manifest(location: str) -> IndexManifest:
    """The manifest of an index: a local OUT directory, a manifest file, or the index URL."""
    if "://" in location and not location.startswith("file://"):
        url = manifest_url(location)
        from imagebot.pypi import fetch_text

        text = fetch_text(
            url,
            "the index manifest",
            "check the index URL (imagebot.toml [index] url) or pass --index OUT_DIR",
        )
        return manifest_from_json(text, url)
    path = Path(location.removeprefix("file://"))
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise PackageIndexError(
            f"{path}: no index manifest there",
            "build the index first (imagebot index build OUT) or pass --index with its location",
        ) from None
    return manifest_from_json(text, str(path))
