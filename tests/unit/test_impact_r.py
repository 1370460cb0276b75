"""impact for R: requirements/cran.lock's closures name the requesters of every R entry that
needs a changed R package, renv.lock environments name their owners, and R stays apart from
Python (a Python and an R package may share a name; R names are never PEP 503 normalised)."""

from __future__ import annotations

import pytest

from imagebot import cran, cranlock, impact
from imagebot.environments import EnvironmentPin, RegisteredEnvironment

SETS = """\
[set]
description = "R from a CRAN-like repository"
r_source = "cran"

[r]
dplyr = { version = "DPLYR", reason = "data manipulation", requested_by = "@anna" }
"""
DEBIAN = """\
[set]
description = "R from Debian"
r_source = "debian"

[r]
data.table = { version = "DT", reason = "fast tables", requested_by = "@platform-team" }
"""
PYTHON_SET = """\
[python]
cli = { version = "PYCLI", reason = "a Python command-line kit", requested_by = "@ola" }
"""
INDEX_ONLY = """\
[r]
R6 = { version = "2.5.1", reason = "classes for an older project", requested_by = "@kari" }
"""
HASH = "--hash=sha256:" + "1" * 64


def r_package(name: str, version: str, imports: str = "") -> cran.RPackage:
    fields = {"Package": name, "Version": version, "License": "MIT"}
    if imports:
        fields["Imports"] = imports
    return cran.RPackage(name, version, "0" * 32, fields, "https://cran.example/snapshot")


CATALOGUE = {
    ("dplyr", "1.1.0"): "cli (>= 3.4.0), R6, vctrs (>= 0.6.0)",
    ("dplyr", "1.1.2"): "cli (>= 3.6.0), R6, vctrs (>= 0.6.0), pillar",
    ("vctrs", "0.6.3"): "cli (>= 3.4.0)",
    ("pillar", "1.9.0"): "cli, vctrs",
    ("cli", "3.6.1"): "utils",
    ("cli", "3.6.2"): "utils",
    ("R6", "2.5.1"): "",
}


def cran_lock(dplyr: str, cli: str, extra_roots: tuple[cran.RRoot, ...] = ()) -> str:
    """cran.lock for the rcran set's dplyr and index-only's R6, with `cli` the upstream's
    current version (a newer dated snapshot moves it)."""
    packages = [
        r_package(name, version, imports)
        for (name, version), imports in CATALOGUE.items()
        if name != "cli" or version == cli
    ]
    roots = (
        cran.RRoot("dplyr", dplyr, "rcran", "data manipulation", "@anna"),
        cran.RRoot("R6", "2.5.1", "index-only", "classes for an older project", "@kari"),
        *extra_roots,
    )
    closures = cran.closure(roots, cran.Available.from_upstreams([packages]))
    return cranlock.format_cran_lock(roots, closures, "sha256:" + "0" * 64)


def state(
    *, dplyr: str = "1.1.0", cli: str = "3.6.1", data_table: str = "1.14.8", pycli: str = "3.6.1"
) -> dict[str, str]:
    return {
        "requirements/rcran.toml": SETS.replace("DPLYR", dplyr),
        "requirements/r.toml": DEBIAN.replace("DT", data_table),
        "requirements/tools.toml": PYTHON_SET.replace("PYCLI", pycli),
        "requirements/tools.lock": f"cli=={pycli} \\\n    {HASH}\n    # via -r tools.in\n",
        "requirements/index-only.toml": INDEX_ONLY,
        "requirements/cran.lock": cran_lock(dplyr, cli),
    }


def r_environment(owner: str, *pins: tuple[str, str]) -> RegisteredEnvironment:
    listed = tuple(EnvironmentPin(n, v, i) for i, (n, v) in enumerate(pins, start=3))
    path = "environments/methods/survey.renv.lock"
    return RegisteredEnvironment(path, "methods", "survey", owner, listed, "r")


def python_environment(owner: str, *pins: tuple[str, str]) -> RegisteredEnvironment:
    listed = tuple(EnvironmentPin(n, v, i) for i, (n, v) in enumerate(pins, start=2))
    path = "environments/methods/tools.txt"
    return RegisteredEnvironment(path, "methods", "tools", owner, listed)


