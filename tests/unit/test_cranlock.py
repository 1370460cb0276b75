"""requirements/cran.lock: the format (imagebot.cranlock), its offline status, and `imagebot
lock`, `lock --check`, `check` and `index build` against a CRAN-like upstream on loopback."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cran_fixtures import PACKAGES, R_SET, Upstream, cran_upstream, r_config
from paths import REPO_ROOT

from imagebot.cran import Available, RPackage, RRoot, closure
from imagebot.cranlock import (
    CranLockStatus,
    LockedR,
    changed_since,
    cran_lock_inputs,
    cran_lock_status,
    format_cran_lock,
    lock_problem,
    locked_entries,
    parse_cran_lock,
    require_listed_as_locked,
    upstreams_named,
)
from imagebot.errors import PackageIndexError, StaleError
from imagebot.lock import CranLockInputs, resolve_cran
from imagebot.lockfile import seal
from tests.unit.conftest import CONFIG, Project, Result

Run = Callable[..., Result]
UA = "R (4.2.2 x86_64-pc-linux-gnu x86_64 linux-gnu)"
UP = "https://ppm.example/cran/2025-10-01"
OLD = "https://ppm.example/cran/2023-01-01"


def pkg(name: str, version: str, imports: str = "", repository: str = UP) -> RPackage:
    fields = {"Package": name, "Version": version}
    if imports:
        fields["Imports"] = imports
    fields["License"] = "MIT"
    md5 = hashlib.md5(f"{name} {version}".encode()).hexdigest()
    return RPackage(name, version, md5, fields, repository)


ROOTS = [
    RRoot("here", "1.0.1", "rcran", "paths", "@a"),
    RRoot("R6", "2.6.1", "index-only", "classes", "@b"),
    RRoot("R6", "2.5.1", "index-only", "an old project", "@c"),
]
AVAILABLE = Available.from_upstreams(
    [
        [
            pkg("here", "1.0.1", "rprojroot (>= 2.0.2), methods"),
            pkg("rprojroot", "2.0.3"),
            pkg("R6", "2.6.1"),
        ],
        [pkg("R6", "2.5.1", repository=OLD)],
    ]
)


def lock_text(roots: list[RRoot] = ROOTS) -> str:
    inputs = cran_lock_inputs(roots, [UP, OLD], UA)
    return format_cran_lock(roots, closure(roots, AVAILABLE), inputs)


# --- the format ------------------------------------------------------------------------------


def test_the_lock_round_trips_with_why_each_package_is_there() -> None:
    text = lock_text()
    assert "# inputs: sha256:" in text and "# content: sha256:" in text
    assert (
        "Package: here\nVersion: 1.0.1\nImports: rprojroot (>= 2.0.2), methods\nLicense: MIT\n"
        f"MD5sum: {pkg('here', '1.0.1').md5}\nUpstream: {UP}\nVettedIn: rcran\n"
    ) in text
    assert "Package: rprojroot\nVersion: 2.0.3\nLicense: MIT\nMD5sum: " in text
    assert "Upstream: https://ppm.example/cran/2025-10-01\nDependencyOf: here==1.0.1\n" in text
    lock = parse_cran_lock(text, "cran.lock")
    assert lock.intact and lock.inputs == cran_lock_inputs(ROOTS, [UP, OLD], UA)
    assert [p.pin for p in lock.packages] == [
        "R6==2.5.1",
        "R6==2.6.1",
        "here==1.0.1",
        "rprojroot==2.0.3",
    ]
    assert [p.pin for p in lock.roots()] == ["R6==2.5.1", "R6==2.6.1", "here==1.0.1"]
    assert [p.pin for p in lock.closure("here==1.0.1")] == ["here==1.0.1", "rprojroot==2.0.3"]
    assert lock.closure("rprojroot==2.0.3") == ()
    assert lock.packages[2].requires == ("rprojroot",)
    assert lock.packages[0].package.repository == OLD
    assert lock_problem(lock, ROOTS) == ""


def test_the_inputs_digest_covers_entries_upstreams_and_user_agent_not_reasons() -> None:
    digest = cran_lock_inputs(ROOTS, [UP, OLD], UA)
    assert digest == cran_lock_inputs(list(reversed(ROOTS)), [UP, OLD], UA)
    reworded = [RRoot(r.name, r.version, r.source, "another reason", "@z") for r in ROOTS]
    assert digest == cran_lock_inputs(reworded, [UP, OLD], UA)
    assert digest != cran_lock_inputs(ROOTS[:2], [UP, OLD], UA)
    moved = [RRoot("here", "1.0.1", "other", "paths", "@a"), *ROOTS[1:]]
    assert digest != cran_lock_inputs(moved, [UP, OLD], UA)
    assert digest != cran_lock_inputs(ROOTS, [OLD, UP], UA)
    assert digest != cran_lock_inputs(ROOTS, [UP, OLD], "R (4.3.0 aarch64)")


# --- the offline status ----------------------------------------------------------------------


def status(text: str | None, roots: list[RRoot] = ROOTS, ua: str = UA) -> CranLockStatus:
    return cran_lock_status(Path("requirements/cran.lock"), text, roots, [UP, OLD], ua)


def test_a_fresh_lock_is_fresh_and_parsed() -> None:
    found = status(lock_text())
    assert found.fresh and found.lock is not None and len(found.lock.packages) == 4
    assert found.require_fresh() is found.lock
    assert status(None, roots=[]).fresh and status(None, roots=[]).require_fresh() is None


@pytest.mark.parametrize(
    ("text", "roots", "ua", "state"),
    [
        (None, ROOTS, UA, "missing"),
        (lock_text(), ROOTS[:2], UA, "stale"),
        (lock_text(), ROOTS, "R (4.3.0)", "stale"),
        (lock_text().replace("License: MIT", "License: GPL", 1), ROOTS, UA, "edited by hand"),
        ("Package: here\nVersion: 1.0.1\n", ROOTS, UA, "not generated by imagebot lock"),
        (lock_text(), [], UA, "left over: no R package is served from a CRAN-like repository"),
    ],
    ids=["missing", "entries", "user-agent", "hand-edit", "no-header", "left-over"],
)
def test_every_way_a_lock_is_not_fresh_is_named(
    text: str | None, roots: list[RRoot], ua: str, state: str
) -> None:
    found = status(text, roots, ua)
    assert not found.fresh and found.state.startswith(state)
    with pytest.raises(StaleError, match=r"lock files out of date: cran.lock \(" + state[:10]):
        found.require_fresh()


EXTRA = (
    f"\nPackage: evil\nVersion: 1.0\nMD5sum: {'0' * 32}\nUpstream: {UP}\n"
    "DependencyOf: here==1.0.1\n"
)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t + EXTRA, "evil==1.0 is in here==1.0.1's closure, but nothing there needs it"),
        (
            lambda t: t + EXTRA.replace("DependencyOf: here==1.0.1", "VettedIn: rcran"),
            "evil==1.0: VettedIn names 'rcran', which does not vet it",
        ),
        (
            lambda t: t + EXTRA.replace("here==1.0.1", "evil==0"),
            "DependencyOf names evil==0, which is not a vetted entry",
        ),
        (
            lambda t: t + EXTRA.replace("DependencyOf: here==1.0.1\n", ""),
            "evil==1.0 is neither vetted nor needed by a vetted entry",
        ),
        (
            lambda t: t.replace(
                "Package: rprojroot\nVersion: 2.0.3", "Package: rprojroot\nVersion: 1.0"
            ),
            "here==1.0.1's closure lacks rprojroot (>= 2.0.2), which here==1.0.1 needs",
        ),
        (
            lambda t: t.replace("VettedIn: rcran\n", ""),
            "here==1.0.1 [vetted in 'rcran'] is not in it",
        ),
        (
            lambda t: t.replace("License: MIT\n", "License: MIT\nMD5sum: " + "1" * 32 + "\n", 1),
            "field 'MD5sum' twice in one stanza",
        ),
        (
            lambda t: t.replace("License: MIT\n", "License: MIT\n  and more\n", 1),
            "",  # a continuation line folds into License: harmless, and still the lock
        ),
    ],
    ids=[
        "added-dependency",
        "added-vetted",
        "unknown-root",
        "orphan",
        "broken-closure",
        "root-missing",
        "newline-adds-a-field",
        "continuation",
    ],
)
def test_a_resealed_hand_edit_is_still_caught(edit: Callable[[str], str], problem: str) -> None:
    """Recomputing the content digest does not make a hand-made lock one `imagebot lock` writes."""
    found = status(seal(edit(lock_text())))
    if not problem:
        assert found.fresh
        return
    assert not found.fresh and found.state == f"edited by hand: {found.problem}"
    assert problem in found.problem


# --- the upstream vouches for the lock: every field it keeps, value for value -----------------


def listed_upstreams() -> dict[str, list[RPackage]]:
    """The upstreams' PACKAGES as `imagebot lock` read them for lock_text()."""
    return {
        UP: [
            pkg("here", "1.0.1", "rprojroot (>= 2.0.2), methods"),
            pkg("rprojroot", "2.0.3"),
            pkg("R6", "2.6.1"),
        ],
        OLD: [pkg("R6", "2.5.1", repository=OLD)],
    }


