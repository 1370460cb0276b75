"""The vetted CRAN-like repository: DCF, versions, the closure and layout (imagebot.cran), and
OUT/cran written by `build_index` from a fake upstream (imagebot.cran_upstream)."""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from pathlib import Path

import pytest
from http_fixtures import serve_files
from index_fixtures import TARGET

from imagebot.cran import (
    Available,
    Dependency,
    RPackage,
    RRoot,
    closure,
    cran_url,
    layout,
    packages_from_dcf,
    parse_dcf,
    parse_dependencies,
    same_r_version,
    version_key,
    write_dcf,
)
from imagebot.cran_upstream import DEFAULT_R_USER_AGENT, verify
from imagebot.cranlock import cran_lock_inputs, format_cran_lock, parse_cran_lock
from imagebot.errors import PackageIndexError, StaleError
from imagebot.index import BuildResult, CranInputs, IndexBuildOptions, NoProgress, build_index
from imagebot.index_pages import MANIFEST_NAME, manifest_from_json, manifest_to_json
from imagebot.render import rprofile_site

# --- DCF ----------------------------------------------------------------------------------------


def test_dcf_round_trip_folds_continuation_lines() -> None:
    text = (
        "Package: here\nVersion: 1.0.1\nImports: rprojroot (>= 2.0.2),\n    methods\n"
        "MD5sum: 67367162e286ae95c06abb6e7d70dd75\n\nPackage: R6\nVersion: 2.5.1\n"
        "MD5sum: 470851b6d5d0ac559e9d01bb352b4021\n"
    )
    stanzas = parse_dcf(text, "PACKAGES")
    assert stanzas[0]["Imports"] == "rprojroot (>= 2.0.2), methods"
    assert parse_dcf(write_dcf(stanzas), "again") == stanzas


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("  continued\nPackage: x\n", "continuation line before any field"),
        ("Package x\n", "not a 'Field: value' line"),
        ("Package: a\nPackage: b\n", "field 'Package' twice"),
    ],
)
def test_bad_dcf_is_one_error_with_the_line(text: str, what: str) -> None:
    with pytest.raises(PackageIndexError, match=what):
        parse_dcf(text, "up/PACKAGES")


@pytest.mark.parametrize(
    "value", ["a\nMD5sum: 00000000000000000000000000000000", "a\rb", "a\x00b", "a\u2028b"]
)
def test_a_value_that_would_add_fields_is_never_written(value: str) -> None:
    with pytest.raises(PackageIndexError, match="refusing to write"):
        write_dcf([{"Package": "x", "License": value}])


def test_packages_need_valid_names_versions_and_an_md5() -> None:
    good = "Package: R6\nVersion: 2.5.1\nMD5sum: 470851b6d5d0ac559e9d01bb352b4021\n"
    assert packages_from_dcf(good, "P", "https://up")[0].filename == "R6_2.5.1.tar.gz"
    for bad in (
        good.replace("R6", "../R6"),
        good.replace("2.5.1", "2.5.1; rm"),
        good.replace("MD5sum: 4708", "MD5sum: zz08"),
        "Package: R6\nVersion: 2.5.1\n",
    ):
        with pytest.raises(PackageIndexError):
            packages_from_dcf(bad, "P")


# --- versions and dependencies -------------------------------------------------------------------


def test_r_versions_compare_as_package_version() -> None:
    assert version_key("1.1-0") == version_key("1.1.0") < version_key("1.10.0")
    assert same_r_version("1.14-8", "1.14.8")
    assert Dependency("R6", ">=", "2.4.0").allows("2.5.1")
    assert not Dependency("R6", "<", "2.5").allows("2.5.1")


def test_dependencies_parse_and_refuse_garbage() -> None:
    deps = parse_dependencies("R (>= 3.5.0), methods,R6(>= 2.2.0) , ", "x")
    assert [str(d) for d in deps] == ["R (>= 3.5.0)", "methods", "R6 (>= 2.2.0)"]
    with pytest.raises(PackageIndexError, match="is not 'name'"):
        parse_dependencies("R6 (>= 2.2.0); system('x')", "x")


def pkg(name: str, version: str, imports: str = "", repository: str = "https://up") -> RPackage:
    fields = {"Package": name, "Version": version, "Imports": imports} if imports else {}
    return RPackage(name, version, hashlib.md5(f"{name}{version}".encode()).hexdigest(), fields,
                    repository)  # fmt: skip


