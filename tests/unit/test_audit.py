"""imagebot.audit's R side: what is audited (the R lock with every dependency, the R entries, the
index's R packages, what deployed images run), and the CLI's gate on an R advisory, with a
temporary directory of OSV records (no network)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imagebot.advisories import CRAN, PYPI, Package
from imagebot.config import load_config
from imagebot.cran import Available, RPackage, RRoot, closure
from imagebot.cranlock import format_cran_lock
from tests.unit.conftest import Project, Result

Run = Callable[..., Result]
POSIT = "https://packagemanager.posit.co/cran/2025-11-20"
WAIVERS = "requirements/waivers.toml"


def r_package(name: str, version: str, **fields: str) -> RPackage:
    fields = {"Package": name, "Version": version, "License": "MIT + file LICENSE", **fields}
    return RPackage(name, version, "0" * 32, fields, POSIT)


def r_lock_text() -> str:
    """The R lock for index-only readxl 1.4.1, whose closure brings cellranger and tibble."""
    upstream = [
        r_package("readxl", "1.4.1", Imports="cellranger, tibble (>= 2.0.1), utils"),
        r_package("cellranger", "1.1.0"),
        r_package("tibble", "3.2.1"),
    ]
    roots = [RRoot("readxl", "1.4.1", "index-only", "Excel files", "@kari")]
    available = Available.from_upstreams([upstream])
    return format_cran_lock(roots, closure(roots, available), "sha256:" + "0" * 64)


INDEX_ONLY_R = (
    '[r]\nreadxl = { version = "1.4.1", reason = "Excel files", requested_by = "@kari", '
    'safe_because = "tidyverse, MIT" }\n'
)


def r_record(ident: str, name: str, fixed: str) -> dict[str, Any]:
    """An OSV record for an R package, shaped as osv.dev serves CRAN ones."""
    return {
        "schema_version": "1.6.0",
        "id": ident,
        "modified": "2099-01-02T00:00:00Z",
        "published": "2099-01-01T00:00:00Z",
        "aliases": ["CVE-2099-12345"],
        "summary": f"{name} reads a crafted file outside its directory",
        "affected": [
            {
                "package": {"ecosystem": "CRAN", "name": name},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}
                ],
            }
        ],
    }


def write_records(root: Path, *records: dict[str, Any]) -> Path:
    for record in records:
        name = record["affected"][0]["package"]["name"]
        folder = root / "vulns" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{record['id']}.json").write_text(json.dumps(record), encoding="utf-8")
    return root


@pytest.fixture
def r_project(locked_project: Project) -> Project:
    locked_project.write("requirements/index-only.toml", INDEX_ONLY_R)
    locked_project.write("requirements/cran.lock", r_lock_text())
    return locked_project


def test_every_package_of_the_r_lock_is_audited_dependencies_included(r_project: Project) -> None:
    from imagebot.audit import packages_to_audit

    config = load_config(r_project.config, env={})
    r = [p for p in packages_to_audit(config) if p.ecosystem == CRAN]
    assert r == [
        Package(CRAN, "cellranger", "1.1.0", ("cran.lock",)),
        Package(CRAN, "data.table", "1.14.8", ("extra.toml",)),  # Debian's r-cran-*: its entry
        Package(CRAN, "readxl", "1.4.1", ("index-only.toml", "cran.lock")),
        Package(CRAN, "tibble", "3.2.1", ("cran.lock",)),
    ]


def test_without_an_r_lock_the_r_entries_are_audited(locked_project: Project) -> None:
    from imagebot.audit import packages_to_audit

    locked_project.write("requirements/index-only.toml", INDEX_ONLY_R)
    config = load_config(locked_project.config, env={})
    r = [(p.name, p.origins) for p in packages_to_audit(config) if p.ecosystem == CRAN]
    assert r == [("data.table", ("extra.toml",)), ("readxl", ("index-only.toml",))]


def test_an_unreadable_r_lock_is_stale(r_project: Project) -> None:
    from imagebot.audit import packages_to_audit
    from imagebot.errors import StaleError

    r_project.write("requirements/cran.lock", "Package: readxl\nVersion: 1.4.1\n")
    with pytest.raises(StaleError, match=r"cran\.lock"):
        packages_to_audit(load_config(r_project.config, env={}))


def test_the_index_s_r_packages_are_audited_with_origin_index(r_project: Project) -> None:
    from imagebot.audit import INDEX_ORIGIN, packages_to_audit
    from imagebot.cran import RIndexed, RManifest
    from imagebot.index_pages import IndexManifest, Target

    served = RIndexed(
        r_package("openxlsx", "4.2.5"),
        "src/contrib/openxlsx_4.2.5.tar.gz",
        "a" * 64,
        1,
        (),
        (),
        True,
    )
    manifest = IndexManifest(
        target=Target("3.11", "x86_64-manylinux_2_36"),
        roots=(),
        closures={},
        packages=(),
        r=RManifest(packages=(served,)),
    )
    packages = packages_to_audit(load_config(r_project.config, env={}), manifest)
    assert Package(CRAN, "openxlsx", "4.2.5", (INDEX_ORIGIN,)) in packages


def test_deployed_images_r_packages_are_audited(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imagebot.manifest
    import imagebot.promote
    from imagebot.audit import deployed_packages
    from imagebot.manifest import ImagePackages

    monkeypatch.setattr(
        imagebot.promote, "current_refs", lambda config, name, env: {"lab": f"reg/lab@{name}"}
    )
    monkeypatch.setattr(
        imagebot.manifest,
        "read_manifest",
        lambda config, ref, env: ImagePackages(
            ref, {"python": {"numpy": "2.4.6"}, "r": {"readxl": "1.4.1"}, "dpkg": {"bash": "5"}}
        ),
    )
    config = load_config(project.config, env={})
    assert deployed_packages(config, ["staging"], {}) == [
        Package(CRAN, "readxl", "1.4.1", ("staging:lab",)),
        Package(PYPI, "numpy", "2.4.6", ("staging:lab",)),
    ]  # dpkg is not audited: OSV's Debian records are per release, not per image


def test_an_r_dependency_with_an_advisory_fails_the_audit_until_waived(
    r_project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    monkeypatch.chdir(r_project.root)
    write_records(r_project.path("osv"), r_record("RSEC-2099-7", "cellranger", "1.1-1"))
    failed = run_cli("--config", r_project.config, "audit", "--source", "osv", "--json")
    assert failed.code == 15, failed.err
    assert failed.error_lines == ["error: 1 known vulnerability not waived"]
    assert (
        "cellranger==1.1.0 (cran.lock): RSEC-2099-7 (CVE-2099-12345), fixed in 1.1-1" in failed.err
    )
    (finding,) = json.loads(failed.out)["findings"]
    assert (finding["ecosystem"], finding["name"], finding["origins"]) == (
        "CRAN",
        "cellranger",
        ["cran.lock"],
    )

    r_project.write(
        WAIVERS,
        '[r]\n"CVE-2099-12345" = { package = "cellranger", reason = "no untrusted files", '
        'approved_by = "@platform-team", expires = 2099-01-01 }\n',
    )
    waived = run_cli("--config", r_project.config, "audit", "--source", "osv")
    assert waived.code == 0, waived.err
    assert "waived cellranger==1.1.0 (cran.lock): RSEC-2099-7" in waived.err


def test_a_python_waiver_does_not_waive_the_r_package_of_the_same_name(
    r_project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    monkeypatch.chdir(r_project.root)
    write_records(r_project.path("osv"), r_record("RSEC-2099-7", "cellranger", "1.1-1"))
    r_project.write(
        WAIVERS,
        '[python]\n"RSEC-2099-7" = { package = "cellranger", reason = "x", '
        'approved_by = "@platform-team", expires = 2099-01-01 }\n',
    )
    result = run_cli("--config", r_project.config, "audit", "--source", "osv")
    assert result.code == 15, result.err
    assert "matches no finding" in result.err


# The R Consortium's R advisory database keeps records as vulns/<package>/RSEC-*.yaml; this is
# the shape of RSEC-2023-1 (readxl's bundled libxls), details shortened.
RSEC_2023_1 = """\
id: RSEC-2023-1
details: The readxl R package has been found susceptible to vulnerabilities due to its
  dependency on libxls library version 1.4.0.