def restated(edit: Callable[[str], str]) -> list[LockedR]:
    """The packages of lock_text() after `edit`, resealed as a hand edit would be."""
    return list(parse_cran_lock(seal(edit(lock_text())), "cran.lock").packages)


HERE_STANZA = "Package: here\nVersion: 1.0.1\nImports: rprojroot (>= 2.0.2), methods\n"


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            lambda t: t.replace(HERE_STANZA + "License: MIT", HERE_STANZA + "License: GPL-3"),
            'License "MIT", cran.lock has "GPL-3"',
        ),
        (
            lambda t: t.replace(HERE_STANZA + "License: MIT", HERE_STANZA[:-1]),
            'License "MIT", cran.lock has (none)',
        ),
        (
            lambda t: t.replace(HERE_STANZA, HERE_STANZA + "NeedsCompilation: no\n"),
            'NeedsCompilation (none), cran.lock has "no"',
        ),
        (
            lambda t: t.replace("(>= 2.0.2), methods", "(>= 2.0.2), methods, evil"),
            'Imports "rprojroot (>= 2.0.2), methods", cran.lock has "rprojroot (>= 2.0.2), '
            'methods, evil"',
        ),
        (
            lambda t: t.replace(HERE_STANZA, HERE_STANZA + "LinkingTo: evil\n"),
            'LinkingTo (none), cran.lock has "evil"',
        ),
        (
            lambda t: t.replace(HERE_STANZA, HERE_STANZA + "OS_type: unix\n"),
            'OS_type (none), cran.lock has "unix"',
        ),
    ],
    ids=["license", "license-dropped", "needs-compilation", "imports", "linking-to", "other-field"],
)
def test_the_upstream_must_list_every_field_the_lock_keeps(
    edit: Callable[[str], str], says: str
) -> None:
    """index build (locked_entries) and review (require_listed_as_locked) refuse a lock that
    claims what the upstream's PACKAGES does not say, with the field and both values."""
    packages = restated(edit)
    lock = parse_cran_lock(seal(edit(lock_text())), "cran.lock")
    with pytest.raises(PackageIndexError) as built:
        locked_entries(lock, listed_upstreams())
    assert f"here==1.0.1: {UP}'s PACKAGES says {says}; refusing to serve" in built.value.message
    with pytest.raises(PackageIndexError) as reviewed:
        require_listed_as_locked(packages, listed_upstreams(), "requirements/cran.lock")
    assert (
        reviewed.value.message
        == f"requirements/cran.lock: here==1.0.1: {UP}'s PACKAGES says {says}"
    )
    assert "run `imagebot lock`" in reviewed.value.hint


