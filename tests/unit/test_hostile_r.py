"""Hostile-input suite, the share of R (issue 10 rows for issue 14's new fields and sinks).

Sinks: the vetted PACKAGES file (DCF, where a newline in a value adds fields), the R code
and bash of the renv.lock install script, and the Rprofile.site lines. Inputs: index-only.toml
[r] and "name==version" keys, a cran set's [r], an upstream's PACKAGES (served on loopback),
and a user's renv.lock. Every row: the exit code, one `error:` line, no traceback, every
input file byte-identical and nothing written.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator

import pytest
from http_fixtures import serve_files

from tests.unit.conftest import CONFIG, Hostile, Project, Result, assert_refused

Run = Callable[..., Result]
Setup = Callable[[Project, pytest.MonkeyPatch], None]

# What the loopback upstream serves now: path -> body. Rows set it in their setup.
SERVED: dict[str, bytes] = {}


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serve_files(SERVED) as host:
        yield f"http://{host}"


@pytest.fixture(autouse=True)
def _served_reset() -> None:
    SERVED.clear()


def only_r(index_only: str = "", packages: bytes | None = None) -> Setup:
    """A project whose sets vet no Python package (no PyPI needed) and whose R comes from the
    loopback upstream, with index-only.toml and the upstream's PACKAGES as given."""

    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(project.root)
        port = project.path(".port").read_text()
        config = CONFIG.replace(
            'request_url = "https://example.org/stats/images#asking-for-a-package"\n',
            'request_url = "https://example.org/stats/images#asking-for-a-package"\n'
            f'cran_upstream = "http://127.0.0.1:{port}/cran"\n',
        )
        project.write("imagebot.toml", config)
        project.write("requirements/base.toml", '[set]\ndescription = "none"\n')
        project.write(
            "requirements/extra.toml",
            '[set]\nr_source = "cran"\n\n[r]\n'
            'R6 = { version = "2.5.1", reason = "classes", requested_by = "@kari" }\n',
        )
        if index_only:
            project.write("requirements/index-only.toml", index_only)
        if packages is not None:
            SERVED["/cran/src/contrib/PACKAGES.gz"] = gzip.compress(packages)
        project.path(".port").unlink()

    return setup


GOOD_STANZA = b"Package: R6\nVersion: 2.5.1\nMD5sum: " + b"0" * 32 + b"\n"


def r_line(key: str, fields: str = 'reason = "r", requested_by = "@x"') -> str:
    return f"[r]\n{key} = {{ {fields} }}\n"