def test_closure_follows_imports_not_base_recommended_or_suggests() -> None:
    here = RPackage(
        "here",
        "1.0.1",
        "0" * 32,
        {
            "Depends": "R (>= 3.0)",
            "Imports": "rprojroot (>= 2.0.2), methods, Matrix",
            "Suggests": "testthat",
        },
    )
    available = Available.from_upstreams([[here, pkg("rprojroot", "2.0.3"), pkg("testthat", "3")]])
    found = closure([RRoot("here", "1.0.1", "rcran", "r", "@a")], available)
    assert [p.name for p in found["here==1.0.1"]] == ["here", "rprojroot"]


def test_dependency_takes_a_vetted_version_else_the_current_one() -> None:
    available = Available.from_upstreams(
        [[pkg("aa", "1.0", "bb (>= 1.0)"), pkg("bb", "2.0")], [pkg("bb", "1.5")]]
    )
    only_a = closure([RRoot("aa", "1.0", "s", "r", "@a")], available)
    assert [(p.name, p.version) for p in only_a["aa==1.0"]] == [("aa", "1.0"), ("bb", "2.0")]
    roots = [RRoot("aa", "1.0", "s", "r", "@a"), RRoot("bb", "1.5", "index-only", "r", "@b")]
    both = closure(roots, available)
    assert [(p.name, p.version) for p in both["aa==1.0"]] == [("aa", "1.0"), ("bb", "1.5")]


def test_unmet_constraint_and_missing_version_name_the_root() -> None:
    available = Available.from_upstreams([[pkg("aa", "1.0", "bb (>= 3.0)"), pkg("bb", "2.0")]])
    with pytest.raises(
        PackageIndexError, match=r"aa==1.0 .*needs bb \(>= 3.0\); the upstream has 2.0"
    ):
        closure([RRoot("aa", "1.0", "s", "r", "@a")], available)
    with pytest.raises(
        PackageIndexError, match=r"aa==0.9 .*not in the CRAN upstream \(it has 1.0\)"
    ):
        closure([RRoot("aa", "0.9", "s", "r", "@a")], available)


def test_layout_puts_older_versions_under_archive() -> None:
    available = Available.from_upstreams([[pkg("R6", "2.6.1")], [pkg("R6", "2.5.1")]])
    roots = [
        RRoot("R6", "2.6.1", "index-only", "r", "@a"),
        RRoot("R6", "2.5.1", "index-only", "r", "@b"),
    ]
    rows = layout(roots, closure(roots, available))
    assert [(p.version, path, current) for p, path, current, *_ in rows] == [
        ("2.5.1", "src/contrib/Archive/R6/R6_2.5.1.tar.gz", False),
        ("2.6.1", "src/contrib/R6_2.6.1.tar.gz", True),
    ]


def test_cran_url_and_site_profile() -> None:
    assert cran_url("https://bucket.example/vetted/simple/") == "https://bucket.example/vetted/cran"
    lines = rprofile_site("https://bucket.example/cran", "https://ask.example")
    assert (
        lines[0]
        == "# Only vetted packages are served by https://bucket.example/cran. Ask for one at https://ask.example"
    )
    assert '  options(repos = c(CRAN = "https://bucket.example/cran"))' in lines


# --- OUT/cran through build_index, with a fake upstream ----------------------------------------


class FakeCran:
    """A CRAN-like upstream in memory: PACKAGES from the bodies, downloads checked by MD5."""

    def __init__(self, url: str, bodies: dict[tuple[str, str, str], bytes]) -> None:
        self.url = url
        self.bodies = bodies  # (name, version, imports) -> tarball bytes
        self.served: dict[str, bytes] = {}
        self.requests = 0
        self.downloads: list[str] = []
        self._lock = threading.Lock()

    def packages(self) -> list[RPackage]:
        stanzas = []
        for (name, version, imports), body in self.bodies.items():
            stanza = {"Package": name, "Version": version}
            if imports:
                stanza["Imports"] = imports
            stanza["MD5sum"] = hashlib.md5(body).hexdigest()
            stanzas.append(stanza)
            self.served[f"{name}_{version}.tar.gz"] = body
        return packages_from_dcf(write_dcf(stanzas), f"{self.url}/PACKAGES", self.url)

    def download(self, package: RPackage, dest: Path) -> tuple[str, int]:
        with self._lock:
            self.downloads.append(package.filename)
        dest.write_bytes(self.served[package.filename])
        return verify(package, dest)


