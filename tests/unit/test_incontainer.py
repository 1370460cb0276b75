"""The in-container modules as the container runs them: from the probe archive, as data in.

The host's python3 stands in for the image's: the archive needs nothing but the standard
library (and `packaging`, which the smoke probe's dependency rule reads requirements with).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from imagebot.incontainer import ARCHIVE_PATH, MODULES, probe_archive, probe_command
from imagebot.incontainer import list_packages as lister
from imagebot.manifest import parse_package_list
from imagebot.smoke import SmokeSpec, parse_results, probe_input


def _run_archive(tmp_path: Path, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    archive = tmp_path / "imagebot_probe.zip"
    archive.write_bytes(probe_archive())
    command = probe_command(module, *args)
    assert command[:2] == ["python3", ARCHIVE_PATH]
    return subprocess.run(
        [sys.executable, "-I", str(archive), *command[2:]],  # -I: no imagebot on sys.path
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )


def test_archive_holds_the_modules_and_nothing_of_imagebot() -> None:
    names = zipfile.ZipFile(io.BytesIO(probe_archive())).namelist()
    assert names == [
        "__main__.py",
        "imagebot_probe/__init__.py",
        *(f"imagebot_probe/{m}.py" for m in MODULES),
    ]
    assert probe_archive() == probe_archive()  # built once, the same bytes each run
    for name in names:
        source = zipfile.ZipFile(io.BytesIO(probe_archive())).read(name).decode()
        assert "import imagebot" not in source and "from imagebot" not in source


def test_only_the_in_container_modules_run() -> None:
    for module in ("os", "results", "lab_server"):
        with pytest.raises(ValueError):
            probe_command(module)


def test_list_packages_from_the_archive_is_what_manifest_parses(tmp_path: Path) -> None:
    run = _run_archive(tmp_path, "list_packages")
    assert run.returncode == 0, run.stderr
    packages = parse_package_list("host", run.stdout)
    assert packages is not None
    assert packages.packages["python"]["pytest"] == pytest.__version__
    assert set(packages.packages) == {"python", "r", "dpkg"}


def test_smoke_probe_from_the_archive_reads_its_spec_as_data(tmp_path: Path) -> None:
    spec = SmokeSpec(
        {"pytest": pytest.__version__, "imagebot-absent": "1.0"},
        (("pytest", "pytest"), ("evil", "os; print('pwned')")),
        jupyter=False,
    )
    (tmp_path / "spec.json").write_bytes(probe_input(spec))
    run = _run_archive(tmp_path, "smoke_probe", str(tmp_path / "spec.json"))
    assert run.returncode == 0, run.stderr
    assert "pwned" not in run.stdout.splitlines()  # printed only inside a failure detail
    checks = {(c.check, c.subject): c for c in parse_results(run.stdout) or ()}
    assert checks["version", "pytest"].ok
    assert checks["version", "imagebot-absent"].detail == "not installed (lock: 1.0)"
    assert checks["import", "pytest"].ok
    assert not checks["import", "evil"].ok  # a module name, looked up, never run as code
    assert parse_package_list("host", run.stdout) is not None


def test_tab_lines_first_name_wins() -> None:
    assert lister.parse_tab_lines("a\t1\nb\t2\na\t3\nnoversion\n\t4\n") == {"a": "1", "b": "2"}


def test_package_list_marker_round_trips() -> None:
    packages = {"python": {"six": "1.16.0"}, "r": {}, "dpkg": {"bash": "5.2"}}
    parsed = parse_package_list("ref", "noise\n" + lister.marker_line(packages))
    assert parsed is not None and parsed.packages == packages


def test_probe_input_is_json_data() -> None:
    spec = SmokeSpec({"six": "1.16.0"}, (("six", "six"),), (("R6", "2.5.1"),), jupyter=False)
    assert json.loads(probe_input(spec)) == {
        "versions": {"six": "1.16.0"},
        "imports": [["six", "six"]],
        "r": [["R6", "2.5.1"]],
        "jupyter": False,
        "server_timeout": spec.server_timeout,
    }


def test_an_upgrade_of_a_package_the_venv_came_with_is_whited_out_in_that_package_s_layer() -> None:
    """pip 26 over the venv's pip 23.0.1: whole removed directories get one whiteout each (a
    file's whiteout would keep its directory, empty), filed under the package that replaced them."""
    from imagebot.incontainer.install_packages import removed_by_package, topmost

    site = "/opt/venv/lib/python3.11/site-packages"
    old_dist = f"{site}/pip-23.0.1.dist-info"
    removed = {
        old_dist,
        f"{old_dist}/METADATA",
        f"{old_dist}/RECORD",
        f"{site}/pip/_vendor/chardet",
        f"{site}/pip/_vendor/chardet/__init__.py",
        f"{site}/pip/_vendor/chardet/cli",
        f"{site}/pip/_vendor/chardet/cli/chardetect.py",
        f"{site}/pip/_vendor/six.py",
        f"{site}/stray.txt",  # no earlier version listed it
    }
    top = topmost(removed)
    assert top == [
        old_dist,
        f"{site}/pip/_vendor/chardet",
        f"{site}/pip/_vendor/six.py",
        f"{site}/stray.txt",
    ]
    earlier = {
        "pip": [
            f"{old_dist}/METADATA",
            f"{old_dist}/RECORD",
            f"{site}/pip/_vendor/chardet/__init__.py",
            f"{site}/pip/_vendor/chardet/cli/chardetect.py",
            f"{site}/pip/_vendor/six.py",
        ]
    }
    assert removed_by_package(top, earlier) == {"pip": top[:3], "": [f"{site}/stray.txt"]}
