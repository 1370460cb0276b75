"""imagebot.review (pure) and imagebot.package_facts' parsing, with a fake facts source.

The whole report is compared with golden files; regenerate them after an intended change with
`IMAGEBOT_UPDATE_GOLDEN=1 pytest tests/unit/test_review.py` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cran_fixtures import R_SET, Upstream, cran_upstream, r_config

from imagebot.package_facts import (
    PackageFactsSource,
    facts_from_page,
    metadata_candidates,
    parse_metadata,
)
from imagebot.requirements import Requirement
from imagebot.review import (
    INDEX_ONLY,
    R_LOCK_ABSENT,
    R_LOCK_EDITED,
    R_LOCK_READ,
    R_LOCK_UNREADABLE,
    Changes,
    Listed,
    LockedPin,
    PackageFacts,
    Review,
    RFacts,
    RPin,
    RVerified,
    State,
    Vulnerabilities,
    Vulnerability,
    change_kind,
    compare,
    confirmation_problems,
    lock_via,
    r_change_kind,
    state_from_files,
    with_facts,
)
from imagebot.review_escape import clean
from imagebot.review_render import render_markdown, render_text, review_json
from tests.unit.conftest import CONFIG, git_repo

GOLDEN = Path(__file__).parent / "golden" / "review"


@dataclass(frozen=True)
class Entry(Requirement):
    """A Requirement with the confirmation field, whether or not requirements.py has it yet."""

    safe_because: str | None = None


def entry(
    name: str,
    version: str,
    *,
    ecosystem: str = "python",
    safe: str | None = None,
    reason: str = "needed",
    by: str = "@anna",
    line: int = 1,
) -> Entry:
    return Entry(ecosystem, name, version, reason, by, line, safe_because=safe)


def listed(source: str, *entries: Entry) -> tuple[Listed, ...]:
    return tuple(Listed(source, f"requirements/{source}.toml", e) for e in entries)


def pin(name: str, version: str, where: str = "ds", direct: bool = False, *via: str) -> LockedPin:
    return LockedPin(name, version, where, direct, tuple(via))


POSIT = "https://packagemanager.posit.co/cran/2025-11-20"


def rpin(
    name: str,
    version: str,
    vetted_in: tuple[str, ...] = (),
    dependency_of: tuple[str, ...] = (),
    license: str = "MIT + file LICENSE",
    compiles: bool = False,
) -> RPin:
    return RPin(name, version, vetted_in, dependency_of, RFacts(license, compiles, POSIT))


BASE_R = (
    rpin("cli", "3.6.0", ("index-only",), compiles=True),
    rpin("data.table", "1.14.8", ("r",), license="MPL-2.0 | file LICENSE", compiles=True),
    rpin("glue", "1.6.1", (), ("cli==3.6.0",), compiles=True),
)
HEAD_R = (
    rpin("cli", "3.6.1", ("index-only",), compiles=True),
    rpin("data.table", "1.15.0", ("r",), license="MPL-2.0 | file LICENSE", compiles=True),
    rpin("vctrs", "0.6.5", (), ("cli==3.6.1", "data.table==1.15.0"), compiles=True),
    rpin("withr", "3.0.0", ("index-only",), ("cli==3.6.1",), license="MIT + file LICENSE"),
)

BASE = State(
    entries=(
        *listed("ds", entry("numpy", "1.26.4"), entry("pandas", "2.2.3"), entry("six", "1.16.0")),
        *listed("r", entry("data.table", "1.14.8", ecosystem="r")),
        *listed(INDEX_ONLY, entry("tabulate", "0.9.0")),
    ),
    pins=(
        pin("numpy", "1.26.4", "ds", True, "pandas"),
        pin("pandas", "2.2.3", "ds", True),
        pin("pytz", "2024.1", "ds", False, "pandas"),
        pin("six", "1.16.0", "ds", True),
        pin("tabulate", "0.9.0", INDEX_ONLY, True),
    ),
    r_pins=BASE_R,
    r_lock=R_LOCK_READ,
)

HEAD = State(
    entries=(
        *listed(
            "ds",
            entry("numpy", "2.0.0", safe="numpy developers, BSD-3-Clause, no advisories", line=2),
            entry("pandas", "2.2.3", reason="data frames for the register", by="@anna"),
            entry("requests", "2.19.0", safe="PSF project, Apache-2.0", by="@ola", line=4),
            entry("polars", "1.0.0", by="@kari", line=3),
        ),
        *listed("r", entry("data.table", "1.15.0", ecosystem="r", line=2)),
        *listed(INDEX_ONLY, entry("tabulate", "0.9.0"), entry("numpy", "1.26.4", safe="old")),
    ),
    pins=(
        pin("certifi", "2018.4.16", "ds", False, "requests"),
        pin("numpy", "2.0.0", "ds", True, "pandas"),
        pin("numpy", "1.26.4", INDEX_ONLY, True),
        pin("pandas", "2.2.3", "ds", True),
        pin("polars", "1.0.0", "ds", True),
        pin("pytz", "2023.4", "ds", False, "pandas"),
        pin("requests", "2.19.0", "ds", True),
        pin("tabulate", "0.9.0", INDEX_ONLY, True),
    ),
    r_pins=HEAD_R,
    r_lock=R_LOCK_READ,
)


def test_entries_added_changed_edited_removed() -> None:
    changes = compare(BASE, HEAD)
    got = [(c.kind, c.ecosystem, c.name, c.old_version, c.new_version) for c in changes.entries]
    assert got == [
        ("added", "python", "numpy", None, "1.26.4"),  # index-only: its own entry
        ("added", "python", "polars", None, "1.0.0"),
        ("added", "python", "requests", None, "2.19.0"),
        ("changed", "python", "numpy", "1.26.4", "2.0.0"),
        ("changed", "r", "data.table", "1.14.8", "1.15.0"),
        ("edited", "python", "pandas", "2.2.3", "2.2.3"),
        ("removed", "python", "six", "1.16.0", None),
    ]


def test_missing_confirmation_is_a_problem_with_file_and_line() -> None:
    problems = confirmation_problems(compare(BASE, HEAD))
    assert [(p.file, p.line) for p in problems] == [
        ("requirements/ds.toml", 3),  # polars, added
        ("requirements/r.toml", 2),  # data.table, changed
    ]
    assert "'polars' is added without the requester's confirmation" in problems[0].message
    assert "safe_because" in problems[0].hint


def test_an_edit_of_text_only_or_a_removal_needs_no_confirmation() -> None:
    base = State(listed("ds", entry("pandas", "2.2.3", reason="frames")), ())
    head = State(listed("ds", entry("pandas", "2.2.3", reason="data frames")), ())
    changes = compare(base, head)
    assert [c.kind for c in changes.entries] == ["edited"]
    assert confirmation_problems(changes) == []
    assert confirmation_problems(compare(base, State((), ()))) == []


def test_moving_an_entry_to_another_set_is_a_change() -> None:
    base = State(listed("base", entry("numpy", "2.0.0")), ())
    head = State(listed("ds", entry("numpy", "2.0.0", line=5)), ())
    (change,) = compare(base, head).entries
    assert (change.kind, change.old_source, change.new_source) == ("changed", "base", "ds")
    assert len(confirmation_problems(compare(base, head))) == 1


def test_index_only_versions_are_entries_of_their_own() -> None:
    base = State(listed(INDEX_ONLY, entry("tabulate", "0.8.10"), entry("tabulate", "0.9.0")), ())
    head = State(
        listed(INDEX_ONLY, entry("tabulate", "0.9.0"), entry("tabulate", "0.9.1", safe="ok")), ()
    )
    changes = compare(base, head)
    got = [(c.kind, c.old_version, c.new_version) for c in changes.entries]
    assert got == [("added", None, "0.9.1"), ("removed", "0.8.10", None)]
    assert confirmation_problems(changes) == []


def test_a_blank_confirmation_is_no_confirmation() -> None:
    head = State(listed("ds", entry("numpy", "2.0.0", safe="   ")), ())
    assert len(confirmation_problems(compare(State((), ()), head))) == 1


def test_python_pins_new_changed_and_leaving() -> None:
    changes = compare(BASE, HEAD)
    assert [(n.name, n.version, n.direct, n.via, n.where) for n in changes.new_packages] == [
        ("certifi", "2018.4.16", False, ("requests",), ("ds",)),
        ("polars", "1.0.0", True, (), ("ds",)),
        ("requests", "2.19.0", True, (), ("ds",)),
    ]
    assert [(v.name, v.old, v.new, v.kind) for v in changes.version_changes] == [
        ("numpy", ("1.26.4",), ("1.26.4", "2.0.0"), "major"),
        ("pytz", ("2024.1",), ("2023.4",), "downgrade"),
    ]
    assert [(g.name, g.old) for g in changes.leaving] == [("six", ("1.16.0",))]
    assert changes.pins_to_check() == [
        ("certifi", "2018.4.16"),
        ("numpy", "2.0.0"),
        ("polars", "1.0.0"),
        ("pytz", "2023.4"),
        ("requests", "2.19.0"),
    ]


def test_r_packages_new_changed_and_leaving_with_why_each_is_there() -> None:
    r = compare(BASE, HEAD).r
    assert [(n.name, n.version, n.vetted_in, n.dependency_of) for n in r.new_packages] == [
        ("vctrs", "0.6.5", (), ("cli==3.6.1", "data.table==1.15.0")),
        ("withr", "3.0.0", (INDEX_ONLY,), ("cli==3.6.1",)),
    ]
    assert r.new_packages[0].facts == RFacts("MIT + file LICENSE", True, POSIT)
    assert [(v.name, v.old, v.new, v.kind) for v in r.version_changes] == [
        ("cli", ("3.6.0",), ("3.6.1",), "patch"),
        ("data.table", ("1.14.8",), ("1.15.0",), "minor"),
    ]
    assert [(g.name, g.old, g.dependency_of) for g in r.leaving] == [
        ("glue", ("1.6.1",), ("cli==3.6.0",))
    ]
    assert r.note == ""
    assert compare(BASE, HEAD).r_pins_to_check() == [
        ("cli", "3.6.1"),
        ("data.table", "1.15.0"),
        ("vctrs", "0.6.5"),
        ("withr", "3.0.0"),
    ]
    assert (
        compare(BASE, HEAD).pins_to_check()
        == compare(replace(BASE, r_pins=()), replace(HEAD, r_pins=())).pins_to_check()
    )  # R never mixes into the Python pins


def test_r_names_are_case_sensitive_and_versions_in_r_order() -> None:
    base = State((), (), (rpin("Rcpp", "1.0.9", ("r",)),), R_LOCK_READ)
    head = State((), (), (rpin("rcpp", "1.0.9", ("r",)), rpin("Rcpp", "1.0-10", ("r",))))
    r = compare(base, head).r
    assert [n.name for n in r.new_packages] == ["rcpp"]
    assert [(v.old, v.new, v.kind) for v in r.version_changes] == [
        (("1.0.9",), ("1.0-10",), "patch")  # 1.0-10 > 1.0.9 in R's order
    ]


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        ("1.14.8", "2.0.0", "major"),
        ("1.14.8", "1.15.0", "minor"),
        ("1.1-9", "1.1-10", "patch"),
        ("1.1-10", "1.1-9", "downgrade"),
        ("1.0", "1.0-0", "other"),
    ],
)
def test_r_change_kind(old: str, new: str, kind: str) -> None:
    assert r_change_kind([old], [new]) == kind


def cran_lock_text(*extra: str) -> str:
    """requirements/cran.lock as `imagebot lock` writes it: index-only dplyr and its closure."""
    from imagebot.cran import Available, RPackage, RRoot, closure
    from imagebot.cranlock import format_cran_lock

    def package(name: str, version: str, compiles: str, **fields: str) -> RPackage:
        fields = {"Package": name, "Version": version, "NeedsCompilation": compiles, **fields}
        return RPackage(name, version, "0" * 32, fields, POSIT)

    upstream = [
        package(
            "dplyr", "1.1.0", "yes", Imports="R6, rlang (>= 1.0.6)", License="MIT + file LICENSE"
        ),
        package("R6", "2.5.1", "no", License="MIT + file LICENSE"),
        package("rlang", "1.1.1", "yes", License="MIT + file LICENSE"),
        *(package(name, "1.0", "no", License="GPL-3") for name in extra),
    ]
    roots = [RRoot("dplyr", "1.1.0", INDEX_ONLY, "data wrangling", "@anna")]
    roots += [RRoot(name, "1.0", "r", "x", "@ola") for name in extra]
    available = Available.from_upstreams([upstream])
    return format_cran_lock(roots, closure(roots, available), "sha256:" + "0" * 64)


def test_state_reads_cran_lock_as_the_r_lock_never_as_a_python_lock() -> None:
    state, problems = state_from_files({"requirements/cran.lock": cran_lock_text()}, "requirements")
    assert problems == [] and state.pins == () and state.r_lock == R_LOCK_READ
    assert [(p.name, p.version, p.vetted_in, p.dependency_of) for p in state.r_pins] == [
        ("R6", "2.5.1", (), ("dplyr==1.1.0",)),
        ("dplyr", "1.1.0", (INDEX_ONLY,), ()),
        ("rlang", "1.1.1", (), ("dplyr==1.1.0",)),
    ]
    assert state.r_pins[0].facts == RFacts("MIT + file LICENSE", False, POSIT)
    assert state.r_pins[2].facts == RFacts("MIT + file LICENSE", True, POSIT)


def test_a_state_without_an_r_lock_takes_the_r_entries_it_serves() -> None:
    files = {
        "requirements/r.toml": '[set]\nr_source = "cran"\n\n[r]\ndplyr = { version = "1.1.0", '
        'reason = "x", requested_by = "@a" }\n',
        "requirements/deb.toml": '[r]\nggplot2 = { version = "3.4.0", reason = "x", '
        'requested_by = "@a" }\n',  # Debian's r-cran-*: not served from the CRAN-like repository
    }
    state, problems = state_from_files(files, "requirements")
    assert problems == [] and state.r_lock == R_LOCK_ABSENT
    assert state.r_pins == (RPin("dplyr", "1.1.0", ("r",), ()),)
    r = compare(State((), ()), state).r
    assert "no requirements/cran.lock" in r.note
    assert "not in requirements/cran.lock" in render_text(
        Review("HEAD", compare(State((), ()), state))
    )


def test_an_r_lock_edited_by_hand_is_said_and_an_unreadable_one_is_a_problem() -> None:
    text = cran_lock_text().replace("License: MIT + file LICENSE", "License: MIT", 1)
    state, problems = state_from_files({"requirements/cran.lock": text}, "requirements")
    assert problems == [] and state.r_lock == R_LOCK_EDITED
    assert "edited by hand" in compare(State((), ()), state).r.note
    broken = cran_lock_text().replace("Package: R6", "Package: R6\x1b[2J")
    state, problems = state_from_files({"requirements/cran.lock": broken}, "requirements")
    assert state.r_lock == R_LOCK_UNREADABLE and state.r_pins == ()
    assert [p.file for p in problems] == ["requirements/cran.lock"]


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        ("1.2.3", "2.0.0", "major"),
        ("1.2.3", "1.3.0", "minor"),
        ("1.2.3", "1.2.4", "patch"),
        ("1.2", "1.2.0.post1", "other"),
        ("2.0.0", "1.9.9", "downgrade"),
        ("0.13.2", "0.14.0", "minor"),
        ("not a version", "1.0", "other"),
    ],
)
def test_change_kind(old: str, new: str, kind: str) -> None:
    assert change_kind([old], [new]) == kind


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("numpy==2.0 \\\n    --hash=sha256:x\n    # via -r ds.in\n", (True, ())),
        ("numpy==2.0 \\\n    # via pandas\n", (False, ("pandas",))),
        (
            "numpy==2.0 \\\n    # via\n    #   -r ds.in\n    #   pandas\n    #   scipy\n",
            (True, ("pandas", "scipy")),
        ),
        ("numpy==2.0\n", (False, ())),
    ],
)
def test_lock_via(block: str, expected: tuple[bool, tuple[str, ...]]) -> None:
    assert lock_via(block) == expected


def test_state_from_files_reads_sets_index_only_and_locks() -> None:
    files = {
        "requirements/ds.toml": '[python]\nnumpy = { version = "2.0.0", reason = "arrays", '
        'requested_by = "@anna" }\n',
        "requirements/ds.lock": "# inputs: sha256:" + "0" * 64 + "\nnumpy==2.0.0 \\\n"
        "    --hash=sha256:" + "ab" * 32 + "\n    # via -r ds.in\n",
        "requirements/index-only.toml": '[python]\ntabulate = { version = "0.9.0", '
        'reason = "tables", requested_by = "@ola" }\n',
        "other/ignored.toml": "not toml at all [",
    }
    state, problems = state_from_files(files, "requirements")
    assert problems == []
    assert [(e.source, e.entry.name, e.entry.line) for e in state.entries] == [
        ("ds", "numpy", 2),
        (INDEX_ONLY, "tabulate", 2),
    ]
    assert state.pins == (
        LockedPin("numpy", "2.0.0", "ds", True, ()),
        LockedPin("tabulate", "0.9.0", INDEX_ONLY, True, ()),
    )


def test_state_from_files_reports_a_broken_file_and_keeps_the_rest() -> None:
    files = {"requirements/ds.toml": "[python\n", "requirements/ds.lock": "six==1.16.0\n"}
    state, problems = state_from_files(files, "requirements")
    assert len(problems) == 1 and problems[0].file == "requirements/ds.toml"
    assert [p.name for p in state.pins] == ["six"]


# --- facts: the parsing side of package_facts, and a fake fetch ------------------------------

METADATA = b"""\
Metadata-Version: 2.1
Name: requests
Version: 2.19.0
Summary: Python HTTP for Humans.
Home-page: http://python-requests.org
License: Apache 2.0
Project-URL: Source, https://github.com/psf/requests
Classifier: License :: OSI Approved :: Apache Software License

