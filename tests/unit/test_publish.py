"""index publish: the pure plan, and publishing into a local directory (real files)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from publish_fixtures import broken_links, wheel_name, write_index

from imagebot.destinations import HASHES_NAME, LocalDirectory, read_index
from imagebot.errors import PackageIndexError, TransientError
from imagebot.publish import (
    Entry,
    Phase,
    PublishOptions,
    foreign_keys,
    index_changes,
    parse_destination,
    phase_of,
    plan_publish,
    publish,
)

FAST = PublishOptions(jobs=4, backoff=0.001)


def e(key: str, sha: str | None = "a", size: int = 1) -> Entry:
    return Entry(key, sha, size)


def table(*items: Entry) -> dict[str, Entry]:
    return {item.key: item for item in items}


# --- the pure plan -----------------------------------------------------------------------------


def test_phases_of_the_index_layout() -> None:
    assert phase_of("files/six-1.17.0-py2.py3-none-any.whl") == Phase.FILES
    assert phase_of("simple/six/index.html") == Phase.PROJECTS
    assert phase_of("simple/six/index.json") == Phase.PROJECTS
    assert phase_of("simple/index.html") == Phase.ROOT
    assert phase_of("imagebot-index.json") == Phase.MANIFEST
    for foreign in (
        "files/../x",
        "files/.hidden",
        "simple/six/other.html",
        "simple/../index.html",
        "backup.tar",
        "files/sub/x.whl",
        "",
    ):
        assert phase_of(foreign) is None, foreign


def test_plan_orders_files_projects_root_manifest_then_removals() -> None:
    local = table(
        e("imagebot-index.json", "m2"),
        e("simple/index.html", "r2"),
        e("simple/new/index.html", "n"),
        e("simple/six/index.html", "s2"),
        e("files/new-1.0-py3-none-any.whl", "w"),
        e("files/six-2-py3-none-any.whl", "k"),
    )
    remote = table(
        e("imagebot-index.json", "m1"),
        e("simple/index.html", "r1"),
        e("simple/six/index.html", "s1"),
        e("simple/gone/index.html", "g"),
        e("files/six-2-py3-none-any.whl", "k"),
        e("files/gone-1.0-py3-none-any.whl", "g"),
        e("files/six-1-py3-none-any.whl", "old"),
    )
    plan = plan_publish(local, remote)
    assert [[(s.action, s.key) for s in batch] for batch in plan.batches] == [
        [("add", "files/new-1.0-py3-none-any.whl")],
        [("add", "simple/new/index.html"), ("change", "simple/six/index.html")],
        [("change", "simple/index.html")],
        [("change", "imagebot-index.json")],
        [("remove", "simple/gone/index.html")],
        [("remove", "files/gone-1.0-py3-none-any.whl"), ("remove", "files/six-1-py3-none-any.whl")],
    ]
    assert plan.unchanged == 1
    assert plan.keys("add") == ("files/new-1.0-py3-none-any.whl", "simple/new/index.html")


def test_nothing_differs_nothing_planned() -> None:
    same = table(e("imagebot-index.json"), e("simple/index.html"), e("files/a-1-py3-none-any.whl"))
    plan = plan_publish(same, dict(same))
    assert plan.batches == ()
    assert plan.unchanged == 3


def test_an_object_without_a_known_hash_or_of_another_size_is_uploaded_again() -> None:
    local = table(e("files/a-1-py3-none-any.whl", "h", 5), e("simple/index.html", "p", 5))
    remote = table(e("files/a-1-py3-none-any.whl", None, 5), e("simple/index.html", "p", 4))
    plan = plan_publish(local, remote)
    assert plan.keys("change") == ("files/a-1-py3-none-any.whl", "simple/index.html")


def test_objects_no_index_holds_are_foreign() -> None:
    assert foreign_keys(["files/a.whl", "notes.txt", "simple/x/y/z.html"]) == [
        "notes.txt",
        "simple/x/y/z.html",
    ]


@pytest.mark.parametrize(
    ("text", "bucket", "path"),
    [
        ("gs://stat-vetted-pypi", "stat-vetted-pypi", ""),
        ("gs://stat-vetted-pypi/", "stat-vetted-pypi", ""),
        ("gs://b-1.example/pypi/v1", "b-1.example", "pypi/v1"),
        (".local/stack/index", None, ".local/stack/index"),
        ("/srv/pypi/", None, "/srv/pypi"),
    ],
)
def test_destinations_parse(text: str, bucket: str | None, path: str) -> None:
    spec = parse_destination(text)
    assert (spec.bucket, spec.path) == (bucket, path)


@pytest.mark.parametrize(
    "text",
    [
        "gs://user:secret@bucket/prefix",
        "gs://bucket:443/prefix",
        "gs://Bucket/prefix",
        "gs://bucket/../other",
        "gs://bucket/a//b",
        "gs://bucket/a/./b",
        "s3://bucket/prefix",
        "https://storage.googleapis.com/bucket",
        "../outside",
        "/srv/pypi/../../etc",
        "dir\nRUN x",
        " padded",
        "",
    ],
)
def test_malformed_destinations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_destination(text)


def test_index_changes_name_projects_and_versions(tmp_path: Path) -> None:
    old = write_index(tmp_path / "a", {"six": ["1.16.0"], "idna": ["3.10"]})
    new = write_index(tmp_path / "b", {"six": ["1.16.0", "1.17.0"], "tabulate": ["0.9.0"]})
    changes = index_changes(old, new)
    assert changes.projects_added == ("tabulate",)
    assert changes.projects_removed == ("idna",)
    assert changes.versions_added == ("six==1.17.0", "tabulate==0.9.0")
    assert changes.versions_removed == ("idna==3.10",)
    assert index_changes(None, new).versions_added == (
        "six==1.16.0",
        "six==1.17.0",
        "tabulate==0.9.0",
    )


# --- publishing into a directory ---------------------------------------------------------------


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_first_publish_copies_everything_and_a_rerun_touches_nothing(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.16.0", "1.17.0"], "idna": ["3.10"]})
    first = publish(read_index(out), LocalDirectory(dest), FAST)
    assert tree(dest) == tree(out)
    assert len(first.added) == len(tree(out)) and not first.changed and not first.removed
    assert first.changes.versions_added == ("idna==3.10", "six==1.16.0", "six==1.17.0")
    stamps = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}

    start = time.monotonic()
    again = publish(read_index(out), LocalDirectory(dest), FAST)
    assert time.monotonic() - start < 0.5
    assert not again.touched and again.unchanged == len(tree(out)) and again.bytes_uploaded == 0
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == stamps
    assert "up to date" in again.summary_lines()[0]


def test_a_noop_publish_reads_no_file_once_hashes_are_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.17.0"], "idna": ["3.10"]}, wheel_size=100_000)
    publish(read_index(out), LocalDirectory(dest), FAST)
    hashed: list[str] = []
    import imagebot.destinations as destinations

    real = destinations.sha256_file
    monkeypatch.setattr(
        destinations, "sha256_file", lambda path: hashed.append(path.name) or real(path)
    )
    assert not publish(read_index(out), LocalDirectory(dest), FAST).touched
    assert not [name for name in hashed if name.endswith(".whl")]


def test_a_new_version_adds_its_file_and_pages_and_a_removed_one_goes_last(
    tmp_path: Path,
) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.16.0"], "idna": ["3.10"]})
    publish(read_index(out), LocalDirectory(dest), FAST)
    write_index(out, {"six": ["1.16.0", "1.17.0"]})
    result = publish(read_index(out), LocalDirectory(dest), FAST)
    assert result.added == (f"files/{wheel_name('six', '1.17.0')}",)
    assert set(result.removed) == {
        f"files/{wheel_name('idna', '3.10')}",
        "simple/idna/index.html",
        "simple/idna/index.json",
    }
    assert result.changes.versions_added == ("six==1.17.0",)
    assert result.changes.projects_removed == ("idna",)
    assert tree(dest) == tree(out)
    assert not (dest / "simple" / "idna").exists()


def test_dry_run_lists_changes_and_writes_nothing(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.16.0"]})
    publish(read_index(out), LocalDirectory(dest), FAST)
    before = tree(dest)
    write_index(out, {"six": ["1.17.0"]})
    result = publish(read_index(out), LocalDirectory(dest), PublishOptions(dry_run=True))
    assert tree(dest) == before
    assert result.dry_run and result.added and result.changed and result.removed
    lines = result.summary_lines()
    assert lines[0].startswith("index publish: would publish")
    assert f"  add    files/{wheel_name('six', '1.17.0')}" in lines
    assert f"  remove files/{wheel_name('six', '1.16.0')}" in lines


class Recording:
    """A destination wrapper that checks, after every write, what a reader would see."""

    def __init__(self, inner: LocalDirectory, fail_after: int | None = None) -> None:
        self.inner = inner
        self.url = inner.url
        self.lock = threading.RLock()
        self.log: list[str] = []
        self.broken: list[str] = []
        self.fail_after = fail_after
        self.transient: dict[str, int] = {}

    def list(self) -> dict[str, Entry]:
        return self.inner.list()

    def read(self, key: str) -> bytes | None:
        return self.inner.read(key)

    def _check(self, step: str) -> None:
        with self.lock:
            self.log.append(step)
            if self.fail_after is not None and len(self.log) > self.fail_after:
                raise PackageIndexError("injected failure")
            keys = [
                p.relative_to(self.inner.root).as_posix()
                for p in self.inner.root.rglob("index.html")
            ]
            self.broken += broken_links(self.inner.read, keys)

    def upload(self, key: str, source: Path, sha256: str) -> None:
        if self.transient.get(key, 0) > 0:
            self.transient[key] -= 1
            raise TransientError(f"503 for {key}")
        with self.lock:  # one write at a time, so that each check sees a settled tree
            self._check(f"upload {key}")
            self.inner.upload(key, source, sha256)
            self._check(f"uploaded {key}")

    def remove(self, key: str) -> None:
        with self.lock:
            self._check(f"remove {key}")
            self.inner.remove(key)
            self._check(f"removed {key}")

    def close(self) -> None:
        self.inner.close()


def test_a_reader_never_sees_a_page_that_links_a_missing_file(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    versions = {f"p{i}": ["1.0", "2.0"] for i in range(6)}
    write_index(out, versions)
    first = Recording(LocalDirectory(dest))
    publish(read_index(out), first, FAST)
    write_index(out, {**{f"p{i}": ["2.0", "3.0"] for i in range(3)}, "new": ["1.0"]})
    second = Recording(LocalDirectory(dest))
    result = publish(read_index(out), second, FAST)
    assert result.added and result.removed
    assert first.broken == [] and second.broken == []
    manifest_at = second.log.index("uploaded imagebot-index.json")
    assert all(line.startswith("remove") for line in second.log[manifest_at + 1 :: 2])


def test_an_interrupted_publish_is_finished_by_a_rerun(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.16.0"], "idna": ["3.10"]})
    publish(read_index(out), LocalDirectory(dest), FAST)
    write_index(out, {"six": ["1.17.0"], "tabulate": ["0.9.0"]})
    broken = Recording(LocalDirectory(dest), fail_after=3)
    with pytest.raises(PackageIndexError, match="injected"):
        publish(read_index(out), broken, PublishOptions(jobs=1))
    assert broken.broken == []
    assert not [p for p in dest.rglob("*") if ".publish-" in p.name]
    rerun = publish(read_index(out), LocalDirectory(dest), FAST)
    assert rerun.touched
    assert tree(dest) == tree(out)
    assert not publish(read_index(out), LocalDirectory(dest), FAST).touched


def test_a_publish_killed_mid_copy_leaves_a_temp_file_that_the_rerun_cleans(
    tmp_path: Path,
) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.16.0"]})
    publish(read_index(out), LocalDirectory(dest), FAST)
    leftover = dest / "files" / f".{wheel_name('six', '1.17.0')}.publish-dead"
    leftover.write_bytes(b"half")
    write_index(out, {"six": ["1.17.0"]})
    publish(read_index(out), LocalDirectory(dest), FAST)
    assert not leftover.exists()
    assert tree(dest) == tree(out)


def test_transient_faults_are_retried_with_the_one_policy(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.16.0"]})
    flaky = Recording(LocalDirectory(dest))
    flaky.transient[f"files/{wheel_name('six', '1.16.0')}"] = 2
    lines: list[str] = []
    options = PublishOptions(jobs=2, backoff=0.001, echo=lines.append)
    result = publish(read_index(out), flaky, options)
    assert result.retries == 2
    assert any("503" in line and "retrying" in line for line in lines)
    assert tree(dest) == tree(out)


def test_transient_faults_that_persist_end_with_one_error_and_a_rerun_hint(
    tmp_path: Path,
) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.16.0"]})
    flaky = Recording(LocalDirectory(dest))
    flaky.transient[f"files/{wheel_name('six', '1.16.0')}"] = 99
    with pytest.raises(PackageIndexError) as caught:
        publish(read_index(out), flaky, PublishOptions(jobs=1, backoff=0.001, attempts=3))
    assert "after 3 attempts" in caught.value.message
    assert "again" in caught.value.hint
    assert not (dest / "imagebot-index.json").exists()


def test_a_file_changed_in_out_after_the_plan_is_refused(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.16.0"]})
    local = read_index(out)
    (out / "files" / wheel_name("six", "1.16.0")).write_bytes(b"tampered")
    with pytest.raises(PackageIndexError, match="changed since it was listed"):
        publish(local, LocalDirectory(dest), PublishOptions(jobs=1))
    assert not (dest / "files" / wheel_name("six", "1.16.0")).exists()
    assert not (dest / "imagebot-index.json").exists()


def test_a_destination_file_changed_by_hand_is_uploaded_again(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.16.0"]})
    publish(read_index(out), LocalDirectory(dest), FAST)
    page = dest / "simple" / "six" / "index.html"
    page.write_text("defaced")
    os.utime(page, ns=(1, 1))
    result = publish(read_index(out), LocalDirectory(dest), FAST)
    assert result.changed == ("simple/six/index.html",)
    assert tree(dest) == tree(out)


def test_a_corrupt_hash_record_only_costs_hashing_again(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.16.0"]})
    publish(read_index(out), LocalDirectory(dest), FAST)
    (dest / HASHES_NAME).write_text("{not json")
    assert not publish(read_index(out), LocalDirectory(dest), FAST).touched


def test_a_destination_holding_other_objects_is_refused_untouched(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.16.0"]})
    (dest / "docs").mkdir(parents=True)
    (dest / "docs" / "report.pdf").write_bytes(b"keep me")
    with pytest.raises(PackageIndexError, match="no part of an index"):
        publish(read_index(out), LocalDirectory(dest), FAST)
    assert tree(dest) == {"docs/report.pdf": b"keep me"}


def test_to_json_is_the_whole_result(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_index(out, {"six": ["1.16.0"]})
    document = publish(read_index(out), LocalDirectory(dest), FAST).to_json()
    assert document["destination"] == str(dest)
    assert document["index_changes"]["versions_added"] == ["six==1.16.0"]  # type: ignore[index]
    assert {"added", "changed", "removed", "unchanged", "seconds"} <= set(document)


def test_an_empty_cache_is_seeded_with_the_published_manifest_only(tmp_path: Path) -> None:
    from imagebot.destinations import index_cache_dir, seed_from_published

    out, dest, cache = tmp_path / "out", tmp_path / "dest", tmp_path / "cache"
    assert not seed_from_published(cache, str(dest), tmp_path)  # nothing published yet
    write_index(out, {"six": ["1.16.0"]})
    publish(read_index(out), LocalDirectory(dest), FAST)
    assert seed_from_published(cache, str(dest), tmp_path)
    assert sorted(p.name for p in cache.iterdir()) == ["imagebot-index.json"]
    assert (cache / "imagebot-index.json").read_bytes() == (
        out / "imagebot-index.json"
    ).read_bytes()
    assert not seed_from_published(cache, str(dest), tmp_path)  # never over a cache
    assert index_cache_dir({"IMAGEBOT_INDEX_CACHE": "/c"}) == Path("/c")
    assert index_cache_dir({"HOME": "/h"}) == Path("/h/.cache/imagebot/index")
    assert index_cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/x/imagebot/index")


def test_a_foreign_published_manifest_seeds_nothing(tmp_path: Path) -> None:
    from imagebot.destinations import seed_from_published

    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "imagebot-index.json").write_text('{"generated_by": "someone"}')
    assert not seed_from_published(tmp_path / "cache", str(dest), tmp_path)
    assert not (tmp_path / "cache").exists()
