"""The vetted index build (imagebot.index) against fakes: no network, no uv. Also the local
server and the uv error summary."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from index_fixtures import TARGET, dist, sha

from imagebot.errors import PackageIndexError
from imagebot.index import BuildResult, ImageLocks, IndexBuildOptions, NoProgress, build_index
from imagebot.index_pages import (
    MANIFEST_NAME,
    DistFile,
    Pin,
    Release,
    Root,
    Target,
    manifest_from_json,
)
from imagebot.index_server import make_server
from imagebot.uv import summarize


def test_uv_error_is_summarised_without_the_resolver_dump() -> None:
    stderr = (
        "  \u00d7 No solution found when resolving dependencies:\n"
        "  \u2570\u2500\u25b6 Because nosuch was not found in the package registry and you require nosuch==1.0,\n"
        "      we can conclude that your requirements are unsatisfiable.\n"
    )
    assert summarize(stderr).startswith("Because nosuch was not found")


# --- build orchestration with fakes -----------------------------------------------------------


class FakeSource:
    """An in-memory PyPI: releases by (name, version), file bodies by file name."""

    def __init__(
        self, releases: Mapping[tuple[str, str], Release], bodies: Mapping[str, bytes]
    ) -> None:
        self.releases = dict(releases)
        self.bodies = dict(bodies)
        self.downloads: list[str] = []
        self.lock = threading.Lock()
        self.metadata_fetches = 0

    def release(self, name: str, version: str) -> Release:
        with self.lock:
            self.metadata_fetches += 1
        try:
            return self.releases[(name, version)]
        except KeyError:
            raise PackageIndexError(f"package {name!r} does not exist on PyPI") from None

    def download(self, dist: DistFile, dest: Path) -> None:
        with self.lock:
            self.downloads.append(dist.filename)
        body = self.bodies[dist.filename]
        if sha(body) != dist.sha256:
            raise PackageIndexError(f"{dist.filename}: sha256 does not match")
        dest.write_bytes(body)


class FakeResolver:
    def __init__(self, closures: Mapping[str, Sequence[Pin]]) -> None:
        self.closures = dict(closures)
        self.files: dict[Pin, tuple[DistFile, ...]] = {}  # wheels the resolver reports, if any
        self.runs = 0

    def compile(
        self, inputs: Mapping[str, str], constraints: str, python: str, platform: str
    ) -> str:
        """pylock.toml for the one root in `inputs`, as `uv pip compile --format pylock.toml`."""
        self.runs += 1
        (root,) = [line for text in inputs.values() for line in text.splitlines()]
        return "".join(
            f'[[packages]]\nname = "{pin.name}"\nversion = "{pin.version}"\n'
            + "".join(
                f'[[packages.wheels]]\nurl = "{f.url}"\nsize = {f.size}\n'
                f'hashes = {{ sha256 = "{f.sha256}" }}\n'
                for f in self.files.get(pin, ())
            )
            for pin in self.closures[root]
        )


def universe() -> tuple[FakeSource, FakeResolver]:
    pins = {
        Pin("python-dateutil", "2.9.0.post0"),
        Pin("six", "1.17.0"),
        Pin("six", "1.16.0"),
        Pin("idna", "3.10"),
    }
    releases, bodies = {}, {}
    for pin in pins:
        filename = f"{pin.name.replace('-', '_')}-{pin.version}-py3-none-any.whl"
        body = f"wheel {pin}".encode()
        bodies[filename] = body
        releases[(pin.name, pin.version)] = Release(pin.name, pin.version, (dist(filename, body),))
    resolver = FakeResolver(
        {
            "python-dateutil==2.9.0.post0": [
                Pin("python-dateutil", "2.9.0.post0"),
                Pin("six", "1.17.0"),
            ],
            "six==1.16.0": [Pin("six", "1.16.0")],
            "idna==3.10": [Pin("idna", "3.10")],
            "nosuch==1.0": [Pin("nosuch", "1.0")],
        }
    )
    return FakeSource(releases, bodies), resolver


ROOTS = [
    Root("python-dateutil", "2.9.0.post0", "small", "dates", "@a"),
    Root("six", "1.16.0", "index-only", "old projects", "@b"),
]


def build(
    out: Path,
    roots: Sequence[Root],
    source: FakeSource,
    resolver: FakeResolver,
    refresh: bool = False,
    locks: ImageLocks | None = None,
) -> object:
    options = IndexBuildOptions(jobs=4, refresh=refresh)
    return build_index(out, roots, TARGET, source, resolver, NoProgress(), options, locks)


def vouching_locks(source: FakeSource) -> ImageLocks:
    """Locks whose hashes vouch for every file the source serves (as the image's locks do)."""
    return ImageLocks(
        hashes={
            Pin(name, version): frozenset(f"sha256:{f.sha256}" for f in release.files)
            for (name, version), release in source.releases.items()
        }
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_cold_build_writes_pages_files_and_manifest(tmp_path: Path) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    result = build(out, ROOTS, source, resolver)
    assert sorted(snapshot(out)) == [
        "files/python_dateutil-2.9.0.post0-py3-none-any.whl",
        "files/six-1.16.0-py3-none-any.whl",
        "files/six-1.17.0-py3-none-any.whl",
        MANIFEST_NAME,
        "simple/index.html",
        "simple/index.json",
        "simple/python-dateutil/index.html",
        "simple/python-dateutil/index.json",
        "simple/six/index.html",
        "simple/six/index.json",
    ]
    assert sorted(source.downloads) == sorted(set(source.downloads))  # no file fetched twice
    assert (result.packages, result.downloaded, result.reused) == (3, 3, 0)  # type: ignore[attr-defined]
    manifest = manifest_from_json((out / MANIFEST_NAME).read_text(), "m")
    assert manifest.versions("six")["1.17.0"].dependency_of == ("python-dateutil==2.9.0.post0",)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging left behind
    assert (out / "files").stat().st_mode & 0o755 == 0o755


def test_rebuild_downloads_nothing_and_changes_nothing(tmp_path: Path) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    locks = vouching_locks(source)
    build(out, ROOTS, source, resolver, locks=locks)
    before = snapshot(out)
    source.downloads.clear()
    resolver.runs = 0
    source.metadata_fetches = 0
    result = build(out, ROOTS, source, resolver, locks=locks)
    assert source.downloads == [] and resolver.runs == 0 and source.metadata_fetches == 0
    assert result.reused == 3  # type: ignore[attr-defined]
    assert snapshot(out) == before


def test_adding_a_package_downloads_only_its_new_files(tmp_path: Path) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    build(out, ROOTS, source, resolver)
    source.downloads.clear()
    resolver.runs = 0
    build(out, [*ROOTS, Root("idna", "3.10", "index-only", "urls", "@c")], source, resolver)
    assert source.downloads == ["idna-3.10-py3-none-any.whl"]
    assert resolver.runs == 1
    assert "simple/idna/index.html" in snapshot(out)


def test_removing_a_package_removes_its_files_and_pages(tmp_path: Path) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    build(out, ROOTS, source, resolver)
    build(out, ROOTS[:1], source, resolver)
    assert "files/six-1.16.0-py3-none-any.whl" not in snapshot(out)
    assert "six-1.16.0" not in (out / "simple/six/index.html").read_text()


def test_a_tampered_file_in_out_is_fetched_again(tmp_path: Path) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    build(out, ROOTS, source, resolver)
    (out / "files/six-1.17.0-py3-none-any.whl").write_bytes(b"evil")
    source.downloads.clear()
    build(out, ROOTS, source, resolver)
    assert source.downloads == ["six-1.17.0-py3-none-any.whl"]
    assert (out / "files/six-1.17.0-py3-none-any.whl").read_bytes() == b"wheel six==1.17.0"


def test_refresh_resolves_and_reads_metadata_again(tmp_path: Path) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    build(out, ROOTS, source, resolver)
    resolver.runs = 0
    source.metadata_fetches = 0
    build(out, ROOTS, source, resolver, refresh=True)
    assert resolver.runs == 2 and source.metadata_fetches == 3


def test_unknown_package_leaves_out_as_it_was(tmp_path: Path) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    build(out, ROOTS, source, resolver)
    before = snapshot(out)
    with pytest.raises(PackageIndexError, match="'nosuch' does not exist"):
        build(out, [*ROOTS, Root("nosuch", "1.0", "index-only", "r", "@x")], source, resolver)
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failed_download_leaves_out_as_it_was_and_no_staging(tmp_path: Path) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    build(out, ROOTS[:1], source, resolver)
    before = snapshot(out)
    source.bodies["six-1.16.0-py3-none-any.whl"] = b"tampered upstream"
    with pytest.raises(PackageIndexError, match="sha256 does not match"):
        build(out, ROOTS, source, resolver)
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failed_first_build_creates_no_out(tmp_path: Path) -> None:
    source, resolver = universe()
    with pytest.raises(PackageIndexError):
        build(tmp_path / "out", [Root("nosuch", "1.0", "base", "r", "@x")], source, resolver)
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_is_not_an_index_is_never_replaced(tmp_path: Path) -> None:
    source, resolver = universe()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PackageIndexError, match="not an imagebot index"):
        build(tmp_path, ROOTS, source, resolver)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_another_target_starts_from_scratch(tmp_path: Path) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    build(out, ROOTS, source, resolver)
    resolver.runs = 0
    build_index(out, ROOTS, Target("3.12", TARGET.platform), source, resolver, NoProgress())
    assert resolver.runs == 2


# --- serving ----------------------------------------------------------------------------------


def test_server_answers_html_and_negotiated_pep_691_json(tmp_path: Path) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    build(out, ROOTS, source, resolver)
    server = make_server(out, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/simple/six/") as response:
            assert response.headers["Content-Type"].startswith("text/html")
            assert b"#sha256=" in response.read()
        request = urllib.request.Request(
            f"{base}/simple/six/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.01"},
        )
        with urllib.request.urlopen(request) as response:
            assert response.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
            assert json.load(response)["name"] == "six"
        with urllib.request.urlopen(f"{base}/files/six-1.17.0-py3-none-any.whl") as response:
            assert response.read() == b"wheel six==1.17.0"
    finally:
        server.shutdown()
        server.server_close()


def test_serving_a_directory_that_is_not_an_index_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(PackageIndexError, match="no simple/ directory"):
        make_server(tmp_path, "127.0.0.1", 0)


def test_pins_of_the_image_locks_are_served_and_say_which_layer(tmp_path: Path) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    locks = ImageLocks({"small": [Pin("six", "1.17.0"), Pin("idna", "3.10")]})
    build_index(out, ROOTS, TARGET, source, resolver, NoProgress(), locks=locks)
    manifest = manifest_from_json((out / MANIFEST_NAME).read_text(), "m")
    assert manifest.versions("idna")["3.10"].locked_in == ("small",)
    six = manifest.versions("six")["1.17.0"]
    assert (six.locked_in, six.dependency_of) == (("small",), ("python-dateutil==2.9.0.post0",))
    assert "files/idna-3.10-py3-none-any.whl" in snapshot(out)


def test_a_bad_root_is_reported_with_its_set_before_any_resolution(tmp_path: Path) -> None:
    source, resolver = universe()
    key = ("six", "1.16.0")
    source.releases[key] = Release("six", "1.16.0", source.releases[key].files, yanked=True)
    with pytest.raises(
        PackageIndexError, match=r"six==1\.16\.0 is yanked .*\[vetted in set 'index-only'\]"
    ):
        build(tmp_path / "out", ROOTS, source, resolver)
    assert resolver.runs == 0


def test_a_dependency_without_a_wheel_fails_after_downloads_began_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    build(out, ROOTS[1:], source, resolver)
    before = snapshot(out)
    source.releases[("six", "1.17.0")] = Release("six", "1.17.0", (dist("six-1.17.0.tar.gz"),))
    with pytest.raises(PackageIndexError, match=r"six==1\.17\.0 has no wheel"):
        build(out, ROOTS, source, resolver)
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_plain_progress_prints_one_line_per_download(tmp_path: Path) -> None:
    from imagebot.index import PlainProgress

    lines: list[str] = []
    source, resolver = universe()
    build_index(tmp_path / "out", ROOTS, TARGET, source, resolver, PlainProgress(lines.append))
    assert len(lines) == 3
    assert all(line.startswith("[") and "-py3-none-any.whl (0.0 MB)" in line for line in lines)
    assert lines[-1].startswith("[3/3] ")


def test_wheels_reported_by_the_resolver_need_no_metadata_request(tmp_path: Path) -> None:
    source, resolver = universe()
    six = source.releases[("six", "1.17.0")]
    resolver.files[Pin("six", "1.17.0")] = six.files
    build(tmp_path / "out", ROOTS, source, resolver)
    assert source.metadata_fetches == 2  # the two roots only, checked before resolution
    assert "files/six-1.17.0-py3-none-any.whl" in snapshot(tmp_path / "out")


def test_a_replaced_file_whose_hash_was_written_into_the_manifest_is_fetched_again(
    tmp_path: Path,
) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    build(out, ROOTS, source, resolver, locks=vouching_locks(source))
    name, good, evil = "six-1.17.0-py3-none-any.whl", b"wheel six==1.17.0", b"evil wheel"
    (out / "files" / name).write_bytes(evil)
    manifest = out / MANIFEST_NAME
    manifest.write_text(manifest.read_text().replace(sha(good), sha(evil)))
    source.downloads.clear()
    build(out, ROOTS, source, resolver, locks=vouching_locks(source))
    assert source.downloads == [name]
    assert (out / "files" / name).read_bytes() == good
    assert sha(evil) not in manifest.read_text()


def test_without_a_lock_to_vouch_for_them_reused_files_are_checked_against_upstream(
    tmp_path: Path,
) -> None:
    source, resolver = universe()
    out = tmp_path / "out"
    build(out, ROOTS, source, resolver)
    source.downloads.clear()
    source.metadata_fetches = 0
    result = build(out, ROOTS, source, resolver)
    assert source.downloads == [] and source.metadata_fetches == 3
    assert result.reused == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("manifest", ["{}", "[]", "not json", '{"generated_by": "someone"}'])
def test_a_directory_with_a_manifest_imagebot_did_not_write_is_left_untouched(
    tmp_path: Path, manifest: str
) -> None:
    source, resolver = universe()
    (tmp_path / MANIFEST_NAME).write_text(manifest)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PackageIndexError, match="not an imagebot index"):
        build(tmp_path, ROOTS, source, resolver)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME, "notes.txt"]