def r_inputs(tamper: str = "") -> tuple[CranInputs, FakeCran, FakeCran]:
    current = FakeCran(
        "https://ppm.example/cran/2025-10-01",
        {
            ("R6", "2.6.1", ""): b"R6 2.6.1",
            ("here", "1.0.1", "rprojroot (>= 2.0.2)"): b"here 1.0.1",
            ("rprojroot", "2.0.3", ""): b"rprojroot 2.0.3",
        },
    )
    old = FakeCran("https://ppm.example/cran/2023-01-01", {("R6", "2.5.1", ""): b"R6 2.5.1"})
    current.packages()
    if tamper:
        current.served[tamper] = b"something else"
        current.packages = lambda: _keep_served(current)  # type: ignore[method-assign]
    roots = [
        RRoot("R6", "2.6.1", "index-only", "classes", "@a"),
        RRoot("R6", "2.5.1", "index-only", "old project", "@b"),
        RRoot("here", "1.0.1", "rcran", "paths", "@c"),
    ]
    return locked(roots, [current, old]), current, old


def locked(roots: list[RRoot], upstreams: list[FakeCran]) -> CranInputs:
    """The inputs with the requirements/cran.lock that `imagebot lock` writes for them."""
    listed = [upstream.packages() for upstream in upstreams]
    inputs = cran_lock_inputs(roots, [u.url for u in upstreams], DEFAULT_R_USER_AGENT)
    text = format_cran_lock(roots, closure(roots, Available.from_upstreams(listed)), inputs)
    return CranInputs(roots, upstreams, parse_cran_lock(text, "cran.lock"))


def _keep_served(upstream: FakeCran) -> list[RPackage]:
    """PACKAGES as before, while one served body was swapped (a tampered mirror)."""
    served = dict(upstream.served)
    listed = FakeCran.packages(upstream)
    upstream.served = served
    return listed


def build_r(out: Path, cran: CranInputs) -> BuildResult:
    return build_index(
        out, [], TARGET, None, None, NoProgress(), IndexBuildOptions(jobs=4), None, cran
    )  # type: ignore[arg-type]


def test_build_writes_packages_archive_and_the_manifest(tmp_path: Path) -> None:
    cran, current, old = r_inputs()
    result = build_r(tmp_path / "out", cran)
    contrib = tmp_path / "out" / "cran" / "src" / "contrib"
    packages = (contrib / "PACKAGES").read_text()
    assert packages.startswith("Package: R6\nVersion: 2.6.1\nMD5sum: ")
    assert "Package: here\nVersion: 1.0.1\nImports: rprojroot (>= 2.0.2)\nMD5sum: " in packages
    assert gzip.decompress((contrib / "PACKAGES.gz").read_bytes()).decode() == packages
    assert (contrib / "Archive" / "R6" / "R6_2.5.1.tar.gz").read_bytes() == b"R6 2.5.1"
    assert result.r_packages == 4 and result.r_downloaded == 4
    manifest = manifest_from_json((tmp_path / "out" / MANIFEST_NAME).read_text(), "m")
    assert {
        p.package.version: p.current for p in manifest.r.packages if p.package.name == "R6"
    } == {
        "2.6.1": True,
        "2.5.1": False,
    }
    rprojroot = manifest.r.versions("rprojroot")["2.0.3"]
    assert (rprojroot.vetted_in, rprojroot.dependency_of) == ((), ("here==1.0.1",))
    assert manifest_from_json(manifest_to_json(manifest), "again") == manifest
    raw = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert raw["r"]["upstreams"] == [current.url, old.url]


def test_rebuild_reuses_files_that_match_the_upstream_md5_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build_r(out, r_inputs()[0])
    kept = out / "cran" / "src" / "contrib" / "here_1.0.1.tar.gz"
    kept.write_bytes(b"replaced in OUT")  # OUT is not trusted
    cran, current, old = r_inputs()
    result = build_r(out, cran)
    assert current.downloads == ["here_1.0.1.tar.gz"] and old.downloads == []
    assert (result.r_reused, result.r_downloaded) == (3, 1)
    assert kept.read_bytes() == b"here 1.0.1"


