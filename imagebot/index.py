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

Three modules share the work:
  - `imagebot.index_pages` (pure): the model, wheel selection, pages, manifest, planning;
  - `imagebot.pypi` (adapter): the upstream simple API and verified downloads, with retries;
  - this module: `build_index` (resolve with uv, stage files, write pages, swap OUT in; returns
    a `BuildResult`), progress on stderr, the allowlist and manifest loaders, and `make_server`.
Only the standard library is imported at module level: `rich` and `uv` are imported where they
are used.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from imagebot.errors import PackageIndexError, RequirementsError
from imagebot.index_pages import (
    FILES_DIR,
    INDEX_ONLY_SET,
    JSON_CONTENT_TYPE,
    MANIFEST_NAME,
    SIMPLE_DIR,
    DistFile,
    IndexedPackage,
    Locked,
    Manifest,
    Pin,
    Release,
    Root,
    Target,
    collect_roots,
    index_packages,
    manifest_from_json,
    manifest_to_json,
    manifest_url,
    parse_compiled,
    parse_pylock,
    pins_to_index,
    previous_releases,
    render_pages,
    reusable_manifest,
    select_file,
    target_tags,
    unresolved_roots,
)

# --- ports and results ------------------------------------------------------------------------


class PackageSource(Protocol):
    """Where releases and files come from: PyPI in production, a fake in unit tests."""

    def release(self, name: str, version: str) -> Release: ...

    def download(self, dist: DistFile, dest: Path) -> None: ...


class Resolver(Protocol):
    def closure(self, root: Root, target: Target) -> list[Locked]: ...


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


# --- adapter: uv -----------------------------------------------------------------------------


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
    previous = None if options.refresh else reusable_manifest(read_previous_manifest(out), target)
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
            chooser.complete(pins_to_index(closures, locked), source, options)
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
    previous: Manifest | None,
    options: BuildOptions,
    on_resolved: Callable[[Sequence[Locked]], None],
) -> dict[str, tuple[Pin, ...]]:
    """Each root's closure; each new one goes to `on_resolved` as soon as uv returns it.
    An unchanged root keeps the closure it had, so the index stays stable between builds."""
    known = dict(previous.closures) if previous else {}
    todo = unresolved_roots(roots, previous)
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
        self.known = previous_releases(previous)
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
    except OSError:
        raise PackageIndexError(
            f"{path}: no index manifest there",
            "build the index first (imagebot index build OUT) or pass --index with its location",
        ) from None
    return manifest_from_json(text, str(path))


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
