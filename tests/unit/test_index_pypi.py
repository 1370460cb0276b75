"""The PyPI adapter (imagebot.pypi) over real HTTP, against a PEP 691 server on loopback with
injected faults: retries on 5xx, no retry on 404, hash verification of downloads. Also the pure
reading of PEP 691 project documents."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest
from http_fixtures import loopback

from imagebot.errors import PackageIndexError
from imagebot.index_pages import JSON_CONTENT_TYPE
from imagebot.pypi import PyPI, release_from_simple_json

WHEEL = b"not really a wheel"
PROJECT = {
    "meta": {"api-version": "1.1"},
    "name": "six",
    "versions": ["1.16.0", "1.17.0"],
    "files": [
        {
            "filename": "six-1.17.0-py2.py3-none-any.whl",
            "url": "/files/six-1.17.0-py2.py3-none-any.whl",
            "hashes": {"sha256": hashlib.sha256(WHEEL).hexdigest()},
            "size": len(WHEEL),
            "requires-python": ">=2.7",
        }
    ],
}


class FakeIndex(BaseHTTPRequestHandler):
    faults: ClassVar[
        list[int]
    ] = []  # status codes to answer before the real answer, one per request
    requests: ClassVar[list[tuple[str, str]]] = []
    body = WHEEL

    def do_GET(self) -> None:
        type(self).requests.append((self.path, self.headers.get("Accept", "")))
        if self.faults:
            self.send_error(self.faults.pop(0))
            return
        if self.path == "/simple/six/":
            data, kind = json.dumps(PROJECT).encode(), JSON_CONTENT_TYPE
        elif self.path == "/files/six-1.17.0-py2.py3-none-any.whl":
            data, kind = type(self).body, "application/octet-stream"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def index() -> Iterator[str]:
    FakeIndex.faults = []
    FakeIndex.requests = []
    FakeIndex.body = WHEEL
    with loopback(FakeIndex, poll_interval=0.02) as host:
        yield f"http://{host}"


def test_release_asks_for_pep_691_json_once_per_project(index: str) -> None:
    pypi = PyPI(f"{index}/simple", backoff=0.01)
    release = pypi.release("Six", "1.17.0")
    assert [f.filename for f in release.files] == ["six-1.17.0-py2.py3-none-any.whl"]
    assert release.files[0].requires_python == ">=2.7"
    with pytest.raises(PackageIndexError, match=r"six==1\.16\.0"):
        pypi.release("six", "1.16.0")  # listed in versions, but without files here
    assert FakeIndex.requests == [("/simple/six/", JSON_CONTENT_TYPE)]
    assert pypi.metadata_fetches == 1


def test_a_missing_version_lists_recent_ones(index: str) -> None:
    with pytest.raises(PackageIndexError) as caught:
        PyPI(f"{index}/simple", backoff=0.01).release("six", "9.9")
    assert caught.value.message == "six==9.9: PyPI has no version '9.9'"
    assert caught.value.hint == "recent versions of six: 1.16.0, 1.17.0"


def test_an_unknown_project_is_not_retried(index: str) -> None:
    with pytest.raises(PackageIndexError, match="package 'nosuch' does not exist on PyPI"):
        PyPI(f"{index}/simple", backoff=0.01).release("nosuch", "1.0")
    assert len(FakeIndex.requests) == 1


def test_server_errors_are_retried(index: str) -> None:
    FakeIndex.faults = [503, 502]
    release = PyPI(f"{index}/simple", backoff=0.01).release("six", "1.17.0")
    assert release.version == "1.17.0"
    assert len(FakeIndex.requests) == 3


def test_a_client_error_fails_at_once(index: str) -> None:
    FakeIndex.faults = [403]
    with pytest.raises(PackageIndexError, match="PyPI answered HTTP 403"):
        PyPI(f"{index}/simple", backoff=0.01).release("six", "1.17.0")
    assert len(FakeIndex.requests) == 1


def test_download_verifies_the_hash_and_leaves_no_partial_file(index: str, tmp_path: Path) -> None:
    pypi = PyPI(f"{index}/simple", backoff=0.01)
    dist = pypi.release("six", "1.17.0").files[0]
    dist = type(dist)(dist.filename, f"{index}{dist.url}", dist.sha256, dist.size)
    pypi.download(dist, tmp_path / dist.filename)
    assert (tmp_path / dist.filename).read_bytes() == WHEEL
    FakeIndex.body = b"tampered on the way"
    with pytest.raises(PackageIndexError, match="does not match PyPI's"):
        pypi.download(dist, tmp_path / "again.whl")
    assert sorted(p.name for p in tmp_path.iterdir()) == [dist.filename]


def test_download_retries_a_dropped_transfer(index: str, tmp_path: Path) -> None:
    pypi = PyPI(f"{index}/simple", backoff=0.01)
    dist = pypi.release("six", "1.17.0").files[0]
    dist = type(dist)(dist.filename, f"{index}{dist.url}", dist.sha256, dist.size)
    FakeIndex.faults = [500]
    pypi.download(dist, tmp_path / dist.filename)
    assert (tmp_path / dist.filename).read_bytes() == WHEEL


# --- PyPI's PEP 691 documents -----------------------------------------------------------------


def simple_file(
    filename: str, yanked: bool | str = False, requires: str | None = None
) -> dict[str, object]:
    return {
        "filename": filename,
        "url": f"https://files.example/{filename}",
        "hashes": {"sha256": hashlib.sha256(filename.encode()).hexdigest()},
        "size": 10,
        "requires-python": requires,
        "yanked": yanked,
    }


SIMPLE_PROJECT = {
    "name": "six",
    "versions": ["1.16.0", "1.17.0"],
    "files": [
        simple_file("six-1.16.0.tar.gz", yanked="bad build"),
        simple_file("six-1.16.0-py2.py3-none-any.whl", yanked="bad build"),
        simple_file("six-1.17.0.tar.gz"),
        simple_file("six-1.17.0-py2.py3-none-any.whl", requires=">=2.7"),
    ],
}


def test_release_from_simple_json_keeps_one_versions_live_files() -> None:
    found = release_from_simple_json(SIMPLE_PROJECT, "1.17.0")
    assert found is not None and not found.yanked
    assert [f.filename for f in found.files] == [
        "six-1.17.0.tar.gz",
        "six-1.17.0-py2.py3-none-any.whl",
    ]
    assert found.files[1].requires_python == ">=2.7"


def test_release_whose_files_are_all_yanked_is_yanked_with_reason() -> None:
    found = release_from_simple_json(SIMPLE_PROJECT, "1.16")  # PEP 440: 1.16 == 1.16.0
    assert found is not None and found.yanked and found.yanked_reason == "bad build"


def test_missing_version_is_none() -> None:
    assert release_from_simple_json(SIMPLE_PROJECT, "9.9") is None