def test_a_tampered_upstream_file_fails_the_build_and_leaves_out_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build_r(out, r_inputs()[0])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "cran" / "src" / "contrib" / "here_1.0.1.tar.gz").unlink()
    before.pop(out / "cran" / "src" / "contrib" / "here_1.0.1.tar.gz")
    with pytest.raises(PackageIndexError, match=r"here_1.0.1.tar.gz .*does not match the MD5sum"):
        build_r(out, r_inputs(tamper="here_1.0.1.tar.gz")[0])
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_build_serves_the_locked_versions_not_the_upstreams_current_ones(tmp_path: Path) -> None:
    cran, current, old = r_inputs()
    newer = FakeCran(
        current.url,
        {**current.bodies, ("rprojroot", "2.1.0", ""): b"rprojroot 2.1.0"},
    )  # the upstream moved on after the lock; it still lists the locked 2.0.3
    result = build_r(tmp_path / "out", CranInputs(cran.roots, [newer, old], cran.lock))
    contrib = tmp_path / "out" / "cran" / "src" / "contrib"
    assert sorted(p.name for p in contrib.rglob("*.tar.gz")) == [
        "R6_2.5.1.tar.gz",
        "R6_2.6.1.tar.gz",
        "here_1.0.1.tar.gz",
        "rprojroot_2.0.3.tar.gz",
    ]
    assert result.r_packages == 4 and "rprojroot_2.1.0.tar.gz" not in newer.downloads


def test_an_upstream_md5_that_contradicts_the_lock_is_refused(tmp_path: Path) -> None:
    cran, current, old = r_inputs()
    republished = FakeCran(
        current.url, {**current.bodies, ("here", "1.0.1", "rprojroot (>= 2.0.2)"): b"other bytes"}
    )
    with pytest.raises(
        PackageIndexError, match=r"here==1.0.1: .*MD5sum [0-9a-f]{32}, cran.lock has"
    ):
        build_r(tmp_path / "out", CranInputs(cran.roots, [republished, old], cran.lock))
    assert republished.downloads == [] and list(tmp_path.iterdir()) == []


def test_a_locked_version_the_upstream_no_longer_lists_is_refused(tmp_path: Path) -> None:
    cran, current, _old = r_inputs()
    empty_old = FakeCran("https://ppm.example/cran/2023-01-01", {})
    with pytest.raises(PackageIndexError, match=r"R6==2.5.1 \(locked in cran.lock\) is no longer"):
        build_r(tmp_path / "out", CranInputs(cran.roots, [current, empty_old], cran.lock))
    assert list(tmp_path.iterdir()) == []


def test_vetted_r_without_a_lock_is_refused(tmp_path: Path) -> None:
    cran, current, old = r_inputs()
    with pytest.raises(StaleError, match=r"cran.lock \(missing\)"):
        build_r(tmp_path / "out", CranInputs(cran.roots, [current, old]))
    assert current.downloads == [] and not (tmp_path / "out").exists()


def test_vetted_r_without_an_upstream_is_one_error(tmp_path: Path) -> None:
    cran = CranInputs([RRoot("R6", "2.6.1", "index-only", "r", "@a")], [])
    with pytest.raises(PackageIndexError, match="no CRAN-like upstream is configured"):
        build_r(tmp_path / "out", cran)
    assert not (tmp_path / "out").exists()


def test_archive_rds_is_deterministic_gzip_of_an_xdr_rds() -> None:
    from imagebot.cran import archive_rds

    rows = {"R6": [("R6/R6_2.4.0.tar.gz", 10), ("R6/R6_2.5.1.tar.gz", 20)]}
    data = archive_rds(rows)
    assert data == archive_rds(rows)
    body = gzip.decompress(data)
    assert body.startswith(b"X\n\x00\x00\x00\x02") and b"R6/R6_2.4.0.tar.gz" in body
    assert b"row.names" in body and b"data.frame" in body


