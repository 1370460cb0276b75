"""Hostile-input suite, the share of uv, locks, the index and environment scripts (issue 10).

Items 1 (extras reaching uv as options), 2 (uv's own configuration), 5 (the lock's digest
covers its body), 6 and 14 (index build trusts nothing in OUT), 17 (env script file names),
19 (index serve), and this area's parts of 9 (SIGTERM cleanup) and 20 (tracebacks). CLI rows
assert the exit code, one `error:` line, no traceback and every file byte-identical; the
adapter rows check the uv command line, its environment and its working directory.
"""

from __future__ import annotations

import http.client
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from imagebot.errors import Interrupted, ResolutionError
from tests.unit.conftest import Hostile, Project, Result, assert_refused

Run = Callable[..., Result]
Setup = Callable[[Project, pytest.MonkeyPatch], None]

HASH = "sha256:" + "ab" * 32
EVIL_HASH = "sha256:" + "66" * 32
MANIFEST = json.dumps(
    {
        "format": 1,
        "generated_by": "imagebot index build",
        "target": {"python": "3.11", "platform": "x86_64-manylinux_2_36"},
        "roots": [],
        "packages": [],
    }
)


def edit_lock(set_name: str, edit: Callable[[str], str]) -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        path = project.path(f"requirements/{set_name}.lock")
        path.write_text(edit(path.read_text()))

    return setup


def write_bytes(relative: str, data: bytes) -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        path = project.path(relative)
        path.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return setup


def make_dir(relative: str) -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        path = project.path(relative)
        path.unlink(missing_ok=True)
        path.mkdir(parents=True)

    return setup


def index_dir(relative: str) -> Setup:
    """A built index's manifest (empty): enough for `env` commands to read."""
    return write_bytes(f"{relative}/imagebot-index.json", MANIFEST.encode())


def both(*setups: Setup) -> Setup:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        for one in setups:
            one(project, monkeypatch)

    return setup