def test_the_snapshot_holds_r_apart_from_python() -> None:
    snap = impact.snapshot(state())
    assert snap.pins == {"cli": "3.6.1"}  # cran.lock is not read as a Python lock
    assert ("cli", "3.6.1") in snap.r_served and ("dplyr", "1.1.0") in snap.r_served
    assert ("data.table", "1.14.8") not in snap.r_served  # Debian's, not the repository's
    assert ("data.table", "1.14.8") in snap.r_pins
    assert {(e.set, e.name, e.ecosystem) for e in snap.r_entries} == {
        ("rcran", "dplyr", "r"),
        ("r", "data.table", "r"),
        ("index-only", "R6", "r"),
    }
    assert [e.key for e in snap.entries] == ["cli"]


def test_an_r_dependency_change_names_the_requester_of_the_entry_that_needs_it() -> None:
    base, head = state(), state(cli="3.6.2")  # a newer snapshot: cli 3.6.1 -> 3.6.2

    result = impact.section(base, head, "requirements")

    (cli,) = result.packages
    assert (cli.ecosystem, cli.name, cli.old, cli.new, cli.kind) == (
        "r",
        "cli",
        "3.6.1",
        "3.6.2",
        "patch",
    )
    assert [(n.entry.requested_by, n.entry.name, n.through) for n in cli.needs] == [
        ("@anna", "dplyr", ("dplyr",))
    ]
    assert impact.render_text(result).splitlines() == [
        "R package cli 3.6.1 -> 3.6.2: patch",
        "  needed by @anna: dplyr==1.1.0 in rcran (data manipulation): dplyr -> cli",
    ]


def test_the_owner_of_a_renv_environment_is_named_and_must_move() -> None:
    base, head = state(), state(cli="3.6.2")
    survey = r_environment("@stats/survey", ("cli", "3.6.1"), ("dplyr", "1.1.0"))
    unrelated = python_environment("@ola", ("cli", "3.6.1"))  # Python's cli does not change

    result = impact.section(base, head, "requirements", [survey, unrelated])

    (cli,) = result.packages
    assert [(a.owner, a.pinned, a.status) for a in cli.environments] == [
        ("@stats/survey", "3.6.1", "breaks")
    ]
    assert result.owners_who_must_move == ("@stats/survey",)
    lines = impact.render_text(result).splitlines()
    assert lines[:3] == [
        "must move: @stats/survey",
        "R package cli 3.6.1 -> 3.6.2: patch",
        "  owner @stats/survey of methods/survey (environments/methods/survey.renv.lock:3) "
        "pins cli==3.6.1: breaks: 3.6.1 is no longer served by the index; @stats/survey must move",
    ]


def test_a_renv_environment_on_a_version_still_served_works() -> None:
    snap = impact.snapshot(state())
    survey = r_environment("@stats/survey", ("dplyr", "1.1.0"))
    report = impact.package_report("dplyr", "1.1.2", snap, [survey], "r")
    assert (report.kind, [a.status for a in report.environments]) == ("patch", ["works"])
    now = impact.package_report("dplyr", None, snap, [survey], "r")
    assert (now.kind, [a.status for a in now.environments]) == ("none", ["matches"])


def test_a_python_and_an_r_package_of_the_same_name_stay_apart() -> None:
    base = state()
    python_bump = state(pycli="3.7.0")
    r_env = r_environment("@stats/survey", ("cli", "3.6.1"))
    py_env = python_environment("@ola", ("cli", "3.6.1"))

    result = impact.section(base, python_bump, "requirements", [r_env, py_env])

    (cli,) = result.packages
    assert (cli.ecosystem, cli.label, cli.kind) == ("python", "cli", "minor")
    assert [n.entry.requested_by for n in cli.needs] == ["@ola"]  # not R's @anna
    assert [a.owner for a in cli.environments] == ["@ola"]  # not the renv owner
    snap = impact.snapshot(base)
    python_report = impact.package_report("cli", None, snap, [r_env, py_env])
    r_report = impact.package_report("cli", None, snap, [r_env, py_env], "r")
    assert [n.entry.ecosystem for n in python_report.needs] == ["python"]
    assert [n.entry.name for n in r_report.needs] == ["dplyr"]
    assert r_report.label == "R package cli"
    assert impact.package_json(r_report, snap)["set"] is None
    assert impact.package_json(python_report, snap)["set"] == "tools"


