"""`imagebot lock` against the real uv and the real PyPI: layering and distilled clashes.

Needs network access to pypi.org; skipped when it is unreachable.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import pypi_reachable

pytestmark = pytest.mark.integration

CONFIG = """\
[registry]
url = "registry.example.org/jupyter"

[images.lab]
dockerfile = "jupyter/Dockerfile"
base = "docker.io/library/python:3.11-slim-bookworm"
python = "3.11"
platform = "x86_64-manylinux_2_36"
sets = ["base", "extra"]
"""


if not pypi_reachable():
    pytest.skip("pypi.org is unreachable", allow_module_level=True)


def pins(**packages: str) -> str:
    return "[python]\n" + "".join(
        f'{name} = {{ version = "{version}", reason = "test", requested_by = "@ci" }}\n'
        for name, version in sorted(packages.items())
    )


def project(tmp_path: Path, base: str, extra: str) -> Path:
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "base.toml").write_text(base)
    (tmp_path / "requirements" / "extra.toml").write_text(extra)
    (tmp_path / "imagebot.toml").write_text(CONFIG)
    return tmp_path


def imagebot(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagebot", "--config", str(root / "imagebot.toml"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_layers_resolve_and_shared_dependencies_land_in_the_earliest(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        pins(**{"python-dateutil": "2.9.0.post0"}),  # depends on six
        pins(arrow="1.4.0"),  # depends on python-dateutil (and so six), and tzdata
    )
    done = imagebot(root, "lock")
    assert done.returncode == 0, done.stderr
    base = (root / "requirements" / "base.lock").read_text()
    extra = (root / "requirements" / "extra.lock").read_text()
    assert "\nsix==" in base and "\npython-dateutil==2.9.0.post0 \\\n" in base
    assert "--hash=sha256:" in base
    assert "\narrow==1.4.0 \\\n" in extra
    assert "six==" not in extra and "python-dateutil==" not in extra
    assert imagebot(root, "lock", "--check").returncode == 0

    (root / "requirements" / "extra.toml").write_text(pins(arrow="1.3.0"))
    assert imagebot(root, "lock", "--check").returncode == 5
    assert imagebot(root, "lock").returncode == 0
    assert (root / "requirements" / "base.lock").read_text() == base  # earlier layer untouched


def assert_one_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) <= 6, done.stderr  # no resolver dump
    return errors[0]


def test_later_set_clashing_with_an_earlier_lock(tmp_path: Path) -> None:
    root = project(tmp_path, pins(**{"python-dateutil": "2.9.0.post0"}), pins(six="1.15.0"))
    error = assert_one_error(imagebot(root, "lock"), 6)
    assert "six==1.15.0 (requirements/extra.toml:2)" in error
    assert "locked by earlier layer 'base' in base.lock" in error
    assert not (root / "requirements" / "base.lock").exists()  # all or nothing


def test_two_sets_pinning_incompatible_versions(tmp_path: Path) -> None:
    root = project(tmp_path, pins(pandas="3.1.1"), pins(numpy="1.26.4"))
    error = assert_one_error(imagebot(root, "lock"), 6)
    assert "numpy==1.26.4 (requirements/extra.toml:2)" in error
    assert "locked by earlier layer 'base' in base.lock, needed by pandas" in error


def test_clash_inside_one_set(tmp_path: Path) -> None:
    root = project(tmp_path, pins(six="1.17.0"), pins(numpy="1.26.4", pandas="3.1.1"))
    error = assert_one_error(imagebot(root, "lock"), 6)
    assert "numpy==1.26.4 (requirements/extra.toml:2)" in error
    assert "pandas==3.1.1 (requirements/extra.toml:3)" in error
    assert "depends on numpy>=" in error


def test_version_that_does_not_exist(tmp_path: Path) -> None:
    root = project(tmp_path, pins(six="1.17.0"), pins(numpy="9.9.9"))
    error = assert_one_error(imagebot(root, "lock"), 6)
    assert "no version numpy==9.9.9 exists" in error and "requirements/extra.toml:2" in error


def test_package_that_does_not_exist(tmp_path: Path) -> None:
    root = project(tmp_path, pins(six="1.17.0"), pins(**{"imagebot-no-such-package-x": "1.0"}))
    error = assert_one_error(imagebot(root, "lock"), 6)
    assert "'imagebot-no-such-package-x' does not exist" in error


def test_committed_locks_resolve_again(tmp_path: Path) -> None:
    """The shipped sets still resolve together (upgrade re-resolves every layer)."""
    repo = Path(__file__).resolve().parents[2]
    for name in ("base", "datascience", "r"):
        (tmp_path / "requirements").mkdir(exist_ok=True)
        source = repo / "requirements" / f"{name}.toml"
        (tmp_path / "requirements" / f"{name}.toml").write_text(source.read_text())
    (tmp_path / "imagebot.toml").write_text(
        CONFIG.replace('sets = ["base", "extra"]', 'sets = ["base", "datascience", "r"]')
    )
    done = imagebot(tmp_path, "lock")
    assert done.returncode == 0, done.stderr
    assert "pandas==" in (tmp_path / "requirements" / "datascience.lock").read_text()
