"""The vetted index: pure parts (tags, selection, pages, manifest, planning) and the build
orchestration against fakes (no network, no uv)."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from imagebot.errors import PackageIndexError, RequirementsError
from imagebot.index import BuildOptions, NoProgress, build_index, make_server, summarize_uv_error
from imagebot.index_pages import (
    MANIFEST_NAME,
    DistFile,
    IndexedPackage,
    Locked,
    Manifest,
    Pin,
    Release,
    Root,
    Target,
    collect_roots,
    image_target,
    index_packages,
    manifest_from_json,
    manifest_to_json,
    manifest_url,
    parse_compiled,
    parse_platform,
    parse_pylock,
    platform_tags,
    render_pages,
    render_project_html,
    render_project_json,
    select_file,
    target_tags,
)
from imagebot.pypi import release_from_simple_json

TARGET = Target("3.11", "x86_64-manylinux_2_36")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dist(filename: str, data: bytes = b"", requires_python: str | None = None) -> DistFile:
    body = data or filename.encode()
    return DistFile(
        filename, f"https://files.example/{filename}", sha(body), len(body), requires_python
    )


# --- tags and selection ------------------------------------------------------------------------


def test_platform_tags_cover_glibc_down_to_manylinux1_with_legacy_aliases() -> None:
    tags = platform_tags("x86_64-manylinux_2_36")
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux2014_x86_64" in tags and "manylinux1_x86_64" in tags
    assert tags.index("manylinux_2_17_x86_64") < tags.index("manylinux2014_x86_64")
    assert all("aarch64" not in t for t in tags)


@pytest.mark.parametrize("platform", ["linux", "x86_64-musllinux_1_2", "manylinux_2_36"])
def test_unsupported_platform_names_the_value(platform: str) -> None:
    with pytest.raises(PackageIndexError, match=platform):
        parse_platform(platform)


def test_target_tags_accept_cp311_abi3_and_pure_wheels_only() -> None:
    tags = target_tags(TARGET)
    assert "cp311-cp311-manylinux_2_17_x86_64" in tags
    assert "cp38-abi3-manylinux2014_x86_64" in tags
    assert "py3-none-any" in tags
    assert "cp312-cp312-manylinux_2_17_x86_64" not in tags
    assert "cp311-cp311-musllinux_1_2_x86_64" not in tags
    assert "cp311-cp311-manylinux_2_17_aarch64" not in tags
    assert "cp311-cp311-macosx_11_0_arm64" not in tags
    assert tags["cp311-cp311-manylinux_2_28_x86_64"] < tags["cp311-cp311-manylinux_2_17_x86_64"]
    assert tags["cp311-cp311-manylinux_2_17_x86_64"] < tags["py3-none-any"]


def release(name: str, version: str, *files: DistFile, yanked: bool = False) -> Release:
    return Release(
        name, version, tuple(files), yanked=yanked, yanked_reason="broken" if yanked else ""
    )


def test_select_file_picks_the_wheel_pip_would_pick() -> None:
    files = (
        dist("numpy-2.3.4.tar.gz"),
        dist("numpy-2.3.4-cp311-cp311-macosx_14_0_arm64.whl"),
        dist("numpy-2.3.4-cp311-cp311-musllinux_1_2_x86_64.whl"),
        dist("numpy-2.3.4-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"),
        dist("numpy-2.3.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
        dist("numpy-2.3.4-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"),
    )
    chosen = select_file(release("numpy", "2.3.4", *files), TARGET, target_tags(TARGET))
    assert (
        chosen.filename == "numpy-2.3.4-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
    )


def test_select_file_skips_wheels_whose_requires_python_excludes_the_target() -> None:
    files = (dist("pkg-1.0-py3-none-any.whl", requires_python=">=3.12"),)
    with pytest.raises(PackageIndexError, match=r"pkg==1.0 has no wheel for Python 3.11"):
        select_file(release("pkg", "1.0", *files), TARGET, target_tags(TARGET))


def test_sdist_only_release_is_refused_naming_the_package_and_files() -> None:
    with pytest.raises(PackageIndexError) as caught:
        select_file(
            release("oldpkg", "0.1", dist("oldpkg-0.1.tar.gz")), TARGET, target_tags(TARGET)
        )
    assert "oldpkg==0.1" in caught.value.message
    assert "PyPI has an sdist)" in caught.value.message
    assert "wheel" in caught.value.hint


def test_wheels_for_another_platform_only_are_refused() -> None:
    files = (
        dist("fast-1.0-cp311-cp311-win_amd64.whl"),
        dist("fast-1.0-cp311-cp311-macosx_11_0_arm64.whl"),
    )
    with pytest.raises(
        PackageIndexError, match=r"fast==1\.0 has no wheel for Python 3\.11 on x86_64"
    ):
        select_file(release("fast", "1.0", *files), TARGET, target_tags(TARGET))


def test_yanked_release_is_refused_with_its_reason() -> None:
    with pytest.raises(PackageIndexError, match=r"bad==1.0 is yanked on PyPI \(broken\)"):
        select_file(
            release("bad", "1.0", dist("bad-1.0-py3-none-any.whl"), yanked=True), TARGET, {}
        )


# --- PyPI's PEP 691 documents -----------------------------------------------------------------


def simple_file(
    filename: str, yanked: bool | str = False, requires: str | None = None
) -> dict[str, object]:
    return {
        "filename": filename,
        "url": f"https://files.example/{filename}",
        "hashes": {"sha256": sha(filename.encode())},
        "size": 10,
        "requires-python": requires,
        "yanked": yanked,
    }


PROJECT = {
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
    found = release_from_simple_json(PROJECT, "1.17.0")
    assert found is not None and not found.yanked
    assert [f.filename for f in found.files] == [
        "six-1.17.0.tar.gz",
        "six-1.17.0-py2.py3-none-any.whl",
    ]
    assert found.files[1].requires_python == ">=2.7"


def test_release_whose_files_are_all_yanked_is_yanked_with_reason() -> None:
    found = release_from_simple_json(PROJECT, "1.16")  # PEP 440: 1.16 == 1.16.0
    assert found is not None and found.yanked and found.yanked_reason == "bad build"


def test_missing_version_is_none() -> None:
    assert release_from_simple_json(PROJECT, "9.9") is None


# --- pages ------------------------------------------------------------------------------------


def test_project_page_links_carry_sha256_and_escaped_requires_python() -> None:
    wheel = dist("six-1.17.0-py2.py3-none-any.whl", requires_python=">=2.7, !=3.0.*")
    page = render_project_html("six", [wheel])
    assert (
        f'<a href="../../files/six-1.17.0-py2.py3-none-any.whl#sha256={wheel.sha256}" '
        'data-requires-python="&gt;=2.7, !=3.0.*">six-1.17.0-py2.py3-none-any.whl</a>'
    ) in page
    assert "data-yanked" not in page
    assert '<meta name="pypi:repository-version" content="1.1">' in page


def test_project_json_is_pep_691() -> None:
    wheel = dist("Six-1.17.0-py2.py3-none-any.whl")
    document = json.loads(render_project_json("Six", [wheel], ["1.17.0"]))
    assert document["meta"] == {"api-version": "1.1"}
    assert document["name"] == "six"
    assert document["versions"] == ["1.17.0"]
    assert document["files"] == [
        {
            "filename": wheel.filename,
            "url": f"../../files/{wheel.filename}",
            "hashes": {"sha256": wheel.sha256},
            "size": wheel.size,
        }
    ]


def indexed(name: str, version: str, filename: str) -> IndexedPackage:
    return IndexedPackage(name, version, dist(filename), ("base",), ())


def test_pages_cover_root_and_every_project_under_normalised_names() -> None:
    pages = render_pages(
        [
            indexed("Python_Dateutil", "2.9.0", "python_dateutil-2.9.0-py3-none-any.whl"),
            indexed("six", "1.16.0", "six-1.16.0-py3-none-any.whl"),
            indexed("six", "1.17.0", "six-1.17.0-py3-none-any.whl"),
        ]
    )
    assert sorted(pages) == [
        "simple/index.html",
        "simple/index.json",
        "simple/python-dateutil/index.html",
        "simple/python-dateutil/index.json",
        "simple/six/index.html",
        "simple/six/index.json",
    ]
    assert '<a href="python-dateutil/">python-dateutil</a>' in pages["simple/index.html"]
    assert json.loads(pages["simple/index.json"])["projects"] == [
        {"name": "python-dateutil"},
        {"name": "six"},
    ]
    assert json.loads(pages["simple/six/index.json"])["versions"] == ["1.16.0", "1.17.0"]
    assert pages["simple/six/index.html"].count("<a ") == 2


def test_rendering_is_deterministic() -> None:
    packages = [indexed("six", "1.17.0", "six-1.17.0-py3-none-any.whl")]
    assert render_pages(packages) == render_pages(list(reversed(packages)))


# --- roots, closures, manifest ----------------------------------------------------------------


def req(name: str, version: str, line: int = 1) -> SimpleNamespace:
    return SimpleNamespace(
        name=name, version=version, reason="why", requested_by="@me", extras=(), line=line
    )


def test_roots_come_from_every_set_and_index_only() -> None:
    roots = collect_roots(
        [("base", [req("jupyterlab", "4.4.0")]), ("ds", [req("pandas", "2.3.3")])],
        [req("pandas", "2.1.4")],
    )
    assert [(r.key, r.version, r.source) for r in roots] == [
        ("jupyterlab", "4.4.0", "base"),
        ("pandas", "2.3.3", "ds"),
        ("pandas", "2.1.4", "index-only"),
    ]


def test_index_only_repeating_a_set_pin_is_a_problem_with_its_line() -> None:
    with pytest.raises(RequirementsError) as caught:
        collect_roots(
            [("ds", [req("Pandas", "2.3.3")])],
            [req("pandas", "2.3.3", line=7)],
            "req/index-only.toml",
        )
    (problem,) = caught.value.problems
    assert problem.line == 7 and "already vetted in set 'ds'" in problem.message


def test_parse_compiled_reads_pins_and_ignores_hashes_comments_and_markers() -> None:
    text = (
        "# header\n"
        "python-dateutil==2.9.0.post0 \\\n"
        "    --hash=sha256:abc\n"
        "    # via pkg\n"
        "Six==1.17.0 ; python_version >= '3'\n"
        "nbconvert[webpdf]==7.16.4\n"
    )
    assert parse_compiled(text) == [
        Pin("python-dateutil", "2.9.0.post0"),
        Pin("six", "1.17.0"),
        Pin("nbconvert", "7.16.4"),
    ]


def roots_and_closures() -> tuple[list[Root], dict[str, tuple[Pin, ...]]]:
    roots = [
        Root("python-dateutil", "2.9.0.post0", "small", "dates", "@a"),
        Root("six", "1.16.0", "index-only", "old projects", "@b"),
    ]
    closures = {
        "python-dateutil==2.9.0.post0": (
            Pin("python-dateutil", "2.9.0.post0"),
            Pin("six", "1.17.0"),
        ),
        "six==1.16.0": (Pin("six", "1.16.0"),),
    }
    return roots, closures


def releases_for(pins: Sequence[Pin]) -> tuple[dict[Pin, Release], dict[Pin, DistFile]]:
    files = {p: dist(f"{p.name.replace('-', '_')}-{p.version}-py3-none-any.whl") for p in pins}
    return {p: Release(p.name, p.version, (files[p],)) for p in pins}, files


def test_index_packages_record_why_each_pin_is_there() -> None:
    roots, closures = roots_and_closures()
    pins = sorted({p for c in closures.values() for p in c})
    packages = index_packages(roots, closures, *releases_for(pins))
    why = {str(p.pin): (p.vetted_in, p.dependency_of) for p in packages}
    assert why == {
        "python-dateutil==2.9.0.post0": (("small",), ()),
        "six==1.16.0": (("index-only",), ()),
        "six==1.17.0": ((), ("python-dateutil==2.9.0.post0",)),
    }


def test_root_matches_its_closure_entry_when_uv_spells_the_version_longer() -> None:
    roots = [Root("six", "1.17", "base", "r", "@a")]
    closures = {"six==1.17": (Pin("six", "1.17.0"),)}
    packages = index_packages(roots, closures, *releases_for([Pin("six", "1.17.0")]))
    assert [(str(p.pin), p.vetted_in) for p in packages] == [("six==1.17.0", ("base",))]


def test_manifest_round_trips_through_json() -> None:
    roots, closures = roots_and_closures()
    pins = sorted({p for c in closures.values() for p in c})
    manifest = Manifest(
        TARGET, tuple(roots), closures, tuple(index_packages(roots, closures, *releases_for(pins)))
    )
    text = manifest_to_json(manifest)
    assert manifest_from_json(text, "m.json") == manifest
    assert manifest_to_json(manifest_from_json(text, "m.json")) == text
    assert set(manifest.versions("SIX")) == {"1.16.0", "1.17.0"}


@pytest.mark.parametrize("text", ["{", "[]", '{"format": 99}', '{"format": 1, "target": {}}'])
def test_unreadable_manifest_is_a_package_index_error(text: str) -> None:
    with pytest.raises(PackageIndexError, match=r"m\.json: not a readable imagebot index manifest"):
        manifest_from_json(text, "m.json")


def test_manifest_url_sits_beside_simple() -> None:
    assert (
        manifest_url("https://b.example/vetted/simple/")
        == "https://b.example/vetted/imagebot-index.json"
    )
    assert (
        manifest_url("http://127.0.0.1:5556/simple") == "http://127.0.0.1:5556/imagebot-index.json"
    )


def test_image_target_is_the_rendered_images_python_and_platform() -> None:
    lab = SimpleNamespace(sets=("base",), python="3.11", platform="x86_64-manylinux_2_36")
    hub = SimpleNamespace(sets=(), python="3.12", platform="aarch64-manylinux_2_28")
    assert image_target([lab, hub]) == TARGET
    other = SimpleNamespace(sets=("r",), python="3.12", platform="x86_64-manylinux_2_36")
    with pytest.raises(PackageIndexError, match="one Python and platform"):
        image_target([lab, other])


def test_uv_error_is_summarised_without_the_resolver_dump() -> None:
    stderr = (
        "  \u00d7 No solution found when resolving dependencies:\n"
        "  \u2570\u2500\u25b6 Because nosuch was not found in the package registry and you require nosuch==1.0,\n"
        "      we can conclude that your requirements are unsatisfiable.\n"
    )
    assert summarize_uv_error(stderr).startswith("Because nosuch was not found")


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

    def closure(self, root: Root, target: Target) -> list[Locked]:
        self.runs += 1
        return [Locked(pin, self.files.get(pin, ())) for pin in self.closures[root.pin]]


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
) -> object:
    return build_index(
        out, roots, TARGET, source, resolver, NoProgress(), BuildOptions(jobs=4, refresh=refresh)
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
    build(out, ROOTS, source, resolver)
    before = snapshot(out)
    source.downloads.clear()
    resolver.runs = 0
    source.metadata_fetches = 0
    result = build(out, ROOTS, source, resolver)
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
    locked = {"small": [Pin("six", "1.17.0"), Pin("idna", "3.10")]}
    build_index(out, ROOTS, TARGET, source, resolver, NoProgress(), locked=locked)
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


PYLOCK = """\
lock-version = "1.0"
created-by = "uv"
requires-python = ">=3.11"

