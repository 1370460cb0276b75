"""OSV records, range evaluation, waivers and the audit operation, on hand-written records."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from imagebot.advisories import (
    CRAN,
    PYPI,
    Advisory,
    Event,
    Package,
    Range,
    RecordError,
    advisory_from_mapping,
    find_affected,
    in_range,
    in_versions,
    merge_packages,
    parse_json,
    parse_yaml,
)
from imagebot.audit import audit
from imagebot.errors import AdvisorySourceError, TransientError
from imagebot.osv import DirectorySource, OsvApi, Records, source_for
from imagebot.waivers import Waiver, apply_waivers, parse_waivers

TODAY = date(2026, 11, 30)


def ecosystem(*events: tuple[str, str]) -> Range:
    return Range("ECOSYSTEM", tuple(Event(kind, version) for kind, version in events))


def record(
    ident: str = "PYSEC-2099-1",
    name: str = "demo",
    events: Sequence[Mapping[str, str]] = ({"introduced": "0"}, {"fixed": "2.0"}),
    versions: Sequence[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    affected: dict[str, Any] = {
        "package": {"ecosystem": "PyPI", "name": name},
        "ranges": [{"type": "ECOSYSTEM", "events": list(events)}],
    }
    if versions is not None:
        affected["versions"] = list(versions)
    return {"id": ident, "modified": "2024-01-01T00:00:00Z", "affected": [affected], **extra}


def pkg(name: str, version: str, origin: str = "base.lock") -> Package:
    return Package(PYPI, name, version, (origin,))


# --- range evaluation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.0.1", True),
        ("1.0a1", True),  # pre-releases are above "0"
        ("0.dev0", True),  # "0" is below everything, dev releases of 0 included
        ("1.9.9", True),
        ("2.0rc1", True),  # a release candidate comes before the fix
        ("2.0", False),
        ("2.0.0", False),  # PEP 440 equality: 2.0 == 2.0.0
        ("2.0.post1", False),
        ("10.0", False),  # numeric, not string, order
    ],
)
def test_introduced_zero_fixed(version: str, expected: bool) -> None:
    assert in_range(version, ecosystem(("introduced", "0"), ("fixed", "2.0"))) is expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.9", False),
        ("1.0", True),
        ("1.4.9", True),
        ("1.5", False),
        ("1.9", False),
        ("2.0", True),
        ("2.4", True),
        ("2.5", False),
        ("3.0", False),
    ],
)
def test_two_intervals_in_one_range(version: str, expected: bool) -> None:
    rng = ecosystem(
        ("introduced", "1.0"), ("fixed", "1.5"), ("introduced", "2.0"), ("fixed", "2.5")
    )
    assert in_range(version, rng) is expected


def test_events_are_sorted_before_they_are_walked() -> None:
    shuffled = ecosystem(
        ("fixed", "2.5"), ("introduced", "2.0"), ("fixed", "1.5"), ("introduced", "1.0")
    )
    assert [v for v in ("0.9", "1.2", "1.7", "2.2", "2.7") if in_range(v, shuffled)] == [
        "1.2",
        "2.2",
    ]


@pytest.mark.parametrize(
    ("version", "expected"),
    [("0.5", False), ("1.0", True), ("1.11.0", True), ("1.11.0.post1", False), ("1.12", False)],
)
def test_last_affected_is_inclusive(version: str, expected: bool) -> None:
    rng = ecosystem(("introduced", "1.0"), ("last_affected", "1.11.0"))
    assert in_range(version, rng) is expected


def test_introduced_without_an_end_affects_every_later_version() -> None:
    rng = ecosystem(("introduced", "3.1"))
    assert not in_range("3.0.9", rng)
    assert in_range("3.1", rng)
    assert in_range("99.0", rng)


def test_limit_caps_the_range() -> None:
    rng = ecosystem(("introduced", "0"), ("limit", "5.0"))
    assert in_range("4.9", rng)
    assert not in_range("5.0", rng)


def test_ranges_that_cannot_be_ordered_match_nothing() -> None:
    assert not in_range("1.0", Range("GIT", (Event("introduced", "0"), Event("fixed", "abc123"))))
    assert not in_range("1.0", ecosystem(("introduced", "0"), ("fixed", "not a version!")))
    assert not in_range("not a version!", ecosystem(("introduced", "0")))


def test_explicit_versions() -> None:
    assert in_versions("0.5", ["0.4", "0.5"])
    assert in_versions("2.0.0", ["2.0"])  # PEP 440 equality
    assert not in_versions("0.50", ["0.5"])
    assert in_versions("weird-1", ["weird-1"])  # not PEP 440: exact text


def test_a_version_in_the_list_is_affected_even_outside_the_ranges() -> None:
    advisory = advisory_from_mapping(
        record(events=[{"introduced": "1.0"}, {"fixed": "1.1"}], versions=["0.5"])
    )
    assert advisory.affects(PYPI, "demo", "0.5")
    assert advisory.affects(PYPI, "demo", "1.0.3")
    assert not advisory.affects(PYPI, "demo", "0.6")


def test_versions_list_without_ranges() -> None:
    advisory = advisory_from_mapping(
        {
            "id": "PYSEC-2024-1",
            "affected": [{"package": {"ecosystem": "PyPI", "name": "gratient"}, "versions": [0.5]}],
        }
    )
    assert advisory.affects(PYPI, "gratient", "0.5")  # YAML's float 0.5 is the version "0.5"
    assert not advisory.affects(PYPI, "gratient", "0.6")
    assert advisory.fixed_versions(PYPI, "gratient", "0.5") == ()


def test_withdrawn_records_affect_nothing() -> None:
    advisory = advisory_from_mapping(record(withdrawn="2023-06-06T10:37:00Z"))
    assert advisory.withdrawn
    assert not advisory.affects(PYPI, "demo", "1.0")
    assert find_affected([pkg("demo", "1.0")], {(PYPI, "demo"): [advisory]}) == []


def test_names_are_matched_normalised_and_ecosystems_exactly() -> None:
    advisory = advisory_from_mapping(record(name="Zope.Interface"))
    assert advisory.affects(PYPI, "zope-interface", "1.0")
    assert advisory.affects(PYPI, "zope_interface", "1.0")
    assert not advisory.affects("npm", "zope-interface", "1.0")
    assert not advisory.affects(PYPI, "zope", "1.0")


def test_fixed_versions_are_those_above_the_version_lowest_first() -> None:
    advisory = advisory_from_mapping(
        record(
            events=[
                {"introduced": "0"},
                {"fixed": "3.2.15"},
                {"introduced": "4.0"},
                {"fixed": "4.0.7"},
            ]
        )
    )
    assert advisory.fixed_versions(PYPI, "demo", "3.2.10") == ("3.2.15", "4.0.7")
    assert advisory.fixed_versions(PYPI, "demo", "4.0.1") == ("4.0.7",)


def test_several_affected_entries_and_ranges() -> None:
    raw = record(events=[{"introduced": "1.0"}, {"fixed": "1.2"}])
    raw["affected"].append(
        {
            "package": {"ecosystem": "PyPI", "name": "demo"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "5.0"}, {"fixed": "5.1"}]}],
        }
    )
    advisory = advisory_from_mapping(raw)
    assert [v for v in ("1.1", "3.0", "5.0.1", "5.1") if advisory.affects(PYPI, "demo", v)] == [
        "1.1",
        "5.0.1",
    ]


# --- parsing -----------------------------------------------------------------------------------


YAML_RECORD = """\
id: PYSEC-2099-7
modified: 2024-01-03T22:31:36Z
details: "First line of the details.\\n##vso[task.setvariable variable=x]1\\e[31m"
aliases:
- CVE-2099-0007
- GHSA-aaaa-bbbb-cccc
affected:
- package:
    name: Demo_Pkg
    ecosystem: PyPI
  ranges:
  - type: GIT
    repo: https://example.org/demo
    events:
    - introduced: '0'
    - fixed: c45d7c49ea75133e52ab22a8e9e13173938e36ff
  - type: ECOSYSTEM
    events:
    - introduced: 0
    - last_affected: 1.11.0
  versions:
