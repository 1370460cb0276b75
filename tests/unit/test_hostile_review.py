"""Hostile-input rows for `imagebot review`: the base revision (a command-line value that reaches
git) and the requester's confirmation (a set-file value that reaches the report, the Azure log
and the run's summary page). Each refused row: its exit code, one `error:` line, no traceback,
every file (the git repository included) byte-identical, and git never saw the value.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cran_fixtures import Upstream, cran_upstream, r_config

from imagebot.lockfile import seal
from tests.unit.conftest import CONFIG, Hostile, Project, Result, assert_refused, git_repo

if TYPE_CHECKING:
    from imagebot.cran import RPackage


def base(value: str) -> Hostile:
    return Hostile(
        f"base-{value[:20]}",
        git_repo,
        ("review", f"--base={value}"),
        2,
        "is not a git revision imagebot accepts",
    )


def with_confirmation(text: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        git_repo(project, monkeypatch)
        line = (
            'polars = { version = "1.0.0", reason = "frames", requested_by = "@anna", '
            f"safe_because = {text} }}\n"
        )
        path = project.path("requirements/extra.toml")
        path.write_text(path.read_text().replace("[r]\n", line + "\n[r]\n"), encoding="utf-8")

    return setup


CASES = [
    base("--upload-pack=touch PWNED"),
    base("-c"),
    base("HEAD;touch PWNED"),
    base("$(touch PWNED)"),
    base("main..HEAD"),
    base("main\nHEAD"),
    base("HEAD:requirements"),
    base("x" * 300),
    Hostile(
        "base-unknown",
        git_repo,
        ("review", "--base", "no-such-branch"),
        2,
        "is not a commit in this repository",
    ),
    Hostile(
        "confirmation-newline",
        with_confirmation('"checked\\n##vso[task.setvariable variable=X]1"'),
        ("review", "--base", "main"),
        4,
        "problem",
    ),
    Hostile(
        "add-confirmation-newline",
        lambda project, monkeypatch: None,
        (
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
            "checked\n##vso[task.setvariable variable=X]1",
        ),
        4,
        "safe_because",
    ),
    Hostile(
        "confirmation-not-a-string",
        with_confirmation("true"),
        ("review", "--base", "main"),
        4,
        "problem",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_refused(
    case: Hostile,
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
) -> None:
    import imagebot.gitops

    seen: list[list[str]] = []
    real = imagebot.gitops.run_git

    def recording(args: Any, cwd: Path, env: Any) -> Any:
        seen.append(list(args))
        return real(args, cwd, env)

    monkeypatch.setattr(imagebot.gitops, "run_git", recording)
    result = assert_refused(case, project, monkeypatch, run_cli)
    assert "safe_because" in result.err or case.id.startswith("base")
    given = case.argv[-1].removeprefix("--base=")
    if case.id.startswith("base-") and case.id != "base-unknown":
        assert seen == []  # refused before any git command ran
    assert not any(given in arg and arg != f"{given}^{{commit}}" for args in seen for arg in args)
    assert not project.path("PWNED").exists()


# --- R: the R lock (requirements/cran.lock) is pull-request text too ------------------------

POSIT = "https://packagemanager.posit.co/cran/2025-11-20"
UPSTREAM: list[Upstream] = []  # the module's loopback CRAN-like upstream, for the rows' setups


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with cran_upstream({}) as served:
        UPSTREAM[:] = [served]
        yield served
        UPSTREAM.clear()


def listing(repository: str, license: str = "MIT + file LICENSE") -> list[RPackage]:
    """What the upstream's PACKAGES lists: dplyr 1.1.0, which imports R6 2.5.1 (`license`
    for both)."""
    from imagebot.cran import RPackage

    return [
        RPackage(
            "dplyr",
            "1.1.0",
            "0" * 32,
            {
                "Package": "dplyr",
                "Version": "1.1.0",
                "Imports": "R6",
                "License": license,
                "NeedsCompilation": "yes",
            },
            repository,
        ),
        RPackage(
            "R6",
            "2.5.1",
            "1" * 32,
            {
                "Package": "R6",
                "Version": "2.5.1",
                "License": license,
                "NeedsCompilation": "no",
            },
            repository,
        ),
    ]


def r_lock(
    license: str = "MIT + file LICENSE", name: str = "dplyr", repository: str = POSIT
) -> str:
    """The R lock `imagebot lock` writes for index-only `name` 1.1.0 and its dependency R6
    from `repository`, then with `license` (and `name`) spliced in as a hand edit would."""
    from imagebot.cran import Available, RRoot, closure
    from imagebot.cranlock import format_cran_lock

    roots = [RRoot("dplyr", "1.1.0", "index-only", "wrangling", "@anna")]
    text = format_cran_lock(
        roots,
        closure(roots, Available.from_upstreams([listing(repository)])),
        "sha256:" + "0" * 64,
    )
    text = text.replace("License: MIT + file LICENSE", f"License: {license}")
    return text.replace("Package: dplyr", f"Package: {name}")


def serve(upstream: Upstream, packages: list[RPackage]) -> None:
    """The upstream's PACKAGES.gz: exactly `packages`' stanzas."""
    from imagebot.cran import write_dcf

    text = write_dcf({**p.fields, "MD5sum": p.md5} for p in packages)
    upstream.served.clear()  # the server reads this dict
    upstream.served["/cran/src/contrib/PACKAGES.gz"] = gzip.compress(text.encode(), mtime=0)
    upstream.requests.clear()


def r_project(project: Project, upstream: Upstream) -> None:
    """imagebot.toml names the loopback upstream, as `[index] cran_upstream`."""
    project.write("imagebot.toml", r_config(CONFIG, upstream.url))


def advisories(project: Project) -> None:
    """An advisory directory with one R record, so review audits without the network."""
    folder = project.path("osv/vulns/R6")
    folder.mkdir(parents=True)
    (folder / "RSEC-2099-1.json").write_text(
        '{"id": "RSEC-2099-1", "modified": "2099-01-01T00:00:00Z", "affected": [{"package": '
        '{"ecosystem": "CRAN", "name": "R6"}, "versions": ["2.4.0"]}]}',
        encoding="utf-8",
    )


def with_head_r_lock(text: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        git_repo(project, monkeypatch)
        project.path("requirements/cran.lock").write_text(text, encoding="utf-8")

    return setup


R_CASES = [
    Hostile(
        "r-lock-name-control-character",
        with_head_r_lock(r_lock(name="dplyr\x1b[2J")),
        ("review", "--base", "main"),
        5,
        "requirements/cran.lock",
    ),
    Hostile(
        "r-lock-license-control-character",
        with_head_r_lock(r_lock(license="MIT\x07##vso[task.complete result=Succeeded]")),
        ("review", "--base", "main"),
        5,
        "License",
    ),
    Hostile(
        "r-lock-field-injected",
        with_head_r_lock(r_lock(license="MIT\nMD5sum: " + "f" * 32)),
        ("review", "--base", "main"),
        5,
        "requirements/cran.lock",
    ),
]


@pytest.mark.parametrize("case", R_CASES, ids=lambda c: c.id)
def test_r_lock_refused(
    case: Hostile,
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
) -> None:
    result = assert_refused(case, project, monkeypatch, run_cli)
    assert "\x1b" not in result.err and "\x07" not in result.err
    assert "imagebot lock" in result.err  # the hint: regenerate it


HOSTILE_LICENSE = "MIT ##vso[task.setvariable variable=X]1 <img src=x onerror=alert(1)> | [a](javascript:alert(1)) *b*"


def test_r_facts_with_markdown_and_azure_injection_are_escaped(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
    tmp_path_factory: pytest.TempPathFactory,
    upstream: Upstream,
) -> None:
    """Even a licence the upstream itself lists is hostile text to the report."""
    r_project(project, upstream)
    git_repo(project, monkeypatch)
    advisories(project)
    serve(upstream, listing(upstream.url, HOSTILE_LICENSE))
    project.path("requirements/cran.lock").write_text(
        r_lock(license=HOSTILE_LICENSE, repository=upstream.url), encoding="utf-8"
    )
    markdown = tmp_path_factory.mktemp("md") / "review.md"
    result = run_cli(
        "--config",
        project.config,
        "review",
        "--base",
        "main",
        "--advisories",
        project.path("osv"),
        "--markdown",
        markdown,
    )
    assert result.code == 0, result.err
    assert "##vso[" not in result.out and "R packages new to the R lock (2" in result.out
    assert "licence: MIT" in result.out and "needed by dplyr==1.1.0" in result.out
    md = markdown.read_text(encoding="utf-8")
    line = next(x for x in md.splitlines() if "licence: MIT" in x)
    assert not re.search(r"(?<!\\)<img", line) and "\\<img" in line
    assert "\\[a\\](javascript:alert(1))" in line and "\\|" in line and "\\*b\\*" in line
    assert "##vso[" not in md.replace("\\#\\#vso\\[", "")


def test_a_hostile_name_in_the_base_r_lock_is_not_the_head_s_problem(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
    upstream: Upstream,
) -> None:
    """The base revision's R lock is history: an unreadable one lends no R packages (so every
    head R package is new to the reviewer, and verified), and none of its bytes reach the
    report."""
    r_project(project, upstream)
    project.path("requirements/cran.lock").write_text(
        r_lock(name="dplyr\x1b]0;pwned\x07\r##vso[task.complete]"), encoding="utf-8"
    )
    git_repo(project, monkeypatch)
    advisories(project)
    serve(upstream, listing(upstream.url))
    project.path("requirements/cran.lock").write_text(
        r_lock(repository=upstream.url), encoding="utf-8"
    )
    result = run_cli(
        "--config",
        project.config,
        "review",
        "--base",
        "main",
        "--json",
        "--advisories",
        project.path("osv"),
    )
    assert result.code == 0, result.err
    assert "\x1b" not in result.out + result.err and "pwned" not in result.out + result.err
    data = json.loads(result.out)
    assert [p["name"] for p in data["r"]["new_packages"]] == ["R6", "dplyr"]
    assert data["r"]["verified"] == {
        "packages": 2,
        "upstreams": [upstream.url],
        "requests": 1,
        "changed_by_pull_request": [],
    }
    assert data["vulnerabilities"]["checked"] is True


# --- R: a resealed lock must still be what the upstream lists ---------------------------------
# A pull request can edit requirements/cran.lock and recompute its digests (plain sha256), so
# `lock --check` passes; review has the upstream's PACKAGES vouch for every new or changed
# stanza before it shows one fact from it.

Edit = Callable[[str], str]


def in_stanza(name: str, old: str, new: str) -> Edit:
    """Replace `old` by `new` in the stanza of package `name` only."""

    def edit(text: str) -> str:
        head, marker, rest = text.partition(f"Package: {name}\n")
        stanza, gap, tail = rest.partition("\n\n")
        assert marker and old in stanza, (name, old)
        return head + marker + stanza.replace(old, new, 1) + gap + tail

    return edit


def vouched(
    edit: Edit,
    *,
    resealed: bool = True,
    base_locked: bool = False,
    repository: str = "",
    listed: Callable[[str], list[RPackage]] = listing,
) -> Callable[[Project, pytest.MonkeyPatch], None]:
    """The head's cran.lock as `imagebot lock` writes it against the loopback upstream, then
    `edit`ed (and resealed); the base has no R lock, or (`base_locked`) the unedited one."""

    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        up = UPSTREAM[0]
        r_project(project, up)
        clean = r_lock(repository=repository or up.url)
        if base_locked:
            project.path("requirements/cran.lock").write_text(clean, encoding="utf-8")
        git_repo(project, monkeypatch)
        advisories(project)
        serve(up, listed(up.url))
        edited = edit(clean)
        text = seal(edited) if resealed else edited
        project.path("requirements/cran.lock").write_text(text, encoding="utf-8")

    return setup


def same(text: str) -> str:
    return text


REVIEW = ("review", "--base", "main", "--advisories", "osv")
VOUCH_ROWS = [
    Hostile(
        "r-lock-false-license-resealed",
        vouched(in_stanza("dplyr", "License: MIT + file LICENSE", "License: Apache-2.0")),
        REVIEW,
        13,
        'dplyr==1.1.0: {url}\'s PACKAGES says License "MIT + file LICENSE", cran.lock has '
        '"Apache-2.0"',
    ),
    Hostile(
        "r-lock-false-license-not-resealed",
        vouched(
            in_stanza("dplyr", "License: MIT + file LICENSE", "License: Apache-2.0"),
            resealed=False,
        ),
        REVIEW,
        13,
        'License "MIT + file LICENSE", cran.lock has "Apache-2.0"',
    ),
    Hostile(
        "r-lock-false-license-on-a-locked-version",
        vouched(in_stanza("R6", "License: MIT + file LICENSE", "License: CC0"), base_locked=True),
        REVIEW,
        13,
        'R6==2.5.1: {url}\'s PACKAGES says License "MIT + file LICENSE", cran.lock has "CC0"',
    ),
    Hostile(
        "r-lock-false-needs-compilation",
        vouched(in_stanza("dplyr", "NeedsCompilation: yes", "NeedsCompilation: no")),
        REVIEW,
        13,
        'NeedsCompilation "yes", cran.lock has "no"',
    ),
    Hostile(
        "r-lock-false-dependency",
        vouched(in_stanza("dplyr", "Imports: R6", "Imports: R6 (>= 2.0)")),
        REVIEW,
        13,
        'Imports "R6", cran.lock has "R6 (>= 2.0)"',
    ),
    Hostile(
        "r-lock-dependency-dropped",
        vouched(in_stanza("dplyr", "Imports: R6\n", "")),
        REVIEW,
        13,
        'Imports "R6", cran.lock has (none)',
    ),
    Hostile(
        "r-lock-field-imagebot-never-writes",
        vouched(in_stanza("dplyr", "NeedsCompilation: yes", "NeedsCompilation: yes\nSuggests: x")),
        REVIEW,
        13,
        'Suggests (none), cran.lock has "x"',
    ),
    Hostile(
        "r-lock-false-md5",
        vouched(in_stanza("R6", "MD5sum: " + "1" * 32, "MD5sum: " + "2" * 32)),
        REVIEW,
        13,
        f"MD5sum {'1' * 32}, cran.lock has {'2' * 32}",
    ),
    Hostile(
        "r-lock-version-not-listed",
        vouched(same, listed=lambda url: listing(url)[1:]),
        REVIEW,
        13,
        "dplyr==1.1.0 is not in the PACKAGES of {url}",
    ),
    Hostile(
        "r-lock-upstream-not-configured",
        vouched(same, repository="http://127.0.0.1:9/cran"),
        REVIEW,
        13,
        "R6==2.5.1 comes from http://127.0.0.1:9/cran, which is not a configured CRAN-like",
    ),
]


@pytest.mark.parametrize("case", VOUCH_ROWS, ids=lambda c: c.id)
def test_a_lock_the_upstream_does_not_vouch_for_is_refused(
    case: Hostile,
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
    upstream: Upstream,
) -> None:
    monkeypatch.chdir(project.root)  # --advisories osv: relative to the working directory
    row = Hostile(case.id, case.setup, case.argv, case.code, case.expected.format(url=upstream.url))
    result = assert_refused(row, project, monkeypatch, run_cli)
    assert result.out == ""  # refused before any report: no fact the upstream did not give
    if case.id == "r-lock-upstream-not-configured":
        assert upstream.requests == []  # refused before any request
    else:
        assert "delete requirements/cran.lock, run `imagebot lock`" in result.err
        assert upstream.requests == ["/cran/src/contrib/PACKAGES.gz"]


# --- imagebot.toml: a change of where packages come from and go ------------------------------

# Values and key names that no `[profiles.NAME]` the review runs with reads, so load_config
# never validates them: only the report shows them. Control characters, a bidirectional
# override, Azure commands and Markdown/HTML markup.
HOSTILE_VALUE = '"http://evil.example/\\u202e\\n##vso[task.setvariable variable=X]1\\r| **x** <b>`y`</b> [z](http://e)"'
HOSTILE_KEY = '"x\\n##vso[task.complete result=Succeeded]|*"'


def with_config(change: Callable[[str], str]) -> Callable[[Project, pytest.MonkeyPatch], None]:
    """The base commits the project's imagebot.toml; the working tree's is `change(text)`."""

    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        git_repo(project, monkeypatch)
        path = project.path("imagebot.toml")
        path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")

    return setup


def with_base_config(text: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    """The base's imagebot.toml is `text` (history: anything); the working tree's is sound."""

    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        path = project.path("imagebot.toml")
        good = path.read_bytes()
        path.write_text(text, encoding="utf-8")
        git_repo(project, monkeypatch)
        path.write_bytes(good)

    return setup


CONFIG_CASES = [
    Hostile(
        "config-hostile-profile-value",
        with_config(lambda t: t + f"\n[profiles.evil.index]\ncran_upstream = {HOSTILE_VALUE}\n"),
        ("review", "--base", "main"),
        4,
        "imagebot.toml: this pull request changes 1 key(s)",
    ),
    Hostile(
        "config-hostile-key-name",
        with_config(lambda t: t + f"\n[profiles.{HOSTILE_KEY}]\na = 1\n"),
        ("review", "--base", "main"),
        4,
        "imagebot.toml: this pull request changes 1 key(s)",
    ),
    Hostile(
        "config-hostile-base-value",
        with_base_config(CONFIG + f"\n[profiles.evil.index]\ncran_upstream = {HOSTILE_VALUE}\n"),
        ("review", "--base", "main"),
        4,
        "imagebot.toml: this pull request changes 1 key(s)",
    ),
    Hostile(
        "config-base-not-toml",
        with_base_config("[registry\n\x00\x1b[2J"),
        ("review", "--base", "main"),
        4,
        "imagebot.toml: this pull request changes",
    ),
    Hostile(
        "config-acceptance-for-other-changes",
        with_config(lambda t: t.replace("registry.example.org", "evil.example")),
        ("review", "--base", "main", "--accept-config", "0123456789abcdef"),
        4,
        "and go (registry.url), and no reviewer has accepted these changes",
    ),
    Hostile(
        "config-hostile-acceptance",
        with_config(lambda t: t.replace("registry.example.org", "evil.example")),
        ("review", "--base", "main", "--accept-config", "x\n##vso[task.complete]\x1b[2J"),
        4,
        "and go (registry.url), and no reviewer has accepted these changes",
    ),
]


def _no_raw_markup(text: str) -> None:
    assert "\u202e" not in text and "\x1b" not in text and "\r" not in text
    assert "##vso[" not in text
    assert "##[" not in text


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c.id)
def test_a_changed_imagebot_toml_is_shown_escaped_and_fails_the_review(
    case: Hostile,
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
    tmp_path: Path,
) -> None:
    result = assert_refused(case, project, monkeypatch, run_cli)
    _no_raw_markup(result.out + result.err)
    assert "Where packages come from and go" in result.out.splitlines()[2]
    markdown = tmp_path / "review.md"
    run_cli("--config", project.config, *case.argv, "--markdown", str(markdown))
    text = markdown.read_text(encoding="utf-8")
    _no_raw_markup(text)
    section = text[text.index("### Where packages") : text.index("### Entries")]
    assert not re.search(r"(?<!\\)(<b>|\*x|\[z|`y)", section)  # every markup character escaped
    assert all(line.count("|") - line.count("\\|") == 6 for line in section.splitlines() if line.startswith("| "))  # fmt: skip
    data = json.loads(run_cli("--config", project.config, *case.argv, "--json").out)
    if case.id == "config-hostile-profile-value":
        (change,) = data["config"]["changes"]
        assert change["new"].startswith("http://evil.example/\u202e\n##vso[")  # JSON: as it is
        assert change["key"] == "profiles.evil.index.cran_upstream"
        assert not change["r_upstream"]  # the review does not run with profile evil
        assert "\\u202e\\n\\u0023" not in result.out and "\\u202e\\n" in result.out