[[packages]]
name = "python-dateutil"
version = "2.9.0.post0"
wheels = [{ url = "https://files.example/packages/ec/python_dateutil-2.9.0.post0-py2.py3-none-any.whl", size = 229892, hashes = { sha256 = "a8b2" } }]

[[packages]]
name = "Overrides"
version = "7.7.0"
marker = "python_full_version < '3.12'"
wheels = [
    { url = "https://files.example/overrides-7.7.0-py3-none-any.whl", size = 17832, hashes = { sha256 = "c7ed" } },
    { url = "https://files.example/overrides-7.7.0-cp311-abi3-manylinux_2_17_x86_64.whl", size = 1, hashes = { md5 = "x" } },
]
"""


def test_parse_pylock_reads_pins_and_wheels() -> None:
    locked = parse_pylock(PYLOCK)
    assert [str(entry.pin) for entry in locked] == [
        "python-dateutil==2.9.0.post0",
        "overrides==7.7.0",
    ]
    assert locked[0].files == (
        DistFile(
            "python_dateutil-2.9.0.post0-py2.py3-none-any.whl",
            "https://files.example/packages/ec/python_dateutil-2.9.0.post0-py2.py3-none-any.whl",
            "a8b2",
            229892,
        ),
    )
    assert [f.filename for f in locked[1].files] == ["overrides-7.7.0-py3-none-any.whl"]