def out_symlink(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    real = project.path("real-index")
    real.mkdir()
    (real / "imagebot-index.json").write_text(MANIFEST)
    project.path("out").symlink_to(real)


def no_network(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEBOT_UPSTREAM_INDEX", "http://127.0.0.1:9/simple")


ATTACKER_BLOCK = f"attacker-pkg==6.6.6 \\\n    --hash={EVIL_HASH}\n"
BAD_NAME = "x\ntouch PWNED\n#.txt"

LOCKED_ROWS = [
    Hostile(
        "lock-body-added-package",
        edit_lock("base", lambda text: text + ATTACKER_BLOCK),
        ("lock", "--check"),
        5,
        "base.lock (edited by hand",
    ),
    Hostile(
        "lock-body-swapped-hash",
        edit_lock("extra", lambda text: text.replace(HASH, EVIL_HASH, 1)),
        ("lock", "--check"),
        5,
        "extra.lock (edited by hand",
    ),
    Hostile(
        "lock-content-line-removed",
        edit_lock(
            "base",
            lambda text: "".join(
                line for line in text.splitlines(keepends=True) if not line.startswith("# content:")
            ),
        ),
        ("lock", "--check"),
        5,
        "base.lock (edited by hand",
    ),
    Hostile(
        "lock-not-utf8",
        write_bytes("requirements/base.lock", b"# inputs: \xff\xfe\n"),
        ("lock", "--check"),
        5,
        "base.lock",
    ),
    Hostile(
        "lock-is-a-directory",
        make_dir("requirements/extra.lock"),
        ("lock", "--check"),
        5,
        "extra.lock: cannot read the lock file",
    ),
    Hostile(
        "index-out-is-a-symlink",
        both(out_symlink, no_network),
        ("index", "build", "out"),
        13,
        "is a symbolic link",
    ),
    Hostile(
        "index-out-manifest-is-empty-object",
        both(
            write_bytes("out/imagebot-index.json", b"{}"),
            write_bytes("out/keep.txt", b"mine"),
            no_network,
        ),
        ("index", "build", "out"),
        13,
        "not an imagebot index",
    ),
    Hostile(
        "index-only-not-utf8",
        both(write_bytes("requirements/index-only.toml", b"[python]\n\xff = 1\n"), no_network),
        ("index", "build", "out"),
        13,
        "index-only.toml: is not UTF-8 text",
    ),
    Hostile(
        "serve-negative-port",
        index_dir("served"),
        ("index", "serve", "served", "--port", "-1"),
        2,
        "--port",
    ),
    Hostile(
        "env-script-file-name-with-newlines",
        both(index_dir("idx"), write_bytes(BAD_NAME, b"numpy==2.4.6\n")),
        ("env", "script", BAD_NAME, "--index", "idx"),
        2,
        "the environment file's name",
    ),
    Hostile(
        "env-check-manifest-not-utf8",
        both(
            write_bytes("idx/imagebot-index.json", b"{\xff}"), write_bytes("env.txt", b"six==1\n")
        ),
        ("env", "check", "env.txt", "--index", "idx"),
        13,
        "no index manifest there",
    ),
    Hostile(
        "env-check-manifest-nested-deeply",
        both(
            write_bytes("idx/imagebot-index.json", b"[" * 100_000 + b"]" * 100_000),
            write_bytes("env.txt", b"six==1\n"),
        ),
        ("env", "check", "env.txt", "--index", "idx"),
        13,
        "not a readable imagebot index manifest",
    ),
    Hostile(
        "index-out-manifest-nested-deeply",
        both(write_bytes("out/imagebot-index.json", b"[" * 100_000 + b"]" * 100_000), no_network),
        ("index", "build", "out"),
        13,
        "not an imagebot index",
    ),
    Hostile(
        "env-check-not-utf8",
        both(index_dir("idx"), write_bytes("env.txt", b"numpy==2.4.6 \xff\n")),
        ("env", "check", "env.txt", "--index", "idx"),
        2,
        "env.txt: is not UTF-8 text",
    ),
    Hostile(
        "env-script-file-is-a-directory",
        both(index_dir("idx"), make_dir("env.txt")),
        ("env", "script", "env.txt", "--index", "idx"),
        2,
        "env.txt: is a directory",
    ),
]


@pytest.mark.parametrize("case", LOCKED_ROWS, ids=lambda case: case.id)
def test_bad_input_is_refused(
    case: Hostile, locked_project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    monkeypatch.chdir(locked_project.root)
    assert_refused(case, locked_project, monkeypatch, run_cli)
    assert not locked_project.path("PWNED").exists()


EXTRAS = '["excel]\\n--extra-index-url http://127.0.0.1:18081/simple\\n#"]'


@pytest.mark.parametrize("argv", [("lock",), ("index", "build", "out")], ids=["lock", "index"])
def test_extras_that_would_be_uv_options_never_reach_uv(
    argv: tuple[str, ...], project: Project, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    import imagebot.uv

    def never(*args: object, **kwargs: object) -> str:
        raise AssertionError("uv ran")

    monkeypatch.setattr(imagebot.uv.Uv, "compile", never)

    def setup(proj: Project, mp: pytest.MonkeyPatch) -> None:
        path = proj.path("requirements/extra.toml")
        path.write_text(
            path.read_text().replace(
                'numpy = { version = "2.4.6",', f'numpy = {{ version = "2.4.6", extras = {EXTRAS},'
            )
        )
        no_network(proj, mp)

    monkeypatch.chdir(project.root)
    assert_refused(Hostile("extras", setup, argv, 4, "extra.toml"), project, monkeypatch, run_cli)


# --- the uv adapter: isolated, and fed name[extras]==version lines only -------------------------


@pytest.fixture
def fake_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in uv binary that records its argv, working directory, environment and inputs."""
    record = tmp_path / "record.json"
    script = tmp_path / "uv"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        "files = {n: open(n).read() for n in sorted(os.listdir('.'))}\n"
        f"json.dump({{'argv': sys.argv[1:], 'cwd': os.getcwd(), 'env': dict(os.environ),"
        f" 'files': files}}, open({str(record)!r}, 'w'))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    import uv

    monkeypatch.setattr(uv, "find_uv_bin", lambda: str(script))
    return record


def test_uv_reads_no_configuration_and_only_the_named_upstream(
    fake_uv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagebot.uv import Uv

    work = tmp_path / "repo"
    work.mkdir()
    (work / "uv.toml").write_text('[pip]\nextra-index-url = ["http://127.0.0.1:18081/simple"]\n')
    (work / "pyproject.toml").write_text(
        '[tool.uv]\nextra-index-url = ["http://127.0.0.1:18081/simple"]\n'
    )
    monkeypatch.chdir(work)
    hostile = {
        "UV_CONFIG_FILE": str(work / "uv.toml"),
        "UV_INDEX_URL": "http://127.0.0.1:18081/simple",
        "UV_EXTRA_INDEX_URL": "http://127.0.0.1:18081/simple",
        "UV_INDEX": "evil=http://127.0.0.1:18081/simple",
        "PIP_INDEX_URL": "http://127.0.0.1:18081/simple",
        "PIP_EXTRA_INDEX_URL": "http://127.0.0.1:18081/simple",
        "IMAGEBOT_UPSTREAM_INDEX": "https://mirror.example/simple",
    }
    Uv(env={**os.environ, **hostile}).compile(
        {"base.in": "pandas[excel]==3.1.1\n"}, "numpy==2.4.6\n", "3.11", "x86_64-manylinux_2_36"
    )
    record = json.loads(fake_uv.read_text())
    argv = record["argv"]
    assert "--no-config" in argv
    assert argv.count("--index-url") == 1
    assert argv[argv.index("--index-url") + 1] == "https://mirror.example/simple"
    assert not any("extra-index" in arg or arg == "--index" for arg in argv)
    assert Path(record["cwd"]).name.startswith("imagebot-uv-")
    assert sorted(record["files"]) == ["base.in", "earlier-layers.txt"]
    assert record["files"]["base.in"] == "pandas[excel]==3.1.1\n"
    assert not [
        key
        for key in record["env"]
        if key.startswith(("UV_", "PIP_")) and key not in ("UV_NO_PROGRESS",)
    ]
    assert not Path(record["cwd"]).exists()  # the scratch directory is gone


@pytest.mark.parametrize(
    "line",
    [
        "--extra-index-url http://127.0.0.1:18081/simple",
        "-r /etc/passwd",
        "pandas==3.1.1 --index-url http://x",
        "pandas>=3",
        "pandas[excel]==3.1.1 ; python_version > '3'",
        "pandas @ https://evil.example/pandas.whl",
        " pandas==3.1.1",
    ],
)
def test_a_line_that_is_not_name_extras_version_never_reaches_uv(fake_uv: Path, line: str) -> None:
    from imagebot.uv import Uv

    with pytest.raises(ResolutionError, match="refusing to pass line"):
        Uv(env={}).compile(
            {"base.in": f"numpy==2.4.6\n{line}\n"}, "", "3.11", "x86_64-manylinux_2_36"
        )
    assert not fake_uv.exists()


def test_preferences_reach_uv_as_its_output_file_in_the_scratch_directory(fake_uv: Path) -> None:
    from imagebot.uv import PREFERENCES_FILE, Uv

    resolved = Uv(env={}).compile(
        {"base.in": "pip==26.3\n"},
        "",
        "3.11",
        "x86_64-manylinux_2_36",
        preferences="babel==2.18.0\n",
    )
    record = json.loads(fake_uv.read_text())
    argv = record["argv"]
    assert argv[argv.index("--output-file") + 1] == PREFERENCES_FILE  # a plain name: in scratch
    assert record["files"][PREFERENCES_FILE] == "babel==2.18.0\n"
    assert "--upgrade" not in argv
    assert resolved == "babel==2.18.0\n"  # the result is what uv left in its output file


@pytest.mark.parametrize(
    "line",
    [
        "--extra-index-url http://127.0.0.1:18081/simple",
        "-r /etc/passwd",
        "babel>=2",
        "babel @ https://evil.example/babel.whl",
        "--hash=sha256:" + "ab" * 32,
    ],
)
def test_a_preference_that_is_not_name_version_never_reaches_uv(fake_uv: Path, line: str) -> None:
    from imagebot.uv import Uv

    with pytest.raises(ResolutionError, match=r"refusing to pass line 2 of previous-lock\.txt"):
        Uv(env={}).compile(
            {"base.in": "pip==26.3\n"},
            "",
            "3.11",
            "x86_64-manylinux_2_36",
            preferences=f"babel==2.18.0\n{line}\n",
        )
    assert not fake_uv.exists()


def test_requirement_lines_are_built_from_validated_values() -> None:
    from imagebot.uv import requirement_line
    from imagebot.validate import InvalidValue

    assert requirement_line("pandas", "3.1.1", ["excel"]) == "pandas[excel]==3.1.1"
    for name, version, extras in [
        ("-r", "1", ()),
        ("pandas", "3.1.1", ["excel]\n--extra-index-url http://x\n#"]),
        ("pandas\n", "3.1.1", ()),
        ("pandas", "3.1.1 --index-url x", ()),
    ]:
        with pytest.raises(InvalidValue):
            requirement_line(name, version, extras)


# --- index build: SIGTERM and Ctrl-C leave no staging directory ---------------------------------


def test_an_interrupted_index_build_removes_its_staging_directory(tmp_path: Path) -> None:
    from imagebot.index import NoProgress, build_index
    from imagebot.index_pages import Root, Target

    class Source:
        def release(self, name: str, version: str) -> object:
            raise Interrupted(15)

        def download(self, dist: object, dest: Path) -> None:
            raise AssertionError("nothing to download")

    class Resolver:
        def compile(self, *args: object) -> str:
            raise AssertionError("never reached")

    with pytest.raises(KeyboardInterrupt):
        build_index(
            tmp_path / "out",
            [Root("six", "1.17.0", "base", "r", "@x")],
            Target("3.11", "x86_64-manylinux_2_36"),
            Source(),  # type: ignore[arg-type]
            Resolver(),
            NoProgress(),
        )
    assert list(tmp_path.iterdir()) == []


# --- index serve: inside OUT only, no listings, no tracebacks -----------------------------------


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    import threading

    from imagebot.index_server import make_server

    out = tmp_path / "out"
    (out / "simple" / "six").mkdir(parents=True)
    (out / "simple" / "index.html").write_text("root")
    (out / "simple" / "six" / "index.html").write_text("six")
    (out / "files").mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (out / "files" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (out / "files" / "outside").symlink_to(tmp_path)
    server = make_server(out, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def status(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("GET", path, skip_accept_encoding=True)
    connection.endheaders()
    response = connection.getresponse()
    return response.status, response.read()


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/simple/six/", 200),
        ("/files/", 404),  # no listing
        ("/", 404),
        ("/files/leak.txt", 404),  # symlink out of OUT
        ("/files/outside/secret.txt", 404),
        ("/files/outside/", 404),
        ("/%00", 400),
        ("/simple/%00/index.html", 400),
        ("/../secret.txt", 404),
        ("/simple/..%2f..%2fsecret.txt", 404),
    ],
)
def test_serve_stays_inside_out_and_lists_nothing(
    served: int, path: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    answer, body = status(served, path)
    assert answer == code
    assert b"secret" not in body
    assert "Traceback" not in capsys.readouterr().err


def test_threads_find_uv_one_at_a_time(fake_uv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """index build runs uv from several threads; `find_uv_bin`'s first sysconfig read is not
    thread-safe on Python 3.11, so it runs under the adapter's lock."""
    from concurrent.futures import ThreadPoolExecutor

    import uv

    from imagebot import uv as adapter

    found = uv.find_uv_bin()
    held = []

    def find() -> str:
        held.append(adapter._FINDING_UV.locked())
        return found

    monkeypatch.setattr(uv, "find_uv_bin", find)
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda _: adapter.Uv().compile({"a.in": "six==1.16.0\n"}, "", "3.11", "x86_64"),
                range(8),
            )
        )
    assert held == [True] * 8