def test_loaders_give_every_vetted_version_python_and_r(tmp_path: Path) -> None:
    from imagebot.index import load_r_roots, load_roots

    req = tmp_path / "requirements"
    req.mkdir()
    (req / "base.toml").write_text(
        '[python]\nsix = { version = "1.17.0", reason = "r", requested_by = "@a" }\n'
    )
    (req / "rcran.toml").write_text(
        '[set]\nr_source = "cran"\n\n[r]\nhere = { version = "1.0.1", reason = "r", requested_by = "@a" }\n'
    )
    (req / "rdeb.toml").write_text(
        '[r]\ndata.table = { version = "1.14.8", reason = "r", requested_by = "@a" }\n'
    )
    (req / "index-only.toml").write_text(
        '[python]\n"six==1.16.0" = { reason = "old", requested_by = "@b" }\n'
        'tabulate = { version = "0.9.0", reason = "r", requested_by = "@a" }\n'
        '"tabulate==0.8.10" = { reason = "old", requested_by = "@b" }\n\n'
        '[r]\nR6 = { version = "2.6.1", reason = "r", requested_by = "@a" }\n'
        '"R6==2.5.1" = { reason = "old", requested_by = "@b" }\n'
    )
    assert [(r.key, r.version, r.source, r.requested_by) for r in load_roots(req)] == [
        ("six", "1.17.0", "base", "@a"),
        ("six", "1.16.0", "index-only", "@b"),
        ("tabulate", "0.9.0", "index-only", "@a"),
        ("tabulate", "0.8.10", "index-only", "@b"),
    ]
    assert [(r.name, r.version, r.source) for r in load_r_roots(req)] == [
        ("here", "1.0.1", "rcran"),
        ("R6", "2.6.1", "index-only"),
        ("R6", "2.5.1", "index-only"),
    ]


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("cran/src/contrib/R6_2.6.1.tar.gz", "file"),
        ("cran/src/contrib/data.table_1.14-8.tar.gz", "file"),
        ("cran/src/contrib/Archive/R6/R6_2.5.1.tar.gz", "file"),
        ("cran/src/contrib/PACKAGES", "index"),
        ("cran/src/contrib/PACKAGES.gz", "index"),
        ("cran/src/contrib/Meta/archive.rds", "index"),
        ("cran/src/contrib/Archive/here/R6_2.5.1.tar.gz", None),
        ("cran/src/contrib/PACKAGES.rds", None),
        ("cran/src/contrib/../x_1.0.tar.gz", None),
        ("cran/src/contrib/.R6_2.6.1.tar.gz", None),
        ("cran/index.html", None),
    ],
)
def test_repository_objects_and_their_publish_order(key: str, kind: str | None) -> None:
    from imagebot.cran import repository_object
    from imagebot.publish import Phase, phase_of

    assert repository_object(key) == kind
    expected = {None: None, "file": Phase.FILES, "index": Phase.ROOT}[kind]
    assert phase_of(key) == expected


def test_upstream_adapter_reads_archive_retries_and_verifies(tmp_path: Path) -> None:
    """CranUpstream over real HTTP: PACKAGES.gz, a version only under Archive/, a 503 retried."""
    import http.server

    from imagebot.cran_upstream import CranUpstream

    body = b"R6 2.5.1 tarball"
    md5 = hashlib.md5(body).hexdigest()
    served = {
        "/cran/src/contrib/PACKAGES.gz": gzip.compress(
            f"Package: R6\nVersion: 2.5.1\nMD5sum: {md5}\n".encode()
        ),
        "/cran/src/contrib/Archive/R6/R6_2.5.1.tar.gz": body,
    }
    failures = {"/cran/src/contrib/PACKAGES.gz": 1}
    seen: list[tuple[str, str]] = []

    def record(handler: http.server.BaseHTTPRequestHandler) -> None:
        seen.append((handler.path, handler.headers.get("User-Agent", "")))

    with serve_files(served, failures=failures, on_request=record) as host:
        upstream = CranUpstream(f"http://{host}/cran", "R (4.2.2 test)", backoff=0)
        (package,) = upstream.packages()
        sha256, size = upstream.download(package, tmp_path / "R6.tar.gz")
    assert (sha256, size) == (hashlib.sha256(body).hexdigest(), len(body))
    assert [path for path, _ in seen] == [
        "/cran/src/contrib/PACKAGES.gz",
        "/cran/src/contrib/PACKAGES.gz",
        "/cran/src/contrib/R6_2.5.1.tar.gz",
        "/cran/src/contrib/Archive/R6/R6_2.5.1.tar.gz",
    ]
    assert {agent for _, agent in seen} == {"R (4.2.2 test)"}
