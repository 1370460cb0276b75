"""Users' environment files: parsing, vetting against the manifest, the install script."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from paths import CORPUS

from imagebot.envfile import (
    check_env_file,
    check_renv_lock,
    install_order,
    is_renv_lock,
    lock_problems,
    logical_lines,
    parse_env_file,
    r_repo_url,
    render_script,
    renv_script,
    uv_index_url,
)
from imagebot.errors import EnvFileError, UsageError
from imagebot.index_pages import (
    MANIFEST_NAME,
    DistFile,
    IndexedPackage,
    IndexManifest,
    Pin,
    Root,
    Target,
    manifest_to_json,
)
from imagebot.main import main

TARGET = Target("3.11", "x86_64-manylinux_2_36")
DOCKERFILES = CORPUS / "dockerfiles"


def wheel(name: str, version: str) -> DistFile:
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    return DistFile(
        filename, f"https://f/{filename}", hashlib.sha256(filename.encode()).hexdigest(), 1
    )


def manifest() -> IndexManifest:
    pins = [
        ("python-dateutil", "2.9.0.post0"),
        ("six", "1.16.0"),
        ("six", "1.17.0"),
        ("nbconvert", "7.16.4"),
    ]
    packages = tuple(IndexedPackage(n, v, wheel(n, v), ("small",), ()) for n, v in pins)
    roots = (Root("python-dateutil", "2.9.0.post0", "small", "dates", "@a"),)
    closures = {
        "python-dateutil==2.9.0.post0": (
            Pin("python-dateutil", "2.9.0.post0"),
            Pin("six", "1.17.0"),
        )
    }
    return IndexManifest(TARGET, roots, closures, packages)


def problems_of(text: str, request_url: str = "https://ask.example/") -> list[str]:
    with pytest.raises(EnvFileError) as caught:
        check_env_file("env.txt", text, manifest(), request_url)
    assert caught.value.exit_code == 14
    return caught.value.detail_lines()


def test_logical_lines_join_continuations_and_drop_comments() -> None:
    text = "# top\n\npkg==1.0 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via x\nurl#frag==1  # note\n"
    assert logical_lines(text) == [
        (3, "pkg==1.0      --hash=sha256:aa      --hash=sha256:bb"),
        (7, "url#frag==1"),
    ]


def test_a_clean_file_passes_and_keeps_extras_markers_and_hashes() -> None:
    six = wheel("six", "1.17.0")
    text = (
        "# my project\n"
        "Python_Dateutil==2.9.0.post0\n"
        f"six==1.17 --hash=sha256:{six.sha256}\n"
        "nbconvert[webpdf]==7.16.4 ; python_version >= '3.9'\n"
        "pywin32==306 ; sys_platform == 'win32'\n"
    )
    requirements = check_env_file("env.txt", text, manifest())
    assert [r.pin for r in requirements] == [
        "python-dateutil==2.9.0.post0",
        "six==1.17",
        'nbconvert[webpdf]==7.16.4 ; python_version >= "3.9"',
    ]
    assert requirements[1].hashes == (f"sha256:{six.sha256}",)


def test_every_problem_is_reported_with_its_line_and_a_hint() -> None:
    text = (
        "pandas\n"  # 1 unpinned
        "six>=1.16\n"  # 2 a range
        "python-dateutil==2.*\n"  # 3 wildcard
        "six==1.15.0\n"  # 4 a version that is not vetted
        "numpy==2.3.4\n"  # 5 not vetted at all
        "-r other.txt\n"  # 6 option
        "git+https://github.com/org/repo.git@main\n"  # 7 VCS
        "mypkg @ https://example.com/mypkg.whl\n"  # 8 direct URL
        "=bad=\n"  # 9 not a requirement
        "nbconvert==7.16.4\n"  # 10 fine
        "NBConvert==7.16.4\n"  # 11 duplicate
        "python-dateutil==2.9.0.post0 --hash=sha256:0000\n"  # 12 hash that does not match
    )
    lines = problems_of(text)
    assert [line.split(":", 2)[1] for line in lines] == [
        str(n) for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12)
    ]
    by_line = {int(line.split(":")[1]): line for line in lines}
    assert (
        "pandas is not pinned" in by_line[1]
        and "hint: pin it exactly: pandas==VERSION" in by_line[1]
    )
    assert "six is not pinned" in by_line[2]
    assert "not pinned" in by_line[3]
    assert "six==1.15.0 is not vetted" in by_line[4]
    assert "vetted versions: 1.16.0, 1.17.0" in by_line[4]
    assert "numpy is not a vetted package" in by_line[5] and "https://ask.example/" in by_line[5]
    assert "option '-r'" in by_line[6]
    assert "URL or path" in by_line[7] and "URL or path" in by_line[8]
    assert "not a requirement" in by_line[9]
    assert "listed twice (first at line 10)" in by_line[11]
    assert (
        "no --hash matches the vetted file python_dateutil-2.9.0.post0-py3-none-any.whl"
        in by_line[12]
    )


def test_an_empty_file_is_a_problem() -> None:
    assert problems_of("# nothing yet\n\n") == [
        "env.txt: no requirements in the file (hint: add name==version lines)"
    ]


def test_parse_reports_no_problems_for_pinned_lines_only() -> None:
    requirements, problems = parse_env_file("f", "a==1\nb==2\n", TARGET)
    assert problems == [] and [r.name for r in requirements] == ["a", "b"]


def test_lock_may_only_hold_what_the_manifest_vets() -> None:
    assert lock_problems("f", "six==1.17.0 \\\n  --hash=sha256:x\n", manifest()) == []
    (problem,) = lock_problems("f", "idna==3.10\n", manifest())
    assert "idna==3.10" in problem.message


def test_uv_index_url_for_a_local_build_is_a_file_url(tmp_path: Path) -> None:
    assert uv_index_url(str(tmp_path)) == (tmp_path / "simple").as_uri()
    assert uv_index_url("http://127.0.0.1:5556/simple") == "http://127.0.0.1:5556/simple"


LOCK = "six==1.17.0 \\\n    --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274\n"


def test_script_embeds_the_lock_and_installs_with_hashes_and_no_deps() -> None:
    script = render_script("env.txt", LOCK, "https://index.example/simple", "https://ask.example/")
    assert script.startswith("#!/usr/bin/env bash\n# Generated by `imagebot env script env.txt`")
    assert LOCK in script
    assert 'index_url="${IMAGEBOT_INDEX_URL:-https://index.example/simple}"' in script
    assert "--no-deps --require-hashes" in script
    assert "Ask at https://ask.example/" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_script_installs_the_lock_it_embeds(tmp_path: Path) -> None:
    """Run the script with a fake python that records what pip was given."""
    fake = tmp_path / "python"
    fake.write_text(
        '#!/usr/bin/env bash\necho "$*" >> "$LOG"\nif [ "$3" = install ]; then cp "${@: -1}" "$LOCK_COPY"; fi\n'
    )
    fake.chmod(0o755)
    script = tmp_path / "install.sh"
    script.write_text(render_script("env.txt", LOCK, "https://index.example/simple"))
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHON": str(fake),
        "LOG": str(tmp_path / "log"),
        "LOCK_COPY": str(tmp_path / "lock"),
    }
    subprocess.run(["bash", str(script), "--user"], env=env, check=True)
    calls = (tmp_path / "log").read_text().splitlines()
    assert calls[0].startswith(
        "-m pip install --disable-pip-version-check --no-input --index-url https://index.example/simple"
    )
    assert "--user -r" in calls[0]
    assert calls[1] == "-m pip check --disable-pip-version-check"
    assert (tmp_path / "lock").read_text() == LOCK


# --- CLI ----------------------------------------------------------------------------------------


def project(tmp_path: Path) -> Path:
    (tmp_path / "requirements").mkdir()
    (tmp_path / "imagebot.toml").write_text(
        '[registry]\nurl = "127.0.0.1:5555/jupyter"\n'
        '[images.jupyterlab]\ndockerfile = "jupyter/Dockerfile"\nbase = "b"\nsets = []\n'
        '[index]\nurl = "http://127.0.0.1:9/simple"\nrequest_url = "https://ask.example/"\n'
    )
    (tmp_path / "jupyter").mkdir()
    (tmp_path / "jupyter" / "Dockerfile").write_text("FROM b\n")
    out = tmp_path / "index"
    out.mkdir()
    (out / MANIFEST_NAME).write_text(manifest_to_json(manifest()))
    return out


def run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_env_check_exits_14_and_prints_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = project(tmp_path)
    env = tmp_path / "env.txt"
    env.write_text("six==1.15.0\nnumpy\n")
    code = run(
        ["-c", str(tmp_path / "imagebot.toml"), "env", "check", str(env), "--index", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 14
    assert f"{env}:1: six==1.15.0 is not vetted" in err
    assert f"{env}:2: numpy is not pinned" in err
    assert f"error: 2 problems in {env}" in err


def test_cli_env_check_passes_a_vetted_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = project(tmp_path)
    env = tmp_path / "env.txt"
    env.write_text("six==1.17.0\n")
    assert (
        run(["-c", str(tmp_path / "imagebot.toml"), "env", "check", str(env), "--index", str(out)])
        == 0
    )
    assert "1 packages, all pinned and vetted" in capsys.readouterr().err


def test_cli_env_check_without_a_manifest_exits_13(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path)
    env = tmp_path / "env.txt"
    env.write_text("six==1.17.0\n")
    code = run(
        [
            "-c",
            str(tmp_path / "imagebot.toml"),
            "env",
            "check",
            str(env),
            "--index",
            str(tmp_path / "nowhere"),
        ]
    )
    assert code == 13
    assert "no index manifest there" in capsys.readouterr().err


def test_cli_env_script_on_a_bad_file_writes_nothing(tmp_path: Path) -> None:
    out = project(tmp_path)
    env = tmp_path / "env.txt"
    env.write_text("numpy==1.0\n")
    target = tmp_path / "install.sh"
    code = run(
        [
            "-c",
            str(tmp_path / "imagebot.toml"),
            "env",
            "script",
            str(env),
            "--index",
            str(out),
            "-o",
            str(target),
        ]
    )
    assert code == 14
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "env.txt",
        "imagebot.toml",
        "index",
        "jupyter",
        "requirements",
    ]


def test_cli_index_build_with_a_broken_index_only_file_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path)
    config = tmp_path / "imagebot.toml"
    config.write_text(config.read_text().replace("sets = []", 'sets = ["small"]'))
    (tmp_path / "requirements" / "small.toml").write_text("[python]\n")
    (tmp_path / "requirements" / "index-only.toml").write_text(
        '[python]\nsix = { version = "1.16.0" }\n'
    )
    code = run(["-c", str(config), "index", "build", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 4
    assert "index-only.toml:2: entry 'six' is missing reason" in err
    assert not (tmp_path / "out").exists()


# --- corpus: real requirement files from JupyterHub deployments --------------------------------


@pytest.mark.corpus
def test_pip_compile_output_parses_cleanly_and_is_reported_as_not_vetted() -> None:
    path = (
        DOCKERFILES
        / "jupyterhub__zero-to-jupyterhub-k8s__images__singleuser-sample__requirements.txt"
    )
    if not path.is_file():
        pytest.skip("corpus not present")
    requirements, problems = parse_env_file(str(path), path.read_text(), TARGET)
    assert problems == []
    assert len(requirements) > 50
    vetted = manifest()
    unvetted = [
        r
        for r in requirements
        if str(Pin(r.name, r.version)) not in {str(p.pin) for p in vetted.packages}
    ]
    lines = problems_of(path.read_text())
    assert len(lines) == len(unvetted) > 50  # one problem per unvetted pin, nothing else
    assert all(":" in line and "hint:" in line for line in lines)


@pytest.mark.corpus
def test_unfrozen_and_vcs_requirements_are_reported_line_by_line() -> None:
    unfrozen = (
        DOCKERFILES
        / "jupyterhub__zero-to-jupyterhub-k8s__images__singleuser-sample__unfrozen__requirements.txt"
    )
    infra = (
        DOCKERFILES
        / "berkeley-dsep-infra__datahub__deployments__biology__image__infra-requirements.txt"
    )
    if not unfrozen.is_file() or not infra.is_file():
        pytest.skip("corpus not present")
    _, problems = parse_env_file(str(unfrozen), unfrozen.read_text(), TARGET)
    assert {p.message.split(" ")[0] for p in problems} >= {"jupyterlab", "nbclassic", "nbgitpuller"}
    _, problems = parse_env_file(str(infra), infra.read_text(), TARGET)
    assert [p.message for p in problems if "URL" in p.message] == [
        "'git+https://github.com/shaneknapp/python-popularity-contest.git@add-error-handling' "
        "installs from a URL or path, not from the vetted index"
    ]


def test_an_index_url_with_shell_metacharacters_is_refused() -> None:
    from imagebot.errors import UsageError

    with pytest.raises(UsageError, match="shell metacharacters"):
        render_script("env.txt", LOCK, "http://x/simple}; rm -rf ~")


# --- renv.lock -----------------------------------------------------------------------------------


def r_manifest() -> IndexManifest:
    from imagebot.cran import RIndexed, RManifest, RPackage, RRoot

    def indexed(name: str, version: str, current: bool = True, imports: str = "") -> RIndexed:
        fields = {"Imports": imports} if imports else {}
        md5 = hashlib.md5(f"{name}{version}".encode()).hexdigest()
        base = "src/contrib" if current else f"src/contrib/Archive/{name}"
        package = RPackage(name, version, md5, fields, "https://up")
        return RIndexed(package, f"{base}/{name}_{version}.tar.gz", "0" * 64, 1, (), (), current)

    packages = (
        indexed("R6", "2.6.1"),
        indexed("R6", "2.5.1", current=False),
        indexed("here", "1.0.1", imports="rprojroot (>= 2.0.2), utils"),
        indexed("rprojroot", "2.0.3"),
    )
    roots = (RRoot("R6", "2.6.1", "index-only", "classes", "@a"),)
    return IndexManifest(TARGET, (), {}, (), RManifest(roots, packages, ("https://up",)))


def renv_lock(packages: dict[str, object], r_version: str = "4.2.2") -> str:
    import json

    return json.dumps({"R": {"Version": r_version}, "Packages": packages}, indent=2)


def rec(name: str, version: str, **extra: object) -> dict[str, object]:
    return {"Package": name, "Version": version, "Source": "Repository", **extra}


GOOD_RENV = renv_lock(
    {
        "R6": rec("R6", "2.5.1"),
        "here": rec("here", "1.0.1"),
        "rprojroot": rec("rprojroot", "2.0.3"),
        "Matrix": rec("Matrix", "1.5-3"),
    }
)


def test_renv_lock_is_told_apart_from_a_requirements_file() -> None:
    assert is_renv_lock(GOOD_RENV) and is_renv_lock("\ufeff  {}")
    assert not is_renv_lock("# pins\nsix==1.16.0\n")


def test_renv_lock_checks_and_orders_dependencies_first() -> None:
    lock = check_renv_lock("renv.lock", GOOD_RENV, r_manifest())
    assert lock.r_version == "4.2.2" and lock.with_r == ("Matrix",)
    assert install_order(lock, r_manifest()) == [
        ("R6", "2.5.1", "src/contrib/Archive/R6/R6_2.5.1.tar.gz", hashlib.md5(b"R62.5.1").hexdigest()),
        ("rprojroot", "2.0.3", "src/contrib/rprojroot_2.0.3.tar.gz", hashlib.md5(b"rprojroot2.0.3").hexdigest()),
        ("here", "1.0.1", "src/contrib/here_1.0.1.tar.gz", hashlib.md5(b"here1.0.1").hexdigest()),
    ]  # fmt: skip


def renv_problems_of(text: str) -> list[str]:
    with pytest.raises(EnvFileError) as caught:
        check_renv_lock("renv.lock", text, r_manifest(), "https://ask.example/")
    assert caught.value.exit_code == 14
    return caught.value.detail_lines()


@pytest.mark.parametrize(
    ("packages", "expected"),
    [
        ({"ggplot2": rec("ggplot2", "3.4.1")}, "renv.lock:6: R package ggplot2 is not vetted (hint: ask for it at https://ask.example/)"),
        ({"R6": rec("R6", "2.4.0")}, "R package R6 2.4.0 is not vetted (hint: vetted versions: 2.5.1, 2.6.1"),
        ({"here": rec("here", "1.0.1")}, "here needs rprojroot (>= 2.0.2), which renv.lock does not list"),
        ({"R6": rec("R6", "2.6.1", Source="GitHub", RemoteRepo="x/R6")}, "Source 'GitHub' installs from outside the vetted repository"),
        ({"R6": rec("R6", "2.6.1", Source="Local", RemoteUrl="/home/x/R6")}, "Source 'Local'"),
        ({"../R6": rec("../R6", "2.6.1")}, "'../R6': "),
        ({"R6": rec("R6", "2.6.1\nsystem('x')")}, "is not a valid R version"),
        ({"R6": rec("R6'); system('x'); ('", "2.6.1")}, "\"Package\" says"),
        ({"R6": "2.6.1"}, "R6: not an object"),
    ],
)  # fmt: skip
def test_renv_lock_problems(packages: dict[str, object], expected: str) -> None:
    problems = renv_problems_of(renv_lock(packages))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{\n  \"Packages\": {,\n}", "renv.lock:2: not JSON"),
        ("[]", "no \"Packages\" object"),
        (renv_lock({}), "no packages in renv.lock"),
        ("[" * 100_000 + "]" * 100_000, "renv.lock"),
        (renv_lock({"R6": rec("R6", "2.6.1")}, r_version="4.2; q()"), "R: Version"),
    ],
)  # fmt: skip
def test_bad_renv_lock_files(text: str, expected: str) -> None:
    problems = renv_problems_of(text)
    assert any(expected in p for p in problems), problems


def test_renv_script_installs_exactly_the_lock_and_checks_md5(tmp_path: Path) -> None:
    script = renv_script(
        Path("renv.lock"),
        GOOD_RENV,
        r_manifest(),
        "https://idx.example/cran",
        "https://ask.example/",
    )
    assert script.packages == 3
    text = script.text
    assert 'repo="${IMAGEBOT_CRAN_URL:-https://idx.example/cran}"' in text
    assert '  c("R6", "2.5.1", "src/contrib/Archive/R6/R6_2.5.1.tar.gz", "' in text
    assert "tools::md5sum(dest)" in text and "with R itself (not installed): Matrix" in text
    path = tmp_path / "s.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    assert r_repo_url("https://idx.example/simple") == "https://idx.example/cran"
    assert r_repo_url(str(tmp_path)) == (tmp_path / "cran").as_uri()
    with pytest.raises(UsageError):
        renv_script(Path("renv\n.lock"), GOOD_RENV, r_manifest(), "https://idx.example/cran")