severity:
- type: CVSS_V3
  score: CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H
database_specific:
  severity: moderate
"""


def test_yaml_record() -> None:
    advisory = parse_yaml(YAML_RECORD)
    assert advisory.id == "PYSEC-2099-7"
    assert advisory.aliases == ("CVE-2099-0007", "GHSA-aaaa-bbbb-cccc")
    assert advisory.modified == "2024-01-03T22:31:36Z"  # an unquoted timestamp, as text
    assert advisory.affected[0].name == "demo-pkg"
    assert advisory.affected[0].versions == ()
    assert advisory.severity[0].type == "CVSS_V3"
    assert advisory.severity_label == "MODERATE"
    assert advisory.affects(PYPI, "demo-pkg", "1.11.0")
    assert not advisory.affects(PYPI, "demo-pkg", "1.12")
    # No summary: the details, on one printable line, control characters gone.
    assert advisory.summary.startswith("First line of the details. ##vso")
    assert "\n" not in advisory.summary and "\x1b" not in advisory.summary


def test_json_record_and_summary_cut() -> None:
    advisory = parse_json(json.dumps(record(summary="x" * 500)))
    assert len(advisory.summary) == 160 and advisory.summary.endswith("...")
    assert advisory.names() == ("PYSEC-2099-1",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "mapping with an `id`"),
        ('{"id": "../../etc/passwd"}', "not an advisory id"),
        ('{"id": "PYSEC-1-1", "affected": {"a": 1}}', "`affected` must be a list"),
        ('{"id": "PYSEC-1-1", "affected": [{"ranges": []}]}', "no `package`"),
        (
            '{"id": "PYSEC-1-1", "affected": [{"package": {"name": 1, "ecosystem": "PyPI"}}]}',
            "string",
        ),
        ("{" * 5000, "not JSON"),
    ],
)
def test_malformed_records(text: str, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        parse_json(text)


def test_a_malformed_alias_is_dropped_not_fatal() -> None:
    # The snapshot's keylime/PYSEC-2022-184.yaml lists "GHSA-jf66-3q76-h5p5," (with a comma).
    raw = record(aliases=["GHSA-jf66-3q76-h5p5,", "CVE-2022-1", "../x", 7])
    assert advisory_from_mapping(raw).aliases == ("CVE-2022-1",)


def test_malformed_yaml() -> None:
    with pytest.raises(RecordError, match="not YAML"):
        parse_yaml("id: [unclosed")


# --- packages ----------------------------------------------------------------------------------


def test_merge_packages_keeps_every_origin_once() -> None:
    merged = merge_packages(
        [pkg("b", "1.0", "base.lock"), pkg("a", "10.0"), pkg("a", "9.0"), pkg("b", "1.0", "index")]
    )
    assert [(str(p), p.origins) for p in merged] == [
        ("a==9.0", ("base.lock",)),
        ("a==10.0", ("base.lock",)),
        ("b==1.0", ("base.lock", "index")),
    ]


# --- waivers -----------------------------------------------------------------------------------

WAIVERS = """\
# accepted for now
[python]
"PYSEC-2099-1" = { package = "demo", reason = "we never call it", approved_by = "@platform-team", expires = 2027-03-01 }
CVE-2099-0002 = { package = "Other_Pkg", reason = "internal only", approved_by = "@anna", expires = 2026-01-01 }
"""


def test_waivers_parse_with_lines() -> None:
    waivers, problems = parse_waivers("requirements/waivers.toml", WAIVERS)
    assert problems == []
    first, second = waivers
    assert (first.advisory, first.package, first.expires, first.line) == (
        "PYSEC-2099-1",
        "demo",
        date(2027, 3, 1),
        3,
    )
    assert first.where == "requirements/waivers.toml:3"
    assert (second.advisory, second.package, second.line) == ("CVE-2099-0002", "other-pkg", 4)
    assert not first.expired(TODAY) and second.expired(TODAY)
    assert second.expired(date(2026, 1, 1))  # expired on its date
    assert not second.expired(date(2025, 12, 31))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('"PYSEC-1-1" = { package = "demo", reason = "r", approved_by = "@a" }', "has no expires"),
        (
            '"PYSEC-1-1" = { package = "demo", reason = "r", approved_by = "@a", expires = "2027-01-01" }',
            "expires must be a date",
        ),
        (
            '"PYSEC-1-1" = { package = "demo", reason = "r", approved_by = "@a", expires = 2027-01-01T00:00:00 }',
            "expires must be a date",
        ),
        (
            '"PYSEC-1-1" = { package = "de mo", reason = "r", approved_by = "@a", expires = 2027-01-01 }',
            "package",
        ),
        (
            '"PYSEC-1-1" = { package = "demo", reason = "a\\nb", approved_by = "@a", expires = 2027-01-01 }',
            "reason",
        ),
        (
            '"PYSEC-1-1" = { package = "demo", reason = " ", approved_by = "@a", expires = 2027-01-01 }',
            "reason is empty",
        ),
        (
            '"PYSEC-1-1" = { package = "demo", reason = "r", approved_by = "@a", expires = 2027-01-01, until = 1 }',
            "unknown field 'until'",
        ),
        (
            '"not an id" = { package = "demo", reason = "r", approved_by = "@a", expires = 2027-01-01 }',
            "not an advisory id",
        ),
        ('"PYSEC-1-1" = "demo"', "must be an inline table"),
    ],
)
def test_bad_waivers_name_their_line(line: str, message: str) -> None:
    waivers, problems = parse_waivers("w.toml", f"[python]\n{line}\n")
    assert waivers == []
    assert [p.line for p in problems] == [2]
    assert message in problems[0].message


def test_waiver_file_problems() -> None:
    _, problems = parse_waivers("w.toml", "[npm]\nx = 1\n")
    assert problems[0].message == "unknown table [npm]"
    _, problems = parse_waivers("w.toml", "[python\n")
    assert problems[0].message.startswith("invalid TOML") and problems[0].line == 1
    duplicate = '[python]\nPYSEC-1-1 = { package = "a" }\n\'PYSEC-1-1\' = { package = "b" }\n'
    _, problems = parse_waivers("w.toml", duplicate)  # TOML itself refuses a repeated key
    assert problems[0].message.startswith("invalid TOML") and problems[0].line == 3


def test_apply_waivers_by_id_or_alias() -> None:
    advisory = advisory_from_mapping(record(aliases=["CVE-2099-0002"]))
    other = advisory_from_mapping(record(ident="PYSEC-2099-9", name="other-pkg"))
    findings = find_affected(
        [pkg("demo", "1.0"), pkg("other-pkg", "1.0")],
        {(PYPI, "demo"): [advisory], (PYPI, "other-pkg"): [other]},
    )
    waivers, _ = parse_waivers("w.toml", WAIVERS)
    split = apply_waivers(findings, waivers, TODAY)
    assert [f.advisory.id for f, _ in split.waived] == ["PYSEC-2099-1"]
    assert [f.advisory.id for f in split.open] == ["PYSEC-2099-9"]
    assert [w.advisory for w in split.expired] == ["CVE-2099-0002"]
    assert split.unused == ()
    later = apply_waivers(findings, waivers, date(2027, 3, 1))  # the first one has expired too
    assert [f.advisory.id for f in later.open] == ["PYSEC-2099-1", "PYSEC-2099-9"]
    assert len(later.expired) == 2
    nothing = apply_waivers([], waivers, TODAY)
    assert [w.advisory for w in nothing.unused] == ["PYSEC-2099-1"]


def test_a_waiver_covers_its_package_only() -> None:
    advisory = advisory_from_mapping(record(name="demo"))
    finding = find_affected([pkg("demo", "1.0")], {(PYPI, "demo"): [advisory]})[0]
    waiver = Waiver("PYSEC-2099-1", PYPI, "another", "r", "@a", date(2027, 1, 1), "w.toml", 2)
    assert not waiver.covers(finding)


# --- the audit operation and the sources -------------------------------------------------------


class FakeSource:
    description = "fake"

    def __init__(self, records: Mapping[tuple[str, str], Sequence[Advisory]]) -> None:
        self._records = records

    def records(self, packages: Sequence[Package]) -> Records:
        return Records({p.key: tuple(self._records.get(p.key, ())) for p in packages}, requests=3)


def test_audit_result() -> None:
    advisory = advisory_from_mapping(record(aliases=["CVE-2099-0001"], summary="bad"))
    source = FakeSource({(PYPI, "demo"): [advisory]})
    packages = [pkg("demo", "1.0"), pkg("demo", "1.0", "index"), pkg("demo", "2.0", "index")]
    result = audit(packages, source, [], TODAY)
    assert not result.passed
    assert len(result.packages) == 2 and result.requests == 3
    (finding,) = result.findings
    assert finding.package.origins == ("base.lock", "index")
    assert finding.fix_text == "fixed in 2.0"
    lines = result.report_lines()
    assert lines[1] == "demo==1.0 (base.lock, index): PYSEC-2099-1 (CVE-2099-0001), fixed in 2.0"
    assert lines[2] == "    bad"
    document = result.to_json()
    assert document["findings"][0]["aliases"] == ["CVE-2099-0001"]
    assert document["findings"][0]["fixed"] == ["2.0"]
    assert json.loads(json.dumps(document)) == document
    waivers, _ = parse_waivers("w.toml", WAIVERS)
    assert audit(packages, source, waivers[:1], TODAY).passed


def write_records(root: Path, records: Mapping[str, Sequence[dict[str, Any]]]) -> Path:
    for project, raws in records.items():
        (root / "vulns" / project).mkdir(parents=True, exist_ok=True)
        for raw in raws:
            (root / "vulns" / project / f"{raw['id']}.json").write_text(json.dumps(raw))
    return root


def test_directory_source_reads_only_the_audited_projects(tmp_path: Path) -> None:
    write_records(
        tmp_path,
        {
            "Demo.Pkg": [record(name="demo-pkg")],
            "unrelated": [record(ident="PYSEC-2099-2", name="unrelated")],
        },
    )
    (tmp_path / "vulns" / "unrelated" / "broken.json").write_text("{")  # never read
    found = DirectorySource(tmp_path).records([pkg("demo-pkg", "1.0"), pkg("absent", "1.0")])
    assert found.files_read == 1
    assert [a.id for a in found.by_package[(PYPI, "demo-pkg")]] == ["PYSEC-2099-1"]
    assert found.by_package[(PYPI, "absent")] == ()


def test_directory_source_failures(tmp_path: Path) -> None:
    with pytest.raises(AdvisorySourceError, match="no project directories"):
        DirectorySource(tmp_path).records([])
    with pytest.raises(AdvisorySourceError, match="advisory directory"):
        DirectorySource(tmp_path / "absent").records([])
    write_records(tmp_path, {"demo": []})
    (tmp_path / "vulns" / "demo" / "PYSEC-1.yaml").write_text("id: [", encoding="utf-8")
    with pytest.raises(AdvisorySourceError, match=r"PYSEC-1\.yaml: not a readable OSV record"):
        DirectorySource(tmp_path).records([pkg("demo", "1.0")])


def test_source_for(tmp_path: Path) -> None:
    assert isinstance(source_for("https://api.osv.dev", tmp_path), OsvApi)
    assert isinstance(source_for("advisories", tmp_path), DirectorySource)
    with pytest.raises(AdvisorySourceError, match="user:password"):
        source_for("https://user:pw@osv.example", tmp_path)
    with pytest.raises(AdvisorySourceError, match="neither"):
        source_for("ftp://osv.example", tmp_path)


class FakeOsv:
    """An in-memory OSV API behind `imagebot.http.send`: pages of `page_size` ids per query."""

    def __init__(self, raws: Sequence[dict[str, Any]], page_size: int = 1, faults: int = 0):
        self.records = {raw["id"]: advisory_from_mapping(raw) for raw in raws}
        self.raws = {raw["id"]: raw for raw in raws}
        self.page_size = page_size
        self.faults = faults
        self.calls: list[tuple[str, str]] = []

    def send(self, method: str, url: str, **kwargs: Any) -> Any:
        from imagebot.http import Response

        path = url.split("://", 1)[1].split("/", 1)[1]
        self.calls.append((method, path))
        if self.faults:
            self.faults -= 1
            raise TransientError(f"HTTP 503 from {url}")
        if method == "POST":
            queries = json.loads(kwargs["data"])["queries"]
            body: Any = {"results": [self._answer(q) for q in queries]}
        else:
            ident = path.rsplit("/", 1)[1]
            if ident not in self.raws:
                return Response(url, 404, {}, b"{}")
            body = self.raws[ident]
        return Response(url, 200, {}, json.dumps(body).encode())

    def _answer(self, query: Mapping[str, Any]) -> dict[str, Any]:
        package = query["package"]
        ids = sorted(
            i
            for i, a in self.records.items()
            if a.affects(package["ecosystem"], package["name"], query["version"])
        )
        start = int(query.get("page_token") or 0)
        page = ids[start : start + self.page_size]
        result: dict[str, Any] = (
            {"vulns": [{"id": i, "modified": "x"} for i in page]} if page else {}
        )
        if start + self.page_size < len(ids):
            result["next_page_token"] = str(start + self.page_size)
        return result


@pytest.fixture
def fake_osv(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeOsv]:
    def make(*args: Any, **kwargs: Any) -> FakeOsv:
        fake = FakeOsv(*args, **kwargs)
        monkeypatch.setattr("imagebot.http.send", fake.send)
        return fake

    return make


def test_api_batches_pages_and_fetches_each_record_once(fake_osv: Callable[..., FakeOsv]) -> None:
    raws = [record(ident=f"PYSEC-2099-{i}") for i in range(3)] + [
        record(ident="PYSEC-2099-9", name="b")
    ]
    fake = fake_osv(raws, page_size=2)
    api = OsvApi("https://osv.example/", batch_size=2, backoff=0)
    packages = [pkg("demo", "1.0"), pkg("demo", "1.5"), pkg("b", "1.0"), pkg("c", "1.0")]
    found = api.records(packages)
    assert [a.id for a in found.by_package[(PYPI, "demo")]] == [f"PYSEC-2099-{i}" for i in range(3)]
    assert [a.id for a in found.by_package[(PYPI, "b")]] == ["PYSEC-2099-9"]
    posts = [c for c in fake.calls if c[0] == "POST"]
    gets = sorted(c[1] for c in fake.calls if c[0] == "GET")
    # 4 queries in batches of 2, then the two demo queries' second pages in one more batch.
    assert len(posts) == 3
    assert gets == [f"v1/vulns/PYSEC-2099-{i}" for i in (0, 1, 2, 9)]
    assert found.requests == 7
    again = api.records(packages[:1])  # cached per run: only the query is sent
    assert again.requests == 2


def test_api_retries_transient_faults(fake_osv: Callable[..., FakeOsv]) -> None:
    fake_osv([record()], faults=2)
    found = OsvApi("https://osv.example", backoff=0).records([pkg("demo", "1.0")])
    assert [a.id for a in found.by_package[(PYPI, "demo")]] == ["PYSEC-2099-1"]
    assert found.requests == 4  # two 503s, the query, the record


def test_api_gives_up_after_its_attempts(fake_osv: Callable[..., FakeOsv]) -> None:
    fake_osv([record()], faults=10)
    with pytest.raises(AdvisorySourceError, match=r"HTTP 503 .*\(after 3 attempts\)"):
        OsvApi("https://osv.example", attempts=3, backoff=0).records([pkg("demo", "1.0")])


def test_api_refuses_answers_that_are_not_osv(
    fake_osv: Callable[..., FakeOsv], monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagebot.http import Response

    fake = fake_osv([record()])
    answers = iter([b'{"results": []}', b'{"results": [{"vulns": [{"id": "../x"}]}]}', b"<html>"])
    monkeypatch.setattr(
        "imagebot.http.send", lambda method, url, **kw: Response(url, 200, {}, next(answers))
    )
    api = OsvApi("https://osv.example", backoff=0)
    for message in ("does not match the queries", "id is not valid", "not JSON"):
        with pytest.raises(AdvisorySourceError, match=message):
            api.records([pkg("demo", "1.0")])
    monkeypatch.setattr("imagebot.http.send", fake.send)
    fake.raws["PYSEC-2099-1"] = record(ident="PYSEC-2099-2")
    with pytest.raises(AdvisorySourceError, match="the record's id is PYSEC-2099-2"):
        api.records([pkg("demo", "1.0")])


# --- R packages (OSV ecosystem CRAN): R's version order ------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.0-0", True),
        ("1.1-9", True),
        ("1.1-10", False),  # numeric parts: 1.1-10 > 1.1-9, unlike string order
        ("1.1.10", False),  # R treats '-' and '.' alike
        ("1.2", False),
        ("0.9", False),  # below introduced
    ],
)
def test_cran_ranges_use_r_version_order(version: str, expected: bool) -> None:
    rng = ecosystem(("introduced", "1.0-0"), ("fixed", "1.1-10"))
    assert in_range(version, rng, CRAN) is expected


def test_a_hand_written_cran_record_finds_the_r_package_only() -> None:
    raw = record("RSEC-2099-1", "readxl", ({"introduced": "0"}, {"fixed": "1.4.2"}))
    raw["affected"][0]["package"]["ecosystem"] = "CRAN"
    advisory = advisory_from_mapping(raw)
    affected = Package(CRAN, "readxl", "1.4-1", ("r.toml",))
    fixed = Package(CRAN, "readxl", "1.4.2", ("r.toml",))
    python = Package(PYPI, "readxl", "1.4.1", ("base.lock",))
    by_package = {p.key: (advisory,) for p in (affected, python)}
    findings = find_affected([affected, fixed, python], by_package)
    assert [(f.package, f.fixed) for f in findings] == [(affected, ("1.4.2",))]
    assert in_versions("1.4-1", ["1.4.1"], CRAN)  # R equality: 1.4-1 == 1.4.1


def test_the_directory_source_reads_cran_records_and_matches_r_names_exactly(
    tmp_path: Path,
) -> None:
    """An R advisory database (vulns/<package>/RSEC-*.yaml) or one merged with PyPI's: the
    record's ecosystem and exact name decide, not the directory."""
    folder = tmp_path / "vulns" / "readxl"
    folder.mkdir(parents=True)
    python = record("PYSEC-2099-1", "readxl", ({"introduced": "0"}, {"fixed": "9.0"}))
    r_record = record("RSEC-2099-1", "readxl", ({"introduced": "0"}, {"fixed": "1.4-2"}))
    r_record["affected"][0]["package"]["ecosystem"] = "CRAN"
    (folder / "PYSEC-2099-1.json").write_text(json.dumps(python))
    (folder / "RSEC-2099-1.json").write_text(json.dumps(r_record))
    readxl = Package(CRAN, "readxl", "1.4.1", ("cran.lock",))
    other_case = Package(CRAN, "ReadXL", "1.4.1", ("cran.lock",))
    result = audit([readxl, other_case], DirectorySource(tmp_path), [], TODAY)
    assert [(str(f.package), f.advisory.id, f.fixed) for f in result.findings] == [
        ("readxl==1.4.1", "RSEC-2099-1", ("1.4-2",))
    ]
    assert result.files_read == 4  # both names share the directory; R's names are exact


