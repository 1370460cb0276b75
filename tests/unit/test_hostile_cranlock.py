"""Hostile-input suite, requirements/cran.lock (issue 14's R lock): a pull request may edit the
lock by hand, recompute its digests, inject a field through a newline, or name a set `cran`;
the upstream may contradict what the lock vouches for. Every row: the exit code, one `error:`
line, no traceback, every input file byte-identical and nothing written."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pytest
from cran_fixtures import PACKAGES, R_SET, Upstream, cran_upstream, r_config

from imagebot.lockfile import seal
from tests.unit.conftest import CONFIG, Hostile, Project, Result, assert_refused

Run = Callable[..., Result]
Setup = Callable[[Project, pytest.MonkeyPatch], None]
UPSTREAM: list[Upstream] = []  # the module's loopback upstream, for the rows' setups


@pytest.fixture(scope="module", autouse=True)
def upstream() -> Iterator[Upstream]:
    with cran_upstream() as served:
        UPSTREAM[:] = [served]
        yield served
        UPSTREAM.clear()


@pytest.fixture(autouse=True)
def _published() -> None:
    UPSTREAM[0].publish(PACKAGES)


def locked(edit: Callable[[str], str] | None = None, *, then: Setup | None = None) -> Setup:
    """A project whose cran set is locked by `imagebot lock`; then `edit` rewrites cran.lock's
    text (bytes for a non-UTF-8 file) and `then` changes anything else."""

    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        from imagebot.main import main

        monkeypatch.chdir(project.root)
        project.write("imagebot.toml", r_config(CONFIG, UPSTREAM[0].url))
        project.write("requirements/base.toml", '[set]\ndescription = "none"\n')
        project.write("requirements/extra.toml", R_SET)
        with pytest.raises(SystemExit) as done:
            main(["--config", str(project.config), "lock"])
        assert done.value.code in (0, None)
        path = project.path("requirements/cran.lock")
        if edit is not None:
            path.write_bytes(edit(path.read_text()).encode("utf-8", errors="surrogateescape"))
        if then is not None:
            then(project, monkeypatch)

    return setup


EVIL = (
    f"\nPackage: evil\nVersion: 1.0\nMD5sum: {'0' * 32}\n"
    f"Upstream: {{url}}\nDependencyOf: here==1.0.1\n"
)


def add_package(text: str) -> str:
    return text + EVIL.format(url=UPSTREAM[0].url)


def inject_md5(text: str) -> str:
    """A value with a newline in it: the next line is a field of its own."""
    return text.replace("Package: here\n", "Package: here\nMD5sum: " + "1" * 32 + "\n", 1)


def claim(field: str) -> Callable[[str], str]:
    """A fact the upstream's PACKAGES does not state, added to here's stanza (then resealed,
    so `lock --check` passes: the closure's shape is unchanged)."""
    return lambda text: seal(text.replace("Package: here\n", f"Package: here\n{field}\n", 1))


def contradicting_upstream(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The upstream now lists here 1.0.1 with other bytes and their (matching) MD5sum."""
    UPSTREAM[0].publish({**PACKAGES, ("here", "1.0.1", "rprojroot (>= 2.0.2)"): b"other bytes"})


OUTSIDE = "outside.txt"  # beside the project, not in it


def link_outside(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """cran.lock made a link to a file outside the repository (any file, in a pull request)."""
    outside = project.root.parent / OUTSIDE
    outside.write_text("# someone's file\n")
    project.path("requirements/cran.lock").unlink()
    project.path("requirements/cran.lock").symlink_to(outside)


def set_named_cran(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.root)
    project.write("requirements/cran.toml", R_SET)


CHECK = ("lock", "--check")
BUILD = ("index", "build", "out")
ROWS = [
    Hostile("hand-added-package", locked(add_package), CHECK, 5, "cran.lock (edited by hand"),
    Hostile(
        "hand-added-package-resealed",
        locked(lambda t: seal(add_package(t))),
        CHECK,
        5,
        "evil==1.0 is in here==1.0.1's closure, but nothing there needs it",
    ),
    Hostile(
        "newline-in-a-value-resealed",
        locked(lambda t: seal(inject_md5(t))),
        CHECK,
        5,
        "field 'MD5sum' twice in one stanza",
    ),
    Hostile(
        "not-utf8",
        locked(lambda t: t.replace("Package: here", "Package: h\udcffere", 1)),
        CHECK,
        5,
        "cran.lock (edited by hand",
    ),
    Hostile(
        "a-directory",
        lambda p, m: (
            locked()(p, m),
            p.path("requirements/cran.lock").unlink(),
            p.path("requirements/cran.lock").mkdir(),
        ),
        CHECK,
        5,
        "cannot read the lock file",
    ),
    Hostile(
        "index-build-hand-added-package-resealed",
        locked(lambda t: seal(add_package(t))),
        BUILD,
        5,
        "cran.lock (edited by hand: evil==1.0",
    ),
    Hostile(
        "index-build-upstream-md5-contradicts-the-lock",
        locked(then=contradicting_upstream),
        BUILD,
        13,
        "refusing to serve other bytes",
    ),
    Hostile(
        "index-build-false-license-resealed",
        locked(claim("License: MIT")),
        BUILD,
        13,
        'here==1.0.1: {url}\'s PACKAGES says License (none), cran.lock has "MIT"; refusing',
    ),
    Hostile(
        "index-build-false-needs-compilation-resealed",
        locked(claim("NeedsCompilation: no")),
        BUILD,
        13,
        'NeedsCompilation (none), cran.lock has "no"',
    ),
    Hostile(
        "a-symlink-outside-the-repository",
        locked(then=link_outside),
        ("lock",),
        1,
        "refusing to write through it",
    ),
    Hostile("set-named-cran-check", set_named_cran, ("check",), 4, "set name 'cran' is reserved"),
    Hostile("set-named-cran-lock", set_named_cran, ("lock",), 4, "1 problem in"),
]


@pytest.mark.parametrize("case", ROWS, ids=lambda c: c.id)
def test_hostile_cran_lock_is_refused(
    case: Hostile, project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    expected = case.expected.replace("{url}", UPSTREAM[0].url)
    row = Hostile(case.id, case.setup, case.argv, case.code, expected)
    result = assert_refused(row, project, monkeypatch, run_cli)
    assert not project.path("out").exists()
    if "resealed" in case.id and case.code == 13:  # lock --check passes it: only the upstream
        assert run_cli("--config", project.config, *CHECK).code == 0  # can refute the claim
    if case.id == "a-symlink-outside-the-repository":
        assert (project.root.parent / OUTSIDE).read_text() == "# someone's file\n"
    if case.id == "index-build-upstream-md5-contradicts-the-lock":
        other = hashlib.md5(b"other bytes").hexdigest()
        assert f"MD5sum {other}, cran.lock has " in result.err