def test_a_lock_the_upstream_lists_as_it_is_passes_both_checks() -> None:
    lock = parse_cran_lock(lock_text(), "cran.lock")
    assert len(locked_entries(lock, listed_upstreams())) == 4
    require_listed_as_locked(lock.packages, listed_upstreams(), "cran.lock")  # no error
    # a lock of a SHA256-less upstream agrees with an upstream that now publishes one
    listed = listed_upstreams()
    listed[OLD] = [dataclasses.replace(listed[OLD][0], sha256="a" * 64)]
    require_listed_as_locked(lock.packages, listed, "cran.lock")


def test_every_disagreement_is_counted_and_the_first_named() -> None:
    packages = restated(lambda t: t.replace("License: MIT", "License: GPL-3"))
    with pytest.raises(PackageIndexError) as refused:
        require_listed_as_locked(packages, listed_upstreams(), "requirements/cran.lock")
    assert refused.value.message == (
        f'requirements/cran.lock: R6==2.5.1: {OLD}\'s PACKAGES says License "MIT", cran.lock '
        'has "GPL-3" (and 3 more)'
    )
    gone = {UP: listed_upstreams()[UP][:2], OLD: listed_upstreams()[OLD]}  # R6 2.6.1 gone
    with pytest.raises(PackageIndexError, match=rf"R6==2.6.1 is not in the PACKAGES of {UP}$"):
        require_listed_as_locked(
            parse_cran_lock(lock_text(), "cran.lock").packages, gone, "cran.lock"
        )