BUILD = ("index", "build", "out")
LOCK = ("lock",)  # reads the upstream's PACKAGES; index build then serves what cran.lock says
INDEX_ROWS = [
    Hostile(
        "r-name-with-r-code",
        only_r(
            r_line("\"R6');system('x\"", 'version = "1.0.0", reason = "r", requested_by = "@x"')
        ),
        BUILD,
        4,
        "is not a valid R package name",
    ),
    Hostile(
        "r-versioned-key-with-newline",
        only_r(r_line('"R6==2.5.1\\nMD5sum: 0"')),
        BUILD,
        4,
        "is not an exact R version",
    ),
    Hostile(
        "r-versioned-key-path",
        only_r(r_line('"../R6==2.5.1"')),
        BUILD,
        4,
        "is not a valid R package name",
    ),
    Hostile(
        "r-versioned-key-disagrees",
        only_r(r_line('"R6==2.5.1"', 'version = "2.6.1", reason = "r", requested_by = "@x"')),
        BUILD,
        4,
        "the key says version",
    ),
    Hostile(
        "r-reason-with-newline",
        only_r(r_line("R6", 'version = "2.6.1", reason = "a\\nb", requested_by = "@x"')),
        BUILD,
        4,
        "reason",
    ),
    Hostile(
        "r-same-version-twice",
        only_r(
            '[r]\nR6 = { version = "2.6.1", reason = "r", requested_by = "@x" }\n"R6==2.6.1" = { reason = "r", requested_by = "@y" }\n'
        ),
        BUILD,
        4,
        "is vetted twice",
    ),
    Hostile(
        "index-only-apt",
        only_r('[apt]\ngit = { version = "1", reason = "r", requested_by = "@x" }\n'),
        BUILD,
        4,
        "cannot be vetted for self-install",
    ),
    Hostile(
        "index-only-not-utf8",
        lambda p, m: (
            only_r()(p, m),
            p.path("requirements/index-only.toml").write_bytes(b"[r]\n\xff\xfe = 1\n"),
        ),
        BUILD,
        13,
        "UTF-8",
    ),
    Hostile("upstream-has-no-packages", only_r(), LOCK, 13, "is not a CRAN-like repository"),
    Hostile(
        "upstream-packages-not-gzip",
        lambda p, m: (
            only_r()(p, m),
            SERVED.update({"/cran/src/contrib/PACKAGES.gz": b"Package: R6"}),
        ),
        LOCK,
        13,
        "is not a UTF-8 PACKAGES file",
    ),
    Hostile(
        "upstream-packages-not-utf8",
        only_r(packages=b"Package: R6\nLicense: \xff\n"),
        LOCK,
        13,
        "is not a UTF-8 PACKAGES file",
    ),
    Hostile(
        "upstream-name-path",
        only_r(packages=GOOD_STANZA.replace(b"R6", b"../R6")),
        LOCK,
        13,
        "is not a valid R package name",
    ),
    Hostile(
        "upstream-version-code",
        only_r(packages=GOOD_STANZA.replace(b"2.5.1", b"2.5.1$(id)")),
        LOCK,
        13,
        "is not a valid R version",
    ),
    Hostile(
        "upstream-no-md5",
        only_r(packages=b"Package: R6\nVersion: 2.5.1\n"),
        LOCK,
        13,
        "has no MD5sum",
    ),
    Hostile(
        "upstream-field-twice",
        only_r(packages=GOOD_STANZA + b"MD5sum: " + b"1" * 32 + b"\n"),
        LOCK,
        13,
        "twice in one stanza",
    ),
    Hostile(
        "upstream-control-character",
        only_r(packages=GOOD_STANZA + b"License: MIT\x1b[2J\n"),
        LOCK,
        13,
        "would change the file's shape",
    ),
    Hostile(
        "upstream-bad-dependency",
        only_r(packages=GOOD_STANZA + b"Imports: x; system('id')\n"),
        LOCK,
        13,
        "is not 'name' or 'name (op version)'",
    ),
    Hostile(
        "upstream-lacks-the-version",
        only_r(packages=GOOD_STANZA.replace(b"2.5.1", b"2.6.1")),
        LOCK,
        13,
        "is not in the CRAN upstream (it has 2.6.1)",
    ),
]


@pytest.mark.parametrize("case", INDEX_ROWS, ids=lambda c: c.id)
def test_hostile_r_index_input_is_refused(
    case: Hostile, project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run, upstream: str
) -> None:
    project.path(".port").write_text(upstream.rsplit(":", 1)[1])
    assert_refused(case, project, monkeypatch, run_cli)
    assert not project.path("out").exists()


# --- renv.lock --------------------------------------------------------------------------------

R_MANIFEST = {
    "format": 1,
    "generated_by": "imagebot index build",
    "target": {"python": "3.11", "platform": "x86_64-manylinux_2_36"},
    "roots": [],
    "packages": [],
    "r": {
        "upstreams": ["https://up.example/cran"],
        "roots": [
            {
                "name": "R6",
                "version": "2.5.1",
                "set": "index-only",
                "reason": "r",
                "requested_by": "@x",
            }
        ],
        "packages": [
            {
                "name": "R6",
                "version": "2.5.1",
                "path": "src/contrib/R6_2.5.1.tar.gz",
                "md5": "0" * 32,
                "sha256": "0" * 64,
                "size": 1,
                "current": True,
            }
        ],
    },
}


def renv(packages: object, name: str = "renv.lock") -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(project.root)
        project.write("out/imagebot-index.json", json.dumps(R_MANIFEST))
        body = {"R": {"Version": "4.2.2"}, "Packages": packages}
        project.write(name, json.dumps(body, indent=2))

    return setup


def raw_file(data: bytes, name: str = "renv.lock") -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(project.root)
        project.write("out/imagebot-index.json", json.dumps(R_MANIFEST))
        project.path(name).write_bytes(data)

    return setup