affected:
- package:
    name: readxl
    ecosystem: CRAN
  ranges:
  - type: ECOSYSTEM
    events:
    - introduced: 0.1.0
    - fixed: 1.3.0
  versions:
  - 0.1.0
  - 0.1.1
  - 1.0.0
  - 1.1.0
  - 1.2.0
aliases:
- CVE-2018-20450
- CVE-2018-20452
modified: "2023-07-13T02:37:06.600Z"
published: "2023-07-13T02:37:06.600Z"
"""


@pytest.mark.parametrize(("version", "affected"), [("1.2.0", True), ("1.3.0", False)])
def test_a_record_of_the_r_advisory_database_read_as_a_directory(
    tmp_path: Path, version: str, affected: bool
) -> None:
    from datetime import date

    from imagebot.audit import audit
    from imagebot.osv import DirectorySource

    folder = tmp_path / "vulns" / "readxl"
    folder.mkdir(parents=True)
    (folder / "RSEC-2023-1.yaml").write_text(RSEC_2023_1, encoding="utf-8")
    readxl = Package(CRAN, "readxl", version, ("cran.lock",))
    result = audit([readxl], DirectorySource(tmp_path), [], date(2026, 11, 30))
    found = [(f.advisory.id, f.advisory.aliases, f.fixed) for f in result.findings]
    assert found == (
        [("RSEC-2023-1", ("CVE-2018-20450", "CVE-2018-20452"), ("1.3.0",))] if affected else []
    )
