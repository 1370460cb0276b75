"""Where a built index is published: a local directory or a Google Cloud Storage bucket.

Both implement `publish.Destination`. Writes are atomic per object (a local file is written
beside its target and renamed over it; a GCS object write is atomic by itself) and each one is
checked against the sha256 the plan expects, so a file that changed in OUT after the plan is
refused rather than published. The destination's listing carries each object's sha256:

  - local directory: hashed once, then remembered by (size, mtime, inode) in the directory's
    `.imagebot-publish.json`, so a publish with nothing to change reads no file;
  - bucket: the `sha256` custom metadata imagebot sets on every object it uploads (an object
    without it, written by another tool, is uploaded again once).

`read_index(OUT)` is the local side: the objects of an index `imagebot index build` wrote, with
hashes taken from its manifest for the distributions (the build verified them) and computed
for the pages. google-cloud-storage is imported only when a bucket is used.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagebot import validate
from imagebot.errors import PackageIndexError, TransientError
from imagebot.files import write_atomically
from imagebot.index_pages import (
    FILES_DIR,
    GENERATED_BY,
    JSON_CONTENT_TYPE,
    MANIFEST_NAME,
    manifest_from_json,
)
from imagebot.publish import (
    DestinationSpec,
    Entry,
    LocalIndex,
    Phase,
    PublishOptions,
    PublishResult,
    parse_destination,
    phase_of,
    publish,
)

HASHES_NAME = ".imagebot-publish.json"  # a dot file: the static host serves no dot files
_TEMP_MARK = ".publish-"
_CHUNK = 1 << 20
SHA256_METADATA = "sha256"
# Distributions never change under their name (PyPI refuses a re-upload); pages and the
# manifest must be seen as soon as they are published.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_type(key: str) -> str:
    if key == MANIFEST_NAME:
        return "application/json"
    if key.endswith(".html"):
        return "text/html; charset=utf-8"
    if key.endswith(".json"):
        return JSON_CONTENT_TYPE
    return "application/octet-stream"


def cache_control(key: str) -> str:
    return IMMUTABLE if phase_of(key) == Phase.FILES else REVALIDATE


# --- the local side: OUT -----------------------------------------------------------------------


def read_index(out: Path) -> LocalIndex:
    """The objects of a built index and their hashes; refuses anything but an index imagebot
    wrote: a symbolic link, a missing manifest, a file index build does not write, a link."""
    from imagebot.index import check_out_dir

    check_out_dir(out)
    manifest_path = out / MANIFEST_NAME
    if not out.is_dir() or manifest_path.is_symlink() or not manifest_path.is_file():
        raise PackageIndexError(
            f"{out} is not a built index (no {MANIFEST_NAME})",
            "build it first: imagebot index build OUT",
        )
    try:
        manifest = manifest_from_json(manifest_path.read_text(encoding="utf-8"), str(manifest_path))
    except UnicodeDecodeError:
        raise PackageIndexError(
            f"{manifest_path} is not UTF-8 text", "build the index again: imagebot index build OUT"
        ) from None
    listed = {f"{FILES_DIR}/{p.file.filename}": p.file for p in manifest.packages}
    entries: dict[str, Entry] = {}
    for key, path, info in _walk(out, where=str(out)):
        if phase_of(key) is None:
            raise PackageIndexError(
                f"{path} is not something imagebot index build writes",
                "publish the directory index build wrote, as it wrote it",
            )
        dist = listed.get(key)
        if dist is not None and dist.size == info.st_size:
            entries[key] = Entry(key, dist.sha256, info.st_size)
        else:
            entries[key] = Entry(key, sha256_file(path), info.st_size)
    missing = sorted(set(listed) - set(entries))
    if missing:
        raise PackageIndexError(
            f"{out} lacks {missing[0]}, which its manifest lists",
            "build the index again: imagebot index build OUT",
        )
    return LocalIndex(out, entries, manifest)


def _walk(
    root: Path, where: str, skip_dot: bool = False
) -> Iterator[tuple[str, Path, os.stat_result]]:
    """(key, path, stat) of every regular file under root; a link or special file is refused."""
    pending = [root]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as scan:
            for item in scan:
                path = Path(item.path)
                if skip_dot and item.name.startswith("."):
                    continue
                info = item.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    pending.append(path)
                elif stat.S_ISREG(info.st_mode):
                    yield path.relative_to(root).as_posix(), path, info
                else:
                    kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
                    raise PackageIndexError(
                        f"{path} is {kind}; {where} must hold regular files only",
                        "remove it; imagebot writes no links and follows none",
                    )


# --- a local directory -------------------------------------------------------------------------


@dataclass
class _Known:
    size: int
    mtime_ns: int
    inode: int
    sha256: str


class LocalDirectory:
    """A directory a static web server (the local stack's nginx) serves."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)
        self._known: dict[str, _Known] = {}
        self._dirty = False
        self._wrote = False
        self._lock = threading.Lock()
        self._stale: list[Path] = []

    def list(self) -> dict[str, Entry]:
        if self.root.is_symlink():
            raise PackageIndexError(
                f"{self.root} is a symbolic link; imagebot publishes into real directories only",
                "point [index] publish at the real directory",
            )
        if not self.root.exists():
            return {}
        if not self.root.is_dir():
            raise PackageIndexError(f"{self.root} is not a directory", "choose another destination")
        self._known = self._load_hashes()
        entries: dict[str, Entry] = {}
        for key, path, info in _walk(self.root, where=str(self.root), skip_dot=False):
            name = path.name
            if name.startswith("."):
                if _TEMP_MARK in name:
                    self._stale.append(path)  # left by a publish that was killed
                continue
            known = self._known.get(key)
            if known is None or (known.size, known.mtime_ns, known.inode) != (
                info.st_size,
                info.st_mtime_ns,
                info.st_ino,
            ):
                known = _Known(info.st_size, info.st_mtime_ns, info.st_ino, sha256_file(path))
                self._known[key] = known
                self._dirty = True
            entries[key] = Entry(key, known.sha256, info.st_size)
        for key in set(self._known) - set(entries):
            del self._known[key]
            self._dirty = True
        return entries

    def read(self, key: str) -> bytes | None:
        path = self._path(key)
        if path.is_symlink() or not path.is_file():
            return None
        return path.read_bytes()

    def upload(self, key: str, source: Path, sha256: str) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.parent / f".{target.name}{_TEMP_MARK}{secrets.token_hex(4)}"
            try:
                digest = _copy_hashing(source, temp)
                if digest != sha256:
                    raise PackageIndexError(
                        f"{source} changed since it was listed (sha256 {digest}, expected {sha256})",
                        "build the index again, then publish it",
                    )
                os.chmod(temp, 0o644)
                os.replace(temp, target)
            finally:
                temp.unlink(missing_ok=True)
            info = target.stat()
        except OSError as exc:
            raise PackageIndexError(
                f"cannot write {exc.filename or target}: {exc.strerror or exc}",
                "check the destination directory's permissions and free space",
            ) from None
        with self._lock:
            self._known[key] = _Known(info.st_size, info.st_mtime_ns, info.st_ino, sha256)
            self._dirty = self._wrote = True

    def remove(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
            if path.parent != self.root:
                _remove_if_empty(path.parent)  # a removed project's directory
        except OSError as exc:
            raise PackageIndexError(
                f"cannot remove {exc.filename or path}: {exc.strerror or exc}",
                "check the destination directory's permissions",
            ) from None
        with self._lock:
            self._known.pop(key, None)
            self._dirty = self._wrote = True

    def close(self) -> None:
        if self._wrote:
            for path in self._stale:
                path.unlink(missing_ok=True)
        if self._dirty and self.root.is_dir():
            records = {k: [v.size, v.mtime_ns, v.inode, v.sha256] for k, v in self._known.items()}
            write_atomically({self.root / HASHES_NAME: json.dumps(records, sort_keys=True)})
            self._dirty = False

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _load_hashes(self) -> dict[str, _Known]:
        path = self.root / HASHES_NAME
        try:
            raw = json.loads(path.read_bytes()) if path.is_file() and not path.is_symlink() else {}
            return {
                str(key): _Known(int(v[0]), int(v[1]), int(v[2]), str(v[3]))
                for key, v in raw.items()
            }
        except (OSError, ValueError, TypeError, IndexError, AttributeError, RecursionError):
            return {}  # hashed again from the files themselves


def _remove_if_empty(directory: Path) -> None:
    """rmdir that tolerates a directory still in use or already removed (by a parallel step)."""
    try:
        directory.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            raise


def _copy_hashing(source: Path, dest: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as reader, dest.open("xb") as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    return digest.hexdigest()


# --- a Google Cloud Storage bucket ---------------------------------------------------------------


class GcsBucket:
    """A bucket prefix, through google-cloud-storage with Application Default Credentials.

    `STORAGE_EMULATOR_HOST` (the client library's own variable) points it at an emulator.
    The library's own retries are off (`retry=None`): the one retry policy retries what this
    adapter reports as TransientError.
    """

    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        self.bucket_name = bucket
        self.prefix = prefix
        self.url = f"gs://{bucket}/{prefix}".rstrip("/")
        self._client = client
        self._bucket: Any = None

    def _handle(self) -> Any:
        if self._bucket is None:
            with self._errors("connect to"):
                if self._client is None:
                    try:
                        from google.cloud import storage
                    except ImportError:
                        raise PackageIndexError(
                            "publishing to a bucket needs google-cloud-storage",
                            "pip install 'imagebot[google]'",
                        ) from None
                    self._client = storage.Client()
                self._bucket = self._client.bucket(self.bucket_name)
        return self._bucket

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def list(self) -> dict[str, Entry]:
        bucket = self._handle()
        start = f"{self.prefix}/" if self.prefix else ""
        entries: dict[str, Entry] = {}
        with self._errors("list"):
            for blob in self._client.list_blobs(bucket, prefix=start or None, retry=None):
                key = blob.name[len(start) :]
                if not key or key.endswith("/"):
                    continue  # a "folder" placeholder
                sha = (blob.metadata or {}).get(SHA256_METADATA)
                entries[key] = Entry(key, sha, int(blob.size or 0))
        return entries

    def read(self, key: str) -> bytes | None:
        from google.api_core import exceptions

        bucket = self._handle()
        with self._errors(f"read {key} from"):
            try:
                data: bytes = bucket.blob(self._name(key)).download_as_bytes(retry=None)
            except exceptions.NotFound:
                return None
        return data

    def upload(self, key: str, source: Path, sha256: str) -> None:
        digest = sha256_file(source)
        if digest != sha256:
            raise PackageIndexError(
                f"{source} changed since it was listed (sha256 {digest}, expected {sha256})",
                "build the index again, then publish it",
            )
        bucket = self._handle()
        blob = bucket.blob(self._name(key))
        blob.metadata = {SHA256_METADATA: sha256}
        blob.cache_control = cache_control(key)
        with self._errors(f"upload {key} to"):
            blob.upload_from_filename(
                str(source), content_type=content_type(key), retry=None, checksum="md5"
            )

    def remove(self, key: str) -> None:
        from google.api_core import exceptions

        bucket = self._handle()
        # NotFound: removed by an earlier, interrupted run
        with self._errors(f"remove {key} from"), suppress(exceptions.NotFound):
            bucket.blob(self._name(key)).delete(retry=None)

    def close(self) -> None:
        return None

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """google-cloud-storage's errors as TransientError or PackageIndexError."""
        try:
            yield
        except (PackageIndexError, TransientError):
            raise
        except Exception as exc:
            raise _gcs_error(exc, f"cannot {what} {self.url}") from None


def _gcs_error(exc: Exception, where: str) -> Exception:
    import google.auth.exceptions as auth_errors
    from google.api_core import exceptions
    from google.resumable_media import common as media

    transient = (
        exceptions.TooManyRequests,
        exceptions.InternalServerError,
        exceptions.BadGateway,
        exceptions.ServiceUnavailable,
        exceptions.GatewayTimeout,
        exceptions.RequestRangeNotSatisfiable,
        auth_errors.TransportError,
        ConnectionError,
        TimeoutError,
    )
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, transient) or _is_connection_error(exc):
        return TransientError(f"{where}: {detail}")
    if isinstance(exc, media.InvalidResponse) and exc.response is not None:
        status = getattr(exc.response, "status_code", 0)
        if status == 429 or status >= 500:
            return TransientError(f"{where}: HTTP {status}")
    if isinstance(exc, auth_errors.DefaultCredentialsError):
        return PackageIndexError(
            f"{where}: no Google credentials",
            "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file "
            "(Application Default Credentials)",
        )
    if isinstance(exc, exceptions.Unauthorized | exceptions.Forbidden):
        return PackageIndexError(
            f"{where}: access refused ({detail})",
            "give the publishing service account roles/storage.objectAdmin on the bucket",
        )
    if isinstance(exc, exceptions.NotFound):
        return PackageIndexError(
            f"{where}: no such bucket", "check [index] publish in imagebot.toml"
        )
    if isinstance(exc, exceptions.GoogleAPICallError):
        return PackageIndexError(f"{where}: {detail}", "check [index] publish in imagebot.toml")
    return exc


def _is_connection_error(exc: Exception) -> bool:
    try:
        import requests
    except ImportError:
        return False
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


# --- composition -------------------------------------------------------------------------------


def open_destination(spec: DestinationSpec, root: Path, out: Path | None = None) -> Any:
    """The adapter for a destination; a relative directory is relative to the repository root.

    A local directory may be neither OUT nor inside it, nor hold it."""
    if spec.bucket is not None:
        return GcsBucket(spec.bucket, spec.path)
    directory = Path(spec.path)
    if not directory.is_absolute():
        directory = root / directory
    if out is not None:
        a, b = directory.resolve(), out.resolve()
        if a == b or a in b.parents or b in a.parents:
            raise PackageIndexError(
                f"the destination {directory} and OUT {out} overlap",
                "publish into a directory outside OUT (the local stack's: .local/stack/index)",
            )
    return LocalDirectory(directory)


def index_cache_dir(env: Mapping[str, str]) -> Path:
    """Where `release` keeps the index it builds and publishes ($IMAGEBOT_INDEX_CACHE)."""
    explicit = env.get("IMAGEBOT_INDEX_CACHE")
    if explicit:
        return Path(explicit)
    cache = Path(env.get("XDG_CACHE_HOME") or Path(env.get("HOME") or "~").expanduser() / ".cache")
    return cache / "imagebot" / "index"


def seed_from_published(out: Path, destination: str, root: Path) -> bool:
    """Give an empty OUT the destination's manifest, so that an incremental build keeps every
    unchanged root's closure (no uv run) and downloads only the files. True when seeded.

    The manifest only says what to build; no hash in it is trusted (index build checks every
    file against the locks or the upstream)."""
    if (out / MANIFEST_NAME).exists() or (out.exists() and any(out.iterdir())):
        return False
    spec = _parsed(destination)
    data = open_destination(spec, root).read(MANIFEST_NAME)
    if data is None:
        return False
    try:
        raw = json.loads(data)
        manifest_from_json(data.decode("utf-8"), MANIFEST_NAME)
    except (ValueError, UnicodeDecodeError, RecursionError, PackageIndexError):
        return False  # another format: a cold build
    if not isinstance(raw, dict) or raw.get("generated_by") != GENERATED_BY:
        return False
    out.mkdir(parents=True, exist_ok=True)
    write_atomically({out / MANIFEST_NAME: data.decode("utf-8")})
    return True


def _parsed(destination: str) -> DestinationSpec:
    try:
        return parse_destination(destination)
    except validate.InvalidValue as exc:
        from imagebot.errors import ConfigError

        raise ConfigError(f"imagebot.toml: index.publish: {exc.message}", exc.hint) from None


def publish_out(out: Path, destination: str, root: Path, options: PublishOptions) -> PublishResult:
    """Publish the index in OUT to `destination` ([index] publish)."""
    spec = _parsed(destination)
    local = read_index(out)
    return publish(local, open_destination(spec, root, out), options)