def rec(name: str, version: str = "2.5.1", **extra: object) -> dict[str, object]:
    return {"Package": name, "Version": version, "Source": "Repository", **extra}


def check(name: str = "renv.lock") -> tuple[str, ...]:
    return ("env", "check", name, "--index", "out")


def script(name: str = "renv.lock") -> tuple[str, ...]:
    return ("env", "script", name, "--index", "out", "-o", "install.sh")


RENV_ROWS = [
    Hostile("renv-name-path", renv({"../R6": rec("../R6")}), check(), 14, "1 problem in renv.lock"),
    Hostile(
        "renv-name-r-code",
        renv({'R6");system("id': rec('R6");system("id')}),
        script(),
        14,
        "1 problem in renv.lock",
    ),
    Hostile(
        "renv-version-newline", renv({"R6": rec("R6", "2.5.1\nq()")}), script(), 14, "1 problem"
    ),
    Hostile("renv-version-shell", renv({"R6": rec("R6", "$(id)")}), script(), 14, "1 problem"),
    Hostile("renv-package-disagrees", renv({"R6": rec("here")}), check(), 14, "1 problem"),
    Hostile(
        "renv-github-source",
        renv({"R6": rec("R6", Source="GitHub", RemoteUsername="x")}),
        script(),
        14,
        "1 problem",
    ),
    Hostile(
        "renv-local-path",
        renv({"R6": rec("R6", Source="Local", RemoteUrl="/etc/passwd")}),
        script(),
        14,
        "1 problem",
    ),
    Hostile("renv-not-vetted", renv({"R6": rec("R6", "2.6.1")}), script(), 14, "1 problem"),
    Hostile("renv-not-utf8", raw_file(b'{"Packages": {"\xff": {}}}'), check(), 2, "UTF-8"),
    Hostile(
        "renv-nested",
        raw_file(b"{" + b'"a":[' * 50_000 + b"]" * 50_000 + b"}"),
        check(),
        14,
        "1 problem",
    ),
    Hostile(
        "renv-file-name-newline",
        renv({"R6": rec("R6")}, name="x\ntouch PWNED\n#.lock"),
        script("x\ntouch PWNED\n#.lock"),
        2,
        "the environment file's name",
    ),
]


@pytest.mark.parametrize("case", RENV_ROWS, ids=lambda c: c.id)
def test_hostile_renv_lock_is_refused(
    case: Hostile, project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    assert_refused(case, project, monkeypatch, run_cli)
    assert not project.path("install.sh").exists()


def test_a_manifest_with_a_bad_r_name_is_refused(
    project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    bad = json.loads(json.dumps(R_MANIFEST))
    bad["r"]["packages"][0]["name"] = 'R6", "x'
    case = Hostile(
        "manifest-r-name",
        lambda p, m: (
            renv({"R6": rec("R6")})(p, m),
            p.write("out/imagebot-index.json", json.dumps(bad)),
        ),
        script(),
        13,
        "not a readable imagebot index manifest",
    )
    assert_refused(case, project, monkeypatch, run_cli)


def test_the_good_renv_lock_passes(
    project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    renv({"R6": rec("R6")})(project, monkeypatch)
    result = run_cli("--config", project.config, *script())
    assert result.code == 0, result.err
    assert (
        'c("R6", "2.5.1", "src/contrib/R6_2.5.1.tar.gz", "'
        in project.path("install.sh").read_text()
    )


CHECK_ROWS = [
    Hostile(
        "check-index-only-bad-r-key",
        lambda p, m: p.write("requirements/index-only.toml", r_line('"R6==2.5.1\\n"')),
        ("check",),
        4,
        "1 problem in",
    ),
    Hostile(
        "check-index-only-set-pin-again",
        lambda p, m: p.write(
            "requirements/index-only.toml",
            '[python]\nnumpy = { version = "2.4.6", reason = "r", requested_by = "@x" }\n',
        ),
        ("check",),
        4,
        "1 problem in",
    ),
]


@pytest.mark.parametrize("case", CHECK_ROWS, ids=lambda c: c.id)
def test_check_validates_index_only(
    case: Hostile, project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    result = assert_refused(case, project, monkeypatch, run_cli)
    assert "index-only.toml:" in result.err