def test_release_skips_an_absent_optional_source_and_says_so(tmp_path: Path) -> None:
    from imagebot.config import AdvisoriesConfig
    from imagebot.release import ABSENT_SOURCE_NOTE, release_audit

    class Cfg:
        root = tmp_path
        requirements_dir = tmp_path  # no sets, no waivers.toml
        locked_images = ()
        advisories = AdvisoriesConfig(source="missing", optional=True)

    said: list[str] = []
    note = release_audit(Cfg(), said.append)  # type: ignore[arg-type]
    assert note.startswith(ABSENT_SOURCE_NOTE) and said == [note]

    Cfg.advisories = AdvisoriesConfig(source="missing", optional=False)
    with pytest.raises(AdvisorySourceError):
        release_audit(Cfg(), said.append)  # type: ignore[arg-type]


def test_api_is_asked_about_r_packages_as_cran(fake_osv: Callable[..., FakeOsv]) -> None:
    raw = record("RSEC-2099-1", "readxl", ({"introduced": "0"}, {"fixed": "1.4-3"}))
    raw["affected"][0]["package"]["ecosystem"] = "CRAN"
    fake_osv([raw])
    readxl = Package(CRAN, "readxl", "1.4.2", ("r.toml",))
    result = audit([readxl], OsvApi("https://osv.example", backoff=0), [], TODAY)
    assert [(f.package, f.advisory.id, f.fixed) for f in result.findings] == [
        (readxl, "RSEC-2099-1", ("1.4-3",))
    ]
