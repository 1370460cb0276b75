"""The vetted index's pure core (imagebot.index_pages): tags, wheel selection, pages, the
manifest, closures and the planning of an incremental build."""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
from index_fixtures import TARGET, dist

from imagebot.errors import PackageIndexError, RequirementsError
from imagebot.index_pages import (
    DistFile,
    IndexedPackage,
    IndexManifest,
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
    pins_to_index,
    platform_tags,
    previous_releases,
    render_pages,
    render_project_html,
    render_project_json,
    reusable_manifest,
    select_file,
    target_tags,
    unresolved_roots,
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
    packages = [
        indexed("six", "1.17.0", "six-1.17.0-py3-none-any.whl"),
        indexed("six", "1.16.0", "six-1.16.0-py2.py3-none-any.whl"),
    ]
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
    manifest = IndexManifest(
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


# --- planning an incremental build ------------------------------------------------------------


def test_a_previous_manifest_carries_over_only_for_the_same_target() -> None:
    roots, closures = roots_and_closures()
    previous = IndexManifest(TARGET, tuple(roots), closures, ())
    assert reusable_manifest(previous, TARGET) is previous
    assert reusable_manifest(previous, Target("3.12", TARGET.platform)) is None
    assert reusable_manifest(None, TARGET) is None


def test_only_roots_the_previous_build_did_not_resolve_are_resolved() -> None:
    roots, closures = roots_and_closures()
    added = Root("idna", "3.10", "index-only", "urls", "@c")
    previous = IndexManifest(TARGET, tuple(roots), closures, ())
    assert unresolved_roots([*roots, added], previous) == [added]
    assert unresolved_roots([*roots, added], None) == [*roots, added]


def test_previous_releases_offer_the_file_each_pin_had() -> None:
    package = indexed("six", "1.17.0", "six-1.17.0-py3-none-any.whl")
    previous = IndexManifest(TARGET, (), {}, (package,))
    assert previous_releases(previous) == {
        Pin("six", "1.17.0"): Release("six", "1.17.0", (package.file,))
    }
    assert previous_releases(None) == {}


def test_pins_to_index_join_closures_and_layer_locks_once_each_sorted() -> None:
    six, idna = Pin("six", "1.17.0"), Pin("idna", "3.10")
    assert pins_to_index({"a==1": (six,), "b==1": (six, idna)}, {"base": [six]}) == [idna, six]