def test_only_new_or_changed_stanzas_are_what_review_has_vouched_for() -> None:
    base = parse_cran_lock(lock_text(), "cran.lock")
    assert changed_since(base, None) == base.packages
    assert changed_since(base, base) == ()
    relicensed = parse_cran_lock(
        seal(lock_text().replace(HERE_STANZA + "License: MIT", HERE_STANZA + "License: GPL-3")),
        "cran.lock",
    )
    assert [p.pin for p in changed_since(relicensed, base)] == ["here==1.0.1"]
    # VettedIn and DependencyOf are the lock's own, not the upstream's: nothing to vouch for
    moved = parse_cran_lock(seal(lock_text().replace("VettedIn: rcran", "VettedIn: other")), "x")
    assert changed_since(moved, base) == ()
    one_less = dataclasses.replace(base, packages=base.packages[1:])
    assert [p.pin for p in changed_since(base, one_less)] == ["R6==2.5.1"]


def test_upstreams_named_are_the_configured_ones_the_packages_come_from() -> None:
    lock = parse_cran_lock(lock_text(), "cran.lock")
    assert upstreams_named(lock.packages, [UP, OLD]) == [UP, OLD]
    assert upstreams_named(lock.packages[1:], [UP, OLD]) == [UP]  # R6 2.5.1 (OLD) unchanged
    assert upstreams_named((), [UP, OLD]) == []
    with pytest.raises(PackageIndexError, match=rf"R6==2.5.1 comes from {OLD}, which is not a"):
        upstreams_named(lock.packages, [UP])


# --- resolve_cran: keep, resolve, remove ------------------------------------------------------


def test_resolve_cran_keeps_a_fresh_lock_and_reads_no_upstream(tmp_path: Path) -> None:
    path = tmp_path / "cran.lock"
    inputs = CranLockInputs(path, tuple(ROOTS), (UP, OLD), UA)
    calls: list[CranLockInputs] = []

    def resolve(given: CranLockInputs) -> str:
        calls.append(given)
        return lock_text()

    def read(p: Path) -> str | None:
        return p.read_text() if p.exists() else None

    first = resolve_cran(inputs, read, resolve)
    assert (first.changed, first.packages, len(calls)) == (True, 4, 1)
    path.write_text(first.text or "")
    again = resolve_cran(inputs, read, resolve)
    assert (again.changed, again.text, len(calls)) == (False, first.text, 1)
    upgraded = resolve_cran(inputs, read, resolve, upgrade=True)
    assert (upgraded.changed, len(calls)) == (False, 2)
    gone = resolve_cran(CranLockInputs(path, (), (UP,), UA), read, resolve)
    assert (gone.text, gone.changed, len(calls)) == (None, True, 2)


# --- the commands, against a CRAN-like upstream on loopback ----------------------------------


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with cran_upstream() as served:
        yield served