def test_r_names_are_case_sensitive_and_never_normalised() -> None:
    snap = impact.snapshot(state())
    assert [n.entry.name for n in impact.r_who_needs(snap, "R6")] == ["R6", "dplyr"]
    assert impact.r_who_needs(snap, "r6") == ()
    python_typo = impact.package_report("R6", None, snap, [])
    error = impact.unknown_package(python_typo, snap)
    assert error.hint == "R6 is an R package: imagebot impact --r R6"
    unknown = impact.package_report("r6", None, snap, [], "r")
    assert "R package r6 is in no lock" in impact.unknown_package(unknown, snap).message


def test_a_debian_entry_needs_only_its_own_package() -> None:
    result = impact.section(state(), state(data_table="1.15.0"), "requirements")
    (table,) = result.packages
    assert (table.label, table.kind) == ("R package data.table", "minor")
    assert [(n.entry.requested_by, n.direct) for n in table.needs] == [("@platform-team", True)]


def test_a_package_that_enters_an_existing_entrys_closure_is_reported() -> None:
    result = impact.section(state(), state(dplyr="1.1.2"), "requirements")
    lines = impact.render_text(result).splitlines()
    assert "R package dplyr 1.1.0 -> 1.1.2: patch" in lines
    assert "R package pillar (new) -> 1.9.0: addition to the closure" in lines
    pillar = next(p for p in result.packages if p.name == "pillar")
    assert [(n.entry.requested_by, n.through) for n in pillar.needs] == [("@anna", ("dplyr",))]
    assert result.packages[-1].name == "pillar"  # an addition hurts least


def test_a_new_entrys_own_closure_is_reviews_to_report() -> None:
    base = state()
    head = dict(base)
    head["requirements/index-only.toml"] = INDEX_ONLY + (
        'pillar = { version = "1.9.0", reason = "tibbles", requested_by = "@new" }\n'
    )
    root = cran.RRoot("pillar", "1.9.0", "index-only", "tibbles", "@new")
    head["requirements/cran.lock"] = cran_lock("1.1.0", "3.6.1", (root,))
    assert impact.section(base, head, "requirements").packages == ()


def test_promotion_reads_the_images_r_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    files = state()
    snap = impact.snapshot(files)
    survey = r_environment("@stats/survey", ("cli", "3.6.1"))
    result = impact.assess(
        {"cli": "3.6.1"},
        {"cli": "3.6.1"},
        snap,
        environments=[survey],
        old_r=impact.image_r_pins({"cli": "3.6.1", "base": "4.2.2"}),
        new_r=impact.image_r_pins({"cli": "3.7.0", "base": "4.2.2"}),
    )
    (cli,) = result.packages
    assert (cli.label, cli.kind) == ("R package cli", "minor")
    assert [n.entry.name for n in cli.needs] == ["dplyr"]  # from cran.lock at any version
    assert [a.status for a in cli.environments] == ["works"]  # the repository still serves it


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        ("1.1-0", "1.1.1", "patch"),
        ("1.1-0", "1.2-0", "minor"),
        ("1.1.0", "2.0.0", "major"),
        ("1.1.2", "1.1-1", "downgrade"),
        ("1.1.0", None, "removal"),
        (None, "1.0", "addition"),
        ("1.14.8", "1.14.10", "patch"),  # R compares numbers, not strings
        ("weird", "1.0", "change"),
    ],
)
def test_r_change_kind(old: str | None, new: str | None, kind: str) -> None:
    assert impact.r_change_kind(old, new) == kind


def test_r_changes_pair_versions_per_name() -> None:
    old = {("R6", "2.5.1"), ("R6", "2.6.1"), ("cli", "3.6.1"), ("x", "1.0")}
    new = {("R6", "2.6.1"), ("R6", "2.6.2"), ("cli", "3.6-1"), ("y", "1.0")}
    assert impact.r_changes(old, new) == [
        ("R6", "2.5.1", "2.6.2"),
        ("x", "1.0", None),
        ("y", None, "1.0"),
    ]


def test_parse_package_takes_r_names() -> None:
    from imagebot.errors import UsageError

    assert impact.parse_package("data.table==1.14-8", "r") == ("data.table", "1.14-8")
    with pytest.raises(UsageError):
        impact.parse_package("data_table", "r")  # not an R name
    with pytest.raises(UsageError):
        impact.parse_package("dplyr==1.0rc1", "r")
