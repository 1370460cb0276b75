"""index publish against the local stack's real static host: Debian's nginx, configured by
`scripts/stack index-start` (its own instance here, on a free port and a temporary directory).

A reader polls the host over HTTP the way pip does (root page, project pages, every linked
file) while publishes run, and must never find a page that links a missing file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from paths import REPO_ROOT
from publish_fixtures import wheel_name, write_index

from imagebot.destinations import LocalDirectory, read_index
from imagebot.publish import PublishOptions, publish

STACK = REPO_ROOT / "scripts" / "stack"
JSON = "application/vnd.pypi.simple.v1+json"
_HREF = re.compile(r'href="([^"]+)"')


@dataclass
class Host:
    url: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    # Not under pytest's 0700 temp root: nginx's workers run as nobody and must read it.
    state = Path(tempfile.mkdtemp(prefix="imagebot-index-host-"))
    state.chmod(0o755)
    addr = f"127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        "IMAGEBOT_STACK_DIR": str(state),
        "IMAGEBOT_INDEX_DIR": str(state / "index"),
        "IMAGEBOT_INDEX_ADDR": addr,
    }
    for parent in state.parents:  # nobody must reach the directory it serves
        if parent.stat().st_mode & 0o001 == 0:
            pytest.skip(f"{parent} is not searchable by nginx's workers")
    started = subprocess.run(
        [str(STACK), "index-start"], env=env, capture_output=True, text=True, timeout=300
    )
    assert started.returncode == 0, started.stderr
    again = time.monotonic()
    subprocess.run([str(STACK), "index-start"], env=env, check=True, timeout=60)
    assert time.monotonic() - again < 2, "index-start on a running host must be fast"
    try:
        yield Host(f"http://{addr}", state / "index", env)
    finally:
        subprocess.run([str(STACK), "index-stop"], env=env, timeout=60, check=False)
        shutil.rmtree(state, ignore_errors=True)


def get(url: str, accept: str = "text/html") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), b""


def clean(host: Host) -> None:
    for item in host.root.iterdir() if host.root.exists() else []:
        shutil.rmtree(item) if item.is_dir() else item.unlink()


def test_the_host_serves_pages_by_accept_and_files_as_published(tmp_path: Path, host: Host) -> None:
    clean(host)
    out = tmp_path / "out"
    write_index(out, {"six": ["1.16.0", "1.17.0"]})
    publish(read_index(out), LocalDirectory(host.root), PublishOptions())
    status, kind, body = get(f"{host.url}/simple/")
    assert (status, kind) == (200, "text/html")
    assert 'href="six/"' in body.decode()
    status, kind, body = get(f"{host.url}/simple/six/", JSON)
    assert (status, kind) == (200, JSON)
    assert json.loads(body)["versions"] == ["1.16.0", "1.17.0"]
    status, _, body = get(f"{host.url}/files/{wheel_name('six', '1.17.0')}")
    assert status == 200 and body == (out / "files" / wheel_name("six", "1.17.0")).read_bytes()
    assert get(f"{host.url}/imagebot-index.json")[0] == 200
    for hidden in ("/files/", "/simple/nosuch/", "/.imagebot-publish.json"):
        assert get(f"{host.url}{hidden}")[0] == 404, hidden
    (host.root / "files" / "link.whl").symlink_to("/etc/hostname")
    assert get(f"{host.url}/files/link.whl")[0] in (403, 404)
    (host.root / "files" / "link.whl").unlink()


class Reader(threading.Thread):
    """pip's view, over and over: the root page, each project page, each linked file.

    A link that answers 404 is broken only if the page, read again, still links it: a reader
    that holds a page from before a publish may find that publish's removals, which come after
    the page that stopped linking them (that order is what is tested).
    """

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.broken: list[str] = []
        self.rounds = 0
        self.seen: set[str] = set()

    def run(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            status, _, root = get(f"{self.url}/simple/")
            if status != 200:
                continue  # nothing published yet
            for project in _HREF.findall(root.decode()):
                page_status, _, page = get(f"{self.url}/simple/{project}")
                if page_status != 200:
                    if self.still_linked("/simple/", f'href="{project}"'):
                        self.broken.append(f"/simple/ -> {project}: {page_status}")
                    continue
                for href in _HREF.findall(page.decode()):
                    link, _, digest = href.partition("#sha256=")
                    name = link.rsplit("/", 1)[-1]
                    file_status, _, body = get(f"{self.url}/files/{name}")
                    self.seen.add(name)
                    if file_status == 200 and hashlib.sha256(body).hexdigest() == digest:
                        continue
                    if self.still_linked(f"/simple/{project}", f'href="{href}"'):
                        self.broken.append(f"{project} -> {name}: {file_status}")
            self.rounds += 1

    def still_linked(self, page: str, link: str) -> bool:
        status, _, body = get(f"{self.url}{page}")
        return status == 200 and link in body.decode()


def test_a_reader_polling_during_publishes_never_gets_a_broken_link(
    tmp_path: Path, host: Host
) -> None:
    clean(host)
    out = tmp_path / "out"
    write_index(out, {f"p{i}": ["1.0"] for i in range(8)}, wheel_size=200_000)
    publish(read_index(out), LocalDirectory(host.root), PublishOptions())
    reader = Reader(host.url, seconds=60)
    reader.start()
    try:
        for step in range(2, 8):
            # every step adds a version, drops the oldest, and replaces one project
            versions = {f"p{i}": [f"{step - 1}.0", f"{step}.0"] for i in range(step, 8)}
            versions[f"q{step}"] = ["1.0"]
            write_index(out, versions, wheel_size=200_000)
            result = publish(read_index(out), LocalDirectory(host.root), PublishOptions(jobs=4))
            assert result.added and result.removed
    finally:
        reader.stop.set()
        reader.join(timeout=30)
    assert reader.rounds > 3
    assert reader.broken == []


def test_a_publish_killed_midway_is_finished_by_a_rerun(tmp_path: Path, host: Host) -> None:
    clean(host)
    out = tmp_path / "out"
    write_index(out, {f"p{i}": ["1.0"] for i in range(4)}, wheel_size=100_000)
    publish(read_index(out), LocalDirectory(host.root), PublishOptions())
    write_index(out, {f"p{i}": ["2.0"] for i in range(40)}, wheel_size=2_000_000)
    script = (
        "import sys; from pathlib import Path\n"
        "from imagebot.destinations import LocalDirectory, read_index\n"
        "from imagebot.publish import PublishOptions, publish\n"
        "publish(read_index(Path(sys.argv[1])), LocalDirectory(Path(sys.argv[2])),"
        " PublishOptions(jobs=1, echo=lambda line: print(line, flush=True)))\n"
    )
    reader = Reader(host.url, seconds=60)
    reader.start()
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(out), str(host.root)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for _ in range(5):  # a few files are in place, the pages are not
        child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert get(f"{host.url}/simple/p30/")[0] == 404  # not linked yet, not published yet
    try:
        rerun = publish(read_index(out), LocalDirectory(host.root), PublishOptions(jobs=4))
    finally:
        reader.stop.set()
        reader.join(timeout=30)
    assert rerun.unchanged >= 5 and rerun.removed
    assert reader.broken == []
    assert get(f"{host.url}/simple/p30/")[0] == 200
    assert not [p for p in host.root.rglob("*") if ".publish-" in p.name]
    served = {
        p.relative_to(host.root).as_posix()
        for p in host.root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    assert served == set(read_index(out).entries)