@pytest.fixture
def r_project(project: Project, upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> Project:
    """Sets without Python packages (no uv), here==1.0.1 from a cran set."""
    monkeypatch.chdir(project.root)
    project.write("imagebot.toml", r_config(CONFIG, upstream.url))
    project.write("requirements/base.toml", '[set]\ndescription = "none"\n')
    project.write("requirements/extra.toml", R_SET)
    return project


def cran_lock(project: Project) -> Path:
    return project.path("requirements/cran.lock")


def test_lock_writes_the_closure_and_a_second_lock_reads_nothing(
    r_project: Project, upstream: Upstream, run_cli: Run
) -> None:
    first = run_cli("--config", r_project.config, "lock")
    assert first.code == 0, first.err
    assert "wrote requirements/cran.lock (2 packages)" in first.err
    lock = parse_cran_lock(cran_lock(r_project).read_text(), "cran.lock")
    assert [(p.pin, p.vetted_in, p.dependency_of) for p in lock.packages] == [
        ("here==1.0.1", ("extra",), ()),
        ("rprojroot==2.0.3", (), ("here==1.0.1",)),
    ]
    assert (
        lock.packages[0].package.md5
        == hashlib.md5(PACKAGES["here", "1.0.1", "rprojroot (>= 2.0.2)"]).hexdigest()
    )
    assert upstream.requests == ["/cran/src/contrib/PACKAGES.gz"]
    before = r_project.snapshot()
    again = run_cli("--config", r_project.config, "lock")
    assert again.code == 0, again.err
    assert "unchanged requirements/cran.lock (2 packages)" in again.err
    assert upstream.requests == ["/cran/src/contrib/PACKAGES.gz"]  # no request at all
    assert r_project.snapshot() == before
    assert run_cli("--config", r_project.config, "lock", "--check").code == 0
    upgraded = run_cli("--config", r_project.config, "lock", "--upgrade")
    assert upgraded.code == 0 and len(upstream.requests) == 2
    assert r_project.snapshot() == before  # the same upstream resolves to the same lock


def test_lock_with_r_entries_only_and_no_set_in_any_image(
    project: Project, upstream: Upstream, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    monkeypatch.chdir(project.root)
    project.write(
        "imagebot.toml", r_config(CONFIG, upstream.url).replace('sets = ["base", "extra"]\n', "", 1)
    )
    project.write("jupyter/Dockerfile", "FROM scratch\n")  # hand-written: no set to render
    project.path("requirements/base.toml").unlink()
    project.path("requirements/extra.toml").unlink()
    project.write(
        "requirements/index-only.toml",
        '[r]\nR6 = { version = "2.5.1", reason = "r", requested_by = "@x" }\n',
    )
    result = run_cli("--config", project.config, "lock")
    assert result.code == 0, result.err
    assert "wrote requirements/cran.lock (1 packages)" in result.err
    assert sorted(p.name for p in project.path("requirements").iterdir()) == [
        "cran.lock",
        "index-only.toml",
    ]
    assert run_cli("--config", project.config, "lock", "--check").code == 0


@pytest.mark.parametrize(
    ("change", "state"),
    [
        (lambda p: p.path("requirements/cran.lock").unlink(), "missing"),
        (
            lambda p: p.write(
                "requirements/index-only.toml",
                '[r]\nR6 = { version = "2.5.1", reason = "r", requested_by = "@x" }\n',
            ),
            "stale",
        ),
        (
            lambda p: p.write(
                "imagebot.toml",
                p.config.read_text().replace(
                    'cran_upstream = "', 'r_user_agent = "R (4.3.0)"\ncran_upstream = "'
                ),
            ),
            "stale",
        ),
        (
            lambda p: p.write(
                "requirements/cran.lock",
                p.path("requirements/cran.lock").read_text().replace("2.0.3", "2.0.4"),
            ),
            "edited by hand: its text does not match its content digest",
        ),
        (
            lambda p: p.write("requirements/extra.toml", '[set]\ndescription = "none"\n'),
            "left over",
        ),
    ],
    ids=["missing", "entries", "user-agent", "hand-edit", "left-over"],
)
def test_lock_check_fails_offline_for_every_stale_cran_lock(
    r_project: Project,
    upstream: Upstream,
    run_cli: Run,
    change: Callable[[Project], object],
    state: str,
) -> None:
    assert run_cli("--config", r_project.config, "lock").code == 0
    change(r_project)
    requests = len(upstream.requests)
    before = r_project.snapshot()
    result = run_cli("--config", r_project.config, "lock", "--check")
    assert result.code == 5, result.err
    assert len(result.error_lines) == 1
    assert result.error_lines[0].startswith(f"error: lock files out of date: cran.lock ({state}")
    assert result.hint_lines == ["hint: run `imagebot lock` and commit requirements/*.lock"]
    assert len(upstream.requests) == requests and r_project.snapshot() == before
    checked = run_cli("--config", r_project.config, "check")
    assert checked.code == 0 and "warning: cran.lock is out of date (" in checked.err
    assert "locks stale" in checked.err


def test_a_changed_upstream_makes_the_lock_stale(
    r_project: Project, upstream: Upstream, run_cli: Run
) -> None:
    assert run_cli("--config", r_project.config, "lock").code == 0
    r_project.write(
        "imagebot.toml",
        r_project.config.read_text().replace(upstream.url, upstream.url + "-2025-11-20"),
    )
    result = run_cli("--config", r_project.config, "lock", "--check")
    assert result.code == 5 and "cran.lock (stale)" in result.err


def test_lock_removes_a_left_over_cran_lock(r_project: Project, run_cli: Run) -> None:
    assert run_cli("--config", r_project.config, "lock").code == 0
    r_project.write("requirements/extra.toml", '[set]\ndescription = "none"\n')
    result = run_cli("--config", r_project.config, "lock")
    assert result.code == 0, result.err
    assert (
        "removed requirements/cran.lock: no R package is served from a CRAN-like repository"
        in result.err
    )
    assert not cran_lock(r_project).exists()
    assert run_cli("--config", r_project.config, "lock", "--check").code == 0


def test_index_build_refuses_a_missing_or_stale_lock_before_any_request(
    r_project: Project, upstream: Upstream, run_cli: Run
) -> None:
    upstream.requests.clear()
    missing = run_cli("--config", r_project.config, "index", "build", "out")
    assert missing.code == 5, missing.err
    assert missing.error_lines == ["error: lock files out of date: cran.lock (missing)"]
    assert "hint: run `imagebot lock` and commit requirements/cran.lock" in missing.err
    assert upstream.requests == [] and not r_project.path("out").exists()


def test_index_build_serves_exactly_the_lock(
    r_project: Project, upstream: Upstream, run_cli: Run
) -> None:
    assert run_cli("--config", r_project.config, "lock").code == 0
    # The upstream moves on: a newer rprojroot is current, the locked one stays listed.
    upstream.publish({**PACKAGES, ("rprojroot", "2.1.0", ""): b"rprojroot 2.1.0"})
    result = run_cli("--config", r_project.config, "index", "build", "out", "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert (summary["r_packages"], summary["r_downloaded"]) == (2, 2)
    contrib = r_project.path("out/cran/src/contrib")
    assert sorted(p.name for p in contrib.glob("*.tar.gz")) == [
        "here_1.0.1.tar.gz",
        "rprojroot_2.0.3.tar.gz",
    ]
    manifest = json.loads(r_project.path("out/imagebot-index.json").read_text())
    assert {
        (p["name"], p["version"], tuple(p["dependency_of"])) for p in manifest["r"]["packages"]
    } == {
        ("here", "1.0.1", ()),
        ("rprojroot", "2.0.3", ("here==1.0.1",)),
    }


def test_a_set_named_cran_is_refused(project: Project, run_cli: Run) -> None:
    project.write("requirements/cran.toml", R_SET)
    before = project.snapshot()
    result = run_cli("--config", project.config, "check")
    assert result.code == 4, result.err
    assert "requirements/cran.toml: set name 'cran' is reserved" in result.err
    assert project.snapshot() == before


def test_lock_check_with_r_entries_imports_no_heavy_library(r_project: Project) -> None:
    from tests.unit.test_cli_core import HEAVY

    code = (
        "import sys\nfrom imagebot.main import main\n"
        "try:\n    main(['lock', '--check'])\nexcept SystemExit as exc:\n    print(exc.code)\n"
        f"print(__import__('json').dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=r_project.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "cran.lock (missing)" in done.stderr  # it did read the R entries
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_check_and_lock_check_import_no_r_module_where_no_r_is_vetted() -> None:
    """`check` and `lock --check` name cran.lock without importing imagebot.cranlock."""
    import imagebot.cranlock
    import imagebot.lock

    assert imagebot.lock.CRAN_LOCK_NAME == imagebot.cranlock.CRAN_LOCK_NAME
    code = (
        "import sys\nfrom imagebot.main import main\n"
        "try:\n    main(['lock', '--check'])\nexcept SystemExit as exc:\n    assert not exc.code\n"
        "print(sorted(m for m in ('imagebot.cran', 'imagebot.cranlock') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