Long description that is not a header.
"""

PAGE: Mapping[str, Any] = {
    "meta": {"api-version": "1.1"},
    "name": "requests",
    "files": [
        {
            "filename": "requests-0.2.0.tar.gz",
            "url": "https://files.example/requests-0.2.0.tar.gz",
            "hashes": {"sha256": "00"},
            "upload-time": "2011-02-14T00:00:00Z",
            "yanked": False,
        },
        {
            "filename": "requests-2.19.0-py2.py3-none-any.whl",
            "url": "https://files.example/requests-2.19.0-py2.py3-none-any.whl",
            "hashes": {"sha256": "11"},
            "upload-time": "2018-06-12T14:46:15.289074Z",
            "yanked": False,
        },
        {
            "filename": "requests-2.19.0.tar.gz",
            "url": "https://files.example/requests-2.19.0.tar.gz",
            "hashes": {"sha256": "22"},
            "upload-time": "2018-06-12T14:46:20Z",
            "yanked": False,
        },
        {
            "filename": "requests-2.19.1-py2.py3-none-any.whl",
            "url": "https://files.example/requests-2.19.1-py2.py3-none-any.whl",
            "hashes": {"sha256": "33"},
            "upload-time": "2018-06-14T00:00:00Z",
            "yanked": "broken release",
            "core-metadata": False,
        },
    ],
}


def test_parse_metadata() -> None:
    assert parse_metadata(METADATA) == {
        "summary": "Python HTTP for Humans.",
        "license": "Apache 2.0",
        "project_url": "http://python-requests.org",
        "source_url": "https://github.com/psf/requests",
    }


def test_parse_metadata_prefers_the_licence_expression_and_drops_bad_urls() -> None:
    data = (
        b"Metadata-Version: 2.4\nName: x\nVersion: 1\nSummary: s\nLicense-Expression: MIT\n"
        b"License: MIT License\n  long text\nHome-page: javascript:alert(1)\n"
        b"Project-URL: Repository, https://user:pw@github.com/x/y\n"
    )
    fields = parse_metadata(data)
    assert fields["license"] == "MIT"
    assert fields["project_url"] == "" and fields["source_url"] == ""


def test_facts_from_page() -> None:
    facts = facts_from_page("requests", "2.19.0", PAGE, METADATA)
    assert facts == PackageFacts(
        "requests",
        "2.19.0",
        summary="Python HTTP for Humans.",
        license="Apache 2.0",
        project_url="http://python-requests.org",
        source_url="https://github.com/psf/requests",
        uploaded="2018-06-12",
        first_release="2011-02-14",
    )
    yanked = facts_from_page("requests", "2.19.1", PAGE, None)
    assert (yanked.yanked, yanked.yanked_reason, yanked.metadata) == (True, "broken release", False)


def test_metadata_candidates_skip_sdists_and_wheels_the_page_says_have_none() -> None:
    assert [f["filename"] for f in metadata_candidates(PAGE, "2.19.0")] == [
        "requests-2.19.0-py2.py3-none-any.whl"
    ]
    assert metadata_candidates(PAGE, "2.19.1") == []


class FakeIndex:
    """`fetch` for PackageFactsSource: pages and metadata files from tables; records requests."""

    def __init__(self, pages: Mapping[str, Any], files: Mapping[str, bytes]) -> None:
        self.pages = pages
        self.files = files
        self.urls: list[str] = []

    def __call__(self, url: str, accept: str) -> tuple[int, bytes]:
        self.urls.append(url)
        name = url.rstrip("/").rsplit("/", 1)[-1]
        if url.startswith("https://index.example/simple/"):
            page = self.pages.get(name)
            return (200, json.dumps(page).encode()) if page else (404, b"")
        body = self.files.get(url)
        return (200, body) if body is not None else (404, b"")


def test_facts_source_one_page_per_project_and_a_count_of_requests() -> None:
    fake = FakeIndex(
        {"requests": PAGE},
        {"https://files.example/requests-2.19.0-py2.py3-none-any.whl.metadata": METADATA},
    )
    source = PackageFactsSource("https://index.example/simple/", fetch=fake, workers=4)
    found = source.facts([("requests", "2.19.0"), ("requests", "2.19.1"), ("nothing", "1.0")])
    assert found["requests", "2.19.0"].summary == "Python HTTP for Humans."
    assert found["requests", "2.19.1"].yanked
    assert found["nothing", "1.0"].problem == "nothing is not on https://index.example/simple"
    assert source.requests == len(fake.urls) == 3  # two project pages, one metadata file
    assert fake.urls.count("https://index.example/simple/requests/") == 1


def test_facts_source_refuses_a_metadata_file_that_does_not_match_its_hash() -> None:
    page = json.loads(json.dumps(PAGE))
    page["files"][1]["core-metadata"] = {"sha256": "0" * 64}
    fake = FakeIndex(
        {"requests": page},
        {"https://files.example/requests-2.19.0-py2.py3-none-any.whl.metadata": METADATA},
    )
    source = PackageFactsSource("https://index.example/simple", fetch=fake)
    (facts,) = source.facts([("requests", "2.19.0")]).values()
    assert "does not match the sha256" in facts.problem


# --- the whole report ------------------------------------------------------------------------

FACTS = {
    ("certifi", "2018.4.16"): PackageFacts(
        "certifi",
        "2018.4.16",
        summary="Python package for providing Mozilla's CA Bundle.",
        license="MPL-2.0",
        project_url="http://certifi.io/",
        uploaded="2018-04-16",
        first_release="2011-12-28",
    ),
    ("polars", "1.0.0"): PackageFacts("polars", "1.0.0", problem="polars: HTTP 503 from x"),
    ("requests", "2.19.0"): facts_from_page("requests", "2.19.0", PAGE, METADATA),
}


def sample_review(vulnerabilities: Vulnerabilities | None = None) -> Review:
    changes = with_facts(compare(BASE, HEAD), FACTS)
    review = Review(
        base="origin/main (1a2b3c4d5e6f)",
        changes=changes,
        facts_source="https://pypi.org/simple",
        requests=5,
        problems=tuple(confirmation_problems(changes)),
        r_verified=RVerified(4, (POSIT,), 1),  # vctrs, withr, cli and data.table's stanzas
    )
    return replace(review, vulnerabilities=vulnerabilities) if vulnerabilities else review


VULNERABLE = Vulnerabilities(
    True,
    found=(
        Vulnerability(
            "requests",
            "2.19.0",
            "PYSEC-2018-28",
            ("CVE-2018-18074", "GHSA-x84v-xcm2-53pg"),
            "Authorization header sent on redirect to http",
            ("2.20.0",),
        ),
        Vulnerability(
            "data.table",
            "1.15.0",
            "RSEC-2099-1",
            ("CVE-2099-0001",),
            "fwrite writes outside the given directory",
            ("1.15.2",),
            ecosystem="CRAN",
        ),
    ),
)


@pytest.mark.parametrize(
    ("name", "render"),
    [
        ("report.txt", render_text),
        ("report.md", render_markdown),
        ("report.json", lambda r: json.dumps(review_json(r), indent=2) + "\n"),
    ],
)
def test_golden_report(name: str, render: Any) -> None:
    rendered = render(sample_review(VULNERABLE))
    golden = GOLDEN / name
    if os.environ.get("IMAGEBOT_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered, encoding="utf-8")
    assert rendered == golden.read_text(encoding="utf-8")


def test_an_empty_review() -> None:
    empty = Review("HEAD (abc)", Changes((), (), (), ()))
    text = render_text(empty)
    assert text.count("  none") == 7  # entries, three Python and three R sections
    assert "No problems" in text
    assert "not checked" in text  # no audit ran: said, not hidden
    assert render_markdown(empty).count("None.") == 7


HOSTILE_TEXT = "ok\n##vso[task.setvariable variable=X]1\x1b[31m <script>|x|</script> ##[group]"


def hostile_review() -> Review:
    head = State(
        listed("ds", entry("evil", "1.0", safe=HOSTILE_TEXT, reason=HOSTILE_TEXT, by="@x")),
        (pin("evil", "1.0", "ds", True),),
    )
    facts = {
        ("evil", "1.0"): PackageFacts(
            "evil", "1.0", summary=HOSTILE_TEXT, license=HOSTILE_TEXT, project_url="https://x/)"
        )
    }
    changes = with_facts(compare(State((), ()), head), facts)
    return Review("HEAD", changes, problems=tuple(confirmation_problems(changes)))


def test_text_report_neutralises_untrusted_strings() -> None:
    text = render_text(hostile_review())
    assert "##vso[" not in text and "##[" not in text
    assert "\x1b" not in text
    lines = [line for line in text.splitlines() if "setvariable" in line]
    assert lines and all(line.startswith("      ") for line in lines)  # never a line of its own


def test_markdown_report_escapes_untrusted_strings() -> None:
    markdown = render_markdown(hostile_review())
    assert not re.search(r"(?<!\\)<script", markdown) and "##vso[" not in markdown
    table_rows = [line for line in markdown.splitlines() if line.startswith("| added")]
    assert len(table_rows) == 1 and table_rows[0].count("|") - table_rows[0].count("\\|") == 8


def test_json_report_keeps_values_as_they_are() -> None:
    data = review_json(hostile_review())
    assert data["entries"][0]["safe_because"] == HOSTILE_TEXT
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("a\nb\tc", "a b c"),
        ("a\u2028b\u202ec\u200bd", "a b c d"),
        ("x" * 400, "x" * 299 + "…"),
    ],
)
def test_clean(raw: str, cleaned: str) -> None:
    assert clean(raw) == cleaned


def test_renderers_take_any_sequence_of_changes() -> None:
    review = sample_review()
    pins: Sequence[tuple[str, str]] = review.changes.pins_to_check()
    assert ("requests", "2.19.0") in pins
    assert "not checked" in render_text(review)


def test_add_writes_the_confirmation(project: Any, run_cli: Any) -> None:
    result = run_cli(
        "--config",
        project.config,
        "add",
        "python",
        "polars==1.0.0",
        "--set",
        "extra",
        "--reason",
        "frames",
        "--requested-by",
        "@anna",
        "--safe-because",
        "known publisher (pola-rs), MIT",
    )
    assert result.code == 0, result.err
    text = project.path("requirements/extra.toml").read_text(encoding="utf-8")
    assert (
        'polars = { version = "1.0.0", reason = "frames", requested_by = "@anna", '
        'safe_because = "known publisher (pola-rs), MIT" }\n'
    ) in text


# --- the R lock's new or changed stanzas, verified against the upstream (commands/review) -----

R6_ENTRY = (
    '[r]\nR6 = { version = "2.5.1", reason = "classes", requested_by = "@ola", '
    'safe_because = "r-lib, MIT, no advisories" }\n'
)


@pytest.fixture
def r_repo(
    project: Any, monkeypatch: pytest.MonkeyPatch, run_cli: Any
) -> Iterator[tuple[Any, Upstream]]:
    """A git repository whose `main` locks here==1.0.1 (and rprojroot) from a loopback
    upstream with `imagebot lock`; an advisory directory so review needs no network."""

    with cran_upstream() as upstream:
        monkeypatch.chdir(project.root)
        project.write("imagebot.toml", r_config(CONFIG, upstream.url))
        project.write("requirements/base.toml", '[set]\ndescription = "none"\n')
        project.write("requirements/extra.toml", R_SET)
        project.write(
            "osv/vulns/R6/RSEC-2099-1.json",
            '{"id": "RSEC-2099-1", "modified": "2099-01-01T00:00:00Z", "affected": [{"package": '
            '{"ecosystem": "CRAN", "name": "R6"}, "versions": ["2.4.0"]}]}',
        )
        assert run_cli("--config", project.config, "lock").code == 0
        git_repo(project, monkeypatch)
        upstream.requests.clear()
        yield project, upstream


def review_r(project: Any, run_cli: Any) -> tuple[Any, dict[str, Any]]:
    result = run_cli(
        "--config", project.config, "review", "--base", "main", "--json", "--advisories", "osv"
    )
    return result, (json.loads(result.out) if result.code == 0 else {})


def test_no_r_package_changed_makes_no_cran_request(
    r_repo: tuple[Any, Upstream], run_cli: Any
) -> None:
    project, upstream = r_repo
    upstream.served.clear()  # any request would fail the review
    result, report = review_r(project, run_cli)
    assert result.code == 0, result.err
    assert upstream.requests == []
    assert report["r"]["verified"] == {
        "packages": 0,
        "upstreams": [],
        "requests": 0,
        "changed_by_pull_request": [],
    }
    assert "0 requests for facts, 0 for R packages' upstream PACKAGES" in result.err


def test_a_clean_r_lock_is_verified_on_its_new_stanzas_only(
    r_repo: tuple[Any, Upstream], run_cli: Any
) -> None:
    project, upstream = r_repo
    project.write("requirements/index-only.toml", R6_ENTRY)
    assert run_cli("--config", project.config, "lock").code == 0  # the lock gains R6 2.5.1
    upstream.requests.clear()
    result, report = review_r(project, run_cli)
    assert result.code == 0, result.err
    assert upstream.requests == ["/cran/src/contrib/PACKAGES.gz"]
    # here and rprojroot are as the base locked them: only R6's stanza needed the upstream
    assert report["r"]["verified"] == {
        "packages": 1,
        "upstreams": [upstream.url],
        "requests": 1,
        "changed_by_pull_request": [],
    }
    assert [p["name"] for p in report["r"]["new_packages"]] == ["R6"]
    assert "0 requests for facts, 1 for R packages' upstream PACKAGES" in result.err
    text = run_cli(
        "--config", project.config, "review", "--base", "main", "--advisories", "osv"
    ).out
    assert (
        f"  verified: the PACKAGES of {upstream.url} lists the 1 new or changed package versions "
        "of requirements/cran.lock exactly as the lock says (1 request)\n"
    ) in text


def test_a_resealed_r_lock_the_upstream_contradicts_fails_before_the_report(
    r_repo: tuple[Any, Upstream], run_cli: Any
) -> None:
    """here's stanza claims a licence the upstream's PACKAGES does not state; lock --check
    passes the resealed lock, review does not."""
    from imagebot.lockfile import seal

    project, upstream = r_repo
    path = project.path("requirements/cran.lock")
    path.write_text(
        seal(path.read_text().replace("Package: here\n", "Package: here\nLicense: MIT\n", 1))
    )
    assert run_cli("--config", project.config, "lock", "--check").code == 0
    result, _ = review_r(project, run_cli)
    assert result.code == 13 and result.out == ""
    assert result.error_lines == [
        f"error: requirements/cran.lock: here==1.0.1: {upstream.url}'s PACKAGES says License "
        '(none), cran.lock has "MIT"'
    ]
    assert "Traceback" not in result.err


# --- imagebot.toml: where packages come from and go --------------------------------------------

OTHER_UPSTREAM = "http://127.0.0.1:9/cran"


def test_a_changed_cran_upstream_is_reported_first_with_both_values() -> None:
    from imagebot.review_config import config_changes

    head = r_config(CONFIG, OTHER_UPSTREAM)
    base = r_config(CONFIG, "https://packagemanager.posit.co/cran/2025-11-20")
    found = config_changes(base, head)
    assert [(c.key, c.kind, c.old, c.new, c.r_upstream) for c in found.changes] == [
        ("images.lab.r_repo", "changed", "https://packagemanager.posit.co/cran/2025-11-20",
         OTHER_UPSTREAM, True),
        ("index.cran_upstream", "changed", "https://packagemanager.posit.co/cran/2025-11-20",
         OTHER_UPSTREAM, True),
    ]  # fmt: skip
    assert found.changes[1].meaning.startswith("CRAN-like repository the vetted R packages")
    assert re.fullmatch(r"[0-9a-f]{16}", found.fingerprint)
    review = Review("main (abc)", Changes((), (), (), ()), config=found)
    text = render_text(review)
    assert text.index("!! Where packages come from and go: imagebot.toml changes (2; NOT") < (
        text.index("Entries added, changed or removed")
    )
    assert (
        '  ~ index.cran_upstream: "https://packagemanager.posit.co/cran/2025-11-20" -> '
        f'"{OTHER_UPSTREAM}"\n'
    ) in text
    assert f"--accept-config {found.fingerprint}" in text
    markdown = render_markdown(review)
    assert markdown.index("### Where packages come from and go") < markdown.index("### Entries")
    assert f'| changed | index.cran\\_upstream | "https://packagemanager.posit.co/cran/2025-11-20" | "{OTHER_UPSTREAM}" |' in markdown  # fmt: skip
    data = review_json(review)
    assert list(data)[:2] == ["base", "config"]
    assert data["config"]["changes"][1] == {
        "key": "index.cran_upstream",
        "kind": "changed",
        "meaning": found.changes[1].meaning,
        "r_upstream": True,
        "old": "https://packagemanager.posit.co/cran/2025-11-20",
        "new": OTHER_UPSTREAM,
    }
    assert data["config"]["accepted"] is False
    assert [p["file"] for p in data["problems"]] == ["imagebot.toml"]


def test_no_section_when_imagebot_toml_keeps_its_values() -> None:
    from imagebot.review_config import config_changes

    reformatted = "# a comment\n" + CONFIG.replace('auth = "basic"', "auth    =   'basic'  # why")
    found = config_changes(CONFIG, reformatted)
    assert not found.shown and found.problems() == [] and found.fingerprint == ""
    review = Review("main (abc)", Changes((), (), (), ()), config=found)
    assert "Where packages come from" not in render_text(review) + render_markdown(review)
    assert review_json(review)["config"] == {
        "file": "imagebot.toml",
        "changes": [],
        "note": "",
        "fingerprint": "",
        "accepted": False,
    }


@pytest.mark.parametrize(
    ("base", "unreadable", "note"),
    [
        ("[index\nurl = 1", "", "the base's imagebot.toml is not valid TOML (Expected ']'"),
        (None, "", "the base's imagebot.toml does not exist: every key"),
        (None, "is not UTF-8", "the base's imagebot.toml is not UTF-8: every key"),
        ("[a]\n" + "x = " + "[" * 5000 + "]" * 5000, "", "not valid TOML"),
    ],
    ids=["not-toml", "absent", "not-utf8", "too-deep"],
)
def test_a_base_imagebot_toml_that_cannot_be_compared_is_said(
    base: str | None, unreadable: str, note: str
) -> None:
    from imagebot.review_config import config_changes

    found = config_changes(base, CONFIG, base_unreadable=unreadable)
    assert note in found.note
    assert {c.kind for c in found.changes} == {"added"}
    assert "registry.url" in {c.key for c in found.changes}
    review = Review("main (abc)", Changes((), (), (), ()), config=found)
    assert f"  note: {found.note[:40]}" in render_text(review)
    assert "**Note: the base" in render_markdown(review)
    assert found.problems()  # a whole new configuration needs a reviewer's acceptance too


def test_a_broken_working_tree_file_is_said_not_raised() -> None:
    from imagebot.review_config import config_changes

    found = config_changes(CONFIG, "[index\n")
    assert (
        found.changes == () and "the working tree's imagebot.toml is not valid TOML" in found.note
    )
    assert found.problems() == []  # load_config refuses such a file before a review runs


def test_profiles_count_and_pick_the_r_upstream_only_for_the_review_s_profile() -> None:
    from imagebot.review_config import config_changes

    head = CONFIG + '\n[profiles.local.images.lab]\nr_repo = "http://127.0.0.1:9/cran"\n'
    local = config_changes(CONFIG, head, profile="local")
    plain = config_changes(CONFIG, head)
    assert [c.key for c in local.changes] == ["profiles.local.images.lab.r_repo"]
    assert local.changes[0].r_upstream and not plain.changes[0].r_upstream
    assert local.changes[0].meaning.startswith("CRAN-like repository for sets")


def test_an_acceptance_is_for_exactly_these_changes() -> None:
    from imagebot.review_config import accept_config_changes, config_changes

    found = config_changes(CONFIG, CONFIG.replace("registry.example.org", "evil.example"))
    accepted = accept_config_changes(found, found.fingerprint)
    assert accepted.accepted and accepted.problems() == []
    assert "accepted with --accept-config" in render_text(Review("b", Changes((), (), (), ()), config=accepted))  # fmt: skip
    again = config_changes(CONFIG, CONFIG.replace("registry.example.org", "evil2.example"))
    refused = accept_config_changes(again, found.fingerprint)
    assert not refused.accepted and refused.refused == found.fingerprint
    assert f"the acceptance given ({found.fingerprint}) is not for these changes" in render_text(
        Review("b", Changes((), (), (), ()), config=refused)
    )
    assert accept_config_changes(config_changes(CONFIG, CONFIG), "anything").problems() == []


def test_toml_values_that_json_cannot_hold_are_text() -> None:
    from imagebot.review_config import config_changes

    found = config_changes(CONFIG, CONFIG + "[x]\nwhen = 1979-05-27\nn = inf\n")
    data = review_json(Review("b", Changes((), (), (), ()), config=found))
    assert [(c["key"], c["new"]) for c in data["config"]["changes"]] == [
        ("x.n", "inf"),
        ("x.when", "1979-05-27"),
    ]
    json.dumps(data, allow_nan=False)
    assert "not a key imagebot reads" in render_text(Review("b", Changes((), (), (), ()), config=found))  # fmt: skip


def test_a_pull_request_that_points_the_r_upstream_at_its_own_server_fails_until_accepted(
    r_repo: tuple[Any, Upstream], run_cli: Any
) -> None:
    """The pull request moves cran_upstream (and r_repo) to another server and relocks: its
    server vouches for the lock, and the report says so, first and in the verified line."""
    project, upstream = r_repo
    with cran_upstream() as own:
        project.write("imagebot.toml", r_config(CONFIG, own.url))
        project.path("requirements/cran.lock").unlink()
        assert run_cli("--config", project.config, "lock").code == 0
        result = run_cli(
            "--config", project.config, "review", "--base", "main", "--json", "--advisories", "osv"
        )
        assert result.code == 4, result.err
        assert result.error_lines == ["error: 1 problem in the pull request's imagebot.toml"]
        assert "imagebot.toml: this pull request changes 2 key(s)" in result.err
        report = json.loads(result.out)
        changed = {c["key"]: (c["old"], c["new"]) for c in report["config"]["changes"]}
        assert changed == {
            "images.lab.r_repo": (upstream.url, own.url),
            "index.cran_upstream": (upstream.url, own.url),
        }
        assert report["r"]["verified"]["upstreams"] == [own.url]
        assert report["r"]["verified"]["changed_by_pull_request"] == [
            "images.lab.r_repo",
            "index.cran_upstream",
        ]
        text = run_cli(
            "--config", project.config, "review", "--base", "main", "--advisories", "osv"
        ).out
        assert text.splitlines()[2].startswith("!! Where packages come from and go")
        assert (
            f"  verified: the PACKAGES of {own.url} lists the 2 new or changed package versions "
            "of requirements/cran.lock exactly as the lock says (1 request); BUT this pull "
            "request itself sets that upstream (it changes imagebot.toml's images.lab.r_repo, "
            "index.cran_upstream)"
        ) in text
        fingerprint = report["config"]["fingerprint"]
        accepted = run_cli(
            "--config", project.config, "review", "--base", "main", "--advisories", "osv",
            "--accept-config", fingerprint,
        )  # fmt: skip
        assert accepted.code == 0, accepted.err
        assert f"accepted with --accept-config {fingerprint}" in accepted.out


def test_a_base_imagebot_toml_that_does_not_parse_does_not_stop_the_review(
    r_repo: tuple[Any, Upstream], run_cli: Any
) -> None:
    import subprocess

    project, _ = r_repo
    good = project.path("imagebot.toml").read_text()
    for broken, note in (
        (b"[registry\n", "the base's imagebot.toml is not valid TOML"),
        (b'[registry]\nurl = "\xff"\n', "the base's imagebot.toml is not UTF-8"),
    ):
        project.path("imagebot.toml").write_bytes(broken)
        subprocess.run(["git", "commit", "-qam", "broken"], cwd=project.root, check=True)
        project.write("imagebot.toml", good)
        result = run_cli(
            "--config", project.config, "review", "--base", "HEAD", "--json", "--advisories", "osv"
        )
        assert result.code == 4 and "Traceback" not in result.err
        assert note in json.loads(result.out)["config"]["note"]
