"""index publish into a Google Cloud Storage bucket, through google-cloud-storage, against
gcp-storage-emulator on loopback (the client library honours STORAGE_EMULATOR_HOST).

No Google service is reachable here; the emulator speaks the JSON API the library uses, so
listing with metadata, uploads, downloads and deletes go through the real client code.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from publish_fixtures import broken_links, wheel_name, write_index

from imagebot.destinations import GcsBucket, read_index
from imagebot.errors import PackageIndexError
from imagebot.publish import Entry, PublishOptions, publish

pytest.importorskip("google.cloud.storage")
pytest.importorskip("gcp_storage_emulator")

BUCKET = "stat-vetted-pypi"
PREFIX = "pypi"
FAST = PublishOptions(jobs=4, backoff=0.001)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--default-bucket",
            BUCKET,
            "--in-memory",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"gcp-storage-emulator did not start: {process.stderr.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def bucket(
    emulator: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> GcsBucket:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    # each test its own prefix: the emulator's bucket is shared by the module
    return GcsBucket(BUCKET, f"{PREFIX}/{request.node.name[:40]}")


def objects(bucket: GcsBucket) -> dict[str, bytes]:
    return {key: bucket.read(key) or b"" for key in bucket.list()}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_publish_into_a_bucket_then_a_rerun_uploads_nothing(
    tmp_path: Path, bucket: GcsBucket
) -> None:
    out = tmp_path / "out"
    write_index(out, {"six": ["1.16.0", "1.17.0"], "idna": ["3.10"]})
    first = publish(read_index(out), bucket, FAST)
    assert len(first.added) == len(tree(out))
    assert objects(bucket) == tree(out)
    listing = bucket.list()
    local = read_index(out)
    assert {k: v.sha256 for k, v in listing.items()} == {
        k: v.sha256 for k, v in local.entries.items()
    }

    start = time.monotonic()
    again = publish(read_index(out), GcsBucket(BUCKET, bucket.prefix), FAST)
    assert not again.touched and again.bytes_uploaded == 0
    assert time.monotonic() - start < 1.0


def test_objects_carry_content_types_and_cache_control(tmp_path: Path, bucket: GcsBucket) -> None:
    from google.cloud import storage

    out = tmp_path / "out"
    write_index(out, {"six": ["1.17.0"]})
    publish(read_index(out), bucket, FAST)
    client = storage.Client()
    blobs = {
        b.name.removeprefix(bucket.prefix + "/"): b
        for b in client.list_blobs(BUCKET, prefix=bucket.prefix + "/")
    }
    wheel = blobs[f"files/{wheel_name('six', '1.17.0')}"]
    assert wheel.cache_control == "public, max-age=31536000, immutable"
    assert blobs["simple/six/index.html"].content_type.startswith("text/html")
    assert blobs["simple/six/index.json"].content_type == "application/vnd.pypi.simple.v1+json"
    assert blobs["imagebot-index.json"].cache_control == "no-cache"


def test_changes_and_removals_in_order_never_break_a_reader(
    tmp_path: Path, bucket: GcsBucket
) -> None:
    out = tmp_path / "out"
    write_index(out, {"six": ["1.16.0"], "idna": ["3.10"]})
    publish(read_index(out), bucket, FAST)
    write_index(out, {"six": ["1.16.0", "1.17.0"], "tabulate": ["0.9.0"]})

    class Checked:
        url = bucket.url

        def __init__(self) -> None:
            self.seen: list[str] = []

        def list(self) -> dict[str, Entry]:
            return bucket.list()

        def read(self, key: str) -> bytes | None:
            return bucket.read(key)

        def _check(self) -> None:
            self.seen += broken_links(
                bucket.read, [k for k in bucket.list() if k.endswith(".html")]
            )

        def upload(self, key: str, source: Path, sha256: str) -> None:
            bucket.upload(key, source, sha256)
            self._check()

        def remove(self, key: str) -> None:
            bucket.remove(key)
            self._check()

        def close(self) -> None:
            bucket.close()

    checked = Checked()
    result = publish(read_index(out), checked, PublishOptions(jobs=1))
    assert checked.seen == []
    assert result.changes.versions_added == ("six==1.17.0", "tabulate==0.9.0")
    assert result.changes.versions_removed == ("idna==3.10",)
    assert objects(bucket) == tree(out)


def test_an_interrupted_publish_is_finished_by_a_rerun(tmp_path: Path, bucket: GcsBucket) -> None:
    out = tmp_path / "out"
    write_index(out, {"six": ["1.16.0"]})
    publish(read_index(out), bucket, FAST)
    write_index(out, {"six": ["1.17.0"], "idna": ["3.10"]})
    calls = {"n": 0}
    real_upload = bucket.upload

    def dies_on_third(key: str, source: Path, sha256: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_upload(key, source, sha256)

    bucket.upload = dies_on_third  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        publish(read_index(out), bucket, PublishOptions(jobs=1))
    bucket.upload = real_upload  # type: ignore[method-assign]
    assert broken_links(bucket.read, [k for k in bucket.list() if k.endswith(".html")]) == []
    rerun = publish(read_index(out), bucket, FAST)
    assert rerun.touched
    assert objects(bucket) == tree(out)


def test_an_object_written_by_another_tool_is_uploaded_again_once(
    tmp_path: Path, bucket: GcsBucket
) -> None:
    from google.cloud import storage

    out = tmp_path / "out"
    write_index(out, {"six": ["1.17.0"]})
    client = storage.Client()
    page = out / "simple" / "six" / "index.html"
    client.bucket(BUCKET).blob(f"{bucket.prefix}/simple/six/index.html").upload_from_filename(
        str(page)
    )
    result = publish(read_index(out), bucket, FAST)
    assert "simple/six/index.html" in result.changed
    assert not publish(read_index(out), bucket, FAST).touched


def test_a_bucket_prefix_holding_other_objects_is_refused_untouched(
    tmp_path: Path, bucket: GcsBucket
) -> None:
    from google.cloud import storage

    out = tmp_path / "out"
    write_index(out, {"six": ["1.17.0"]})
    storage.Client().bucket(BUCKET).blob(f"{bucket.prefix}/backup.tar").upload_from_string(b"keep")
    with pytest.raises(PackageIndexError, match="no part of an index"):
        publish(read_index(out), bucket, FAST)
    assert set(bucket.list()) == {"backup.tar"}


def test_a_missing_bucket_is_one_clear_error(
    tmp_path: Path, emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    out = tmp_path / "out"
    write_index(out, {"six": ["1.17.0"]})
    with pytest.raises(PackageIndexError, match="no such bucket"):
        publish(read_index(out), GcsBucket("no-such-bucket", "pypi"), FAST)


def test_an_unreachable_endpoint_is_retried_then_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{_free_port()}")
    out = tmp_path / "out"
    write_index(out, {"six": ["1.17.0"]})
    lines: list[str] = []
    options = PublishOptions(jobs=1, backoff=0.001, attempts=3, echo=lines.append)
    with pytest.raises(PackageIndexError, match="after 3 attempts"):
        publish(read_index(out), GcsBucket(BUCKET, "pypi"), options)
    assert len([line for line in lines if "retrying" in line]) == 2