def test_an_out_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    source, resolver = universe()
    build(tmp_path / "real", ROOTS, source, resolver)
    before = snapshot(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(PackageIndexError, match="symbolic link"):
        build(tmp_path / "link", ROOTS, source, resolver)
    assert (tmp_path / "link").is_symlink() and snapshot(tmp_path / "real") == before


def test_sigterm_during_downloads_leaves_out_as_it_was_and_no_staging(tmp_path: Path) -> None:
    from imagebot.errors import Interrupted

    source, resolver = universe()
    out = tmp_path / "out"
    build(out, ROOTS[:1], source, resolver)
    before = snapshot(out)

    def interrupted(dist: DistFile, dest: Path) -> None:
        dest.write_bytes(b"half")
        raise Interrupted(15)  # what imagebot.main's SIGTERM handler raises

    source.download = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        build(out, ROOTS, source, resolver)
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_build_result_json_is_every_field_with_out_as_text() -> None:
    result = BuildResult(Path("OUT"), TARGET, 1, 2, 3, 1, 2, 10, 0, 1, 0.5, {"resolve": 0.25})
    assert json.loads(json.dumps(result.to_json())) == {
        "out": "OUT",
        "target": {"python": "3.11", "platform": "x86_64-manylinux_2_36"},
        "roots": 1,
        "packages": 2,
        "files": 3,
        "downloaded": 1,
        "reused": 2,
        "bytes_downloaded": 10,
        "metadata_fetches": 0,
        "resolutions": 1,
        "seconds": 0.5,
        "phases": {"resolve": 0.25},
        "r_packages": 0,
        "r_downloaded": 0,
        "r_reused": 0,
        "r_bytes_downloaded": 0,
    }
