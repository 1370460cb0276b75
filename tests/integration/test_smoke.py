"""`imagebot test` on the small fixture image: versions, imports, pip check, failures named."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .conftest import FIXTURES, Run, Stack, run_imagebot


def test_smoke_passes_on_the_small_image(stack: Stack, small_pushed: Run) -> None:
    run = run_imagebot(["test", "small"], stack.env())
    assert run.returncode == 0, run.output
    assert "ok   version: 1/1 passed" in run.stderr
    assert "ok   import: 1/1 passed" in run.stderr
    assert "ok   pip check" in run.stderr
    # stdout is the tested ref and nothing else, for scripts: <namespace>/small:<content tag>
    assert re.fullmatch(re.escape(stack.namespace) + r"/small:[0-9a-f]{16}", run.stdout.strip())


def _fixture_copy(tmp_path: Path, lock: str, toml_version: str) -> Path:
    """The small fixture with a different lock/set pin, same Dockerfile and build args."""
    copy = tmp_path / "small"
    shutil.copytree(FIXTURES / "small", copy)
    (copy / "requirements" / "small.lock").write_text(lock)
    set_file = copy / "requirements" / "small.toml"
    set_file.write_text(set_file.read_text().replace('"1.16.0"', f'"{toml_version}"'))
    return copy / "imagebot.toml"


def test_smoke_names_the_package_with_a_wrong_version(
    stack: Stack, small_pushed: Run, tmp_path: Path
) -> None:
    ref = run_imagebot(["build", "small"], stack.env()).stdout.strip()
    config = _fixture_copy(tmp_path, "six==1.17.0\nnot-installed-pkg==1.0\n", "1.17.0")
    run = run_imagebot(["test", ref], stack.env(), config=config)
    assert run.returncode == 8, run.output
    assert "version six: installed 1.16.0, lock says 1.17.0" in run.stderr
    assert "version not-installed-pkg: not installed (lock: 1.0)" in run.stderr
    assert "error: 2 problems in image" in run.stderr


def test_smoke_names_a_module_that_does_not_import(
    stack: Stack, small_pushed: Run, tmp_path: Path
) -> None:
    ref = run_imagebot(["build", "small"], stack.env()).stdout.strip()
    config = _fixture_copy(tmp_path, "six==1.16.0\n", "1.16.0")
    set_file = config.parent / "requirements" / "small.toml"
    set_file.write_text(
        set_file.read_text().replace(
            'version = "1.16.0"', 'version = "1.16.0", import = "six_missing"'
        )
    )
    run = run_imagebot(["test", ref], stack.env(), config=config)
    assert run.returncode == 8, run.output
    assert "import six: import six_missing: ModuleNotFoundError" in run.stderr
