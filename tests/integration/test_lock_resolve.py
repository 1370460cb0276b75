"""`imagebot lock` against the real uv and the real PyPI: layering, distilled clashes, and a new
entry that keeps every existing pin that still fits.

Needs network access to pypi.org; skipped when it is unreachable.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cli_runner import Result
from paths import REPO_ROOT

from imagebot.lockfile import Pin, hashes_by_pin, parse_lock, seal

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


Run = Callable[..., Result]


@pytest.fixture
def run_lock(run_cli: Run) -> Run:
    """`imagebot --config ROOT/imagebot.toml lock FLAGS` (the shared in-process runner)."""

    def run(root: Path, *flags: str) -> Result:
        return run_cli("--config", root / "imagebot.toml", "lock", *flags)

    return run


def test_layers_resolve_and_shared_dependencies_land_in_the_earliest(
    tmp_path: Path, run_lock: Run
) -> None:
    root = project(
        tmp_path,
        pins(**{"python-dateutil": "2.9.0.post0"}),  # depends on six
        pins(arrow="1.4.0"),  # depends on python-dateutil (and so six), and tzdata
    )
    done = run_lock(root)
    assert done.code == 0, done.err
    base = (root / "requirements" / "base.lock").read_text()
    extra = (root / "requirements" / "extra.lock").read_text()
    assert "\nsix==" in base and "\npython-dateutil==2.9.0.post0 \\\n" in base
    assert "--hash=sha256:" in base
    assert "\narrow==1.4.0 \\\n" in extra
    assert "six==" not in extra and "python-dateutil==" not in extra
    assert run_lock(root, "--check").code == 0

    (root / "requirements" / "extra.toml").write_text(pins(arrow="1.3.0"))
    assert run_lock(root, "--check").code == 5
    assert run_lock(root).code == 0
    assert (root / "requirements" / "base.lock").read_text() == base  # earlier layer untouched


def assert_one_error(done: Result, code: int) -> str:
    assert done.code == code, done.err
    errors = done.error_lines
    assert len(errors) == 1 and "Traceback" not in done.err
    assert len(done.err.splitlines()) <= 6, done.err  # no resolver dump
    return errors[0]


def test_later_set_clashing_with_an_earlier_lock(tmp_path: Path, run_lock: Run) -> None:
    root = project(tmp_path, pins(**{"python-dateutil": "2.9.0.post0"}), pins(six="1.15.0"))
    error = assert_one_error(run_lock(root), 6)
    assert "six==1.15.0 (requirements/extra.toml:2)" in error
    assert "locked by earlier layer 'base' in base.lock" in error
    assert not (root / "requirements" / "base.lock").exists()  # all or nothing


def test_two_sets_pinning_incompatible_versions(tmp_path: Path, run_lock: Run) -> None:
    root = project(tmp_path, pins(pandas="3.1.1"), pins(numpy="1.26.4"))
    error = assert_one_error(run_lock(root), 6)
    assert "numpy==1.26.4 (requirements/extra.toml:2)" in error
    assert "locked by earlier layer 'base' in base.lock, needed by pandas" in error


def test_clash_inside_one_set(tmp_path: Path, run_lock: Run) -> None:
    root = project(tmp_path, pins(six="1.17.0"), pins(numpy="1.26.4", pandas="3.1.1"))
    error = assert_one_error(run_lock(root), 6)
    assert "numpy==1.26.4 (requirements/extra.toml:2)" in error
    assert "pandas==3.1.1 (requirements/extra.toml:3)" in error
    assert "depends on numpy>=" in error


def test_version_that_does_not_exist(tmp_path: Path, run_lock: Run) -> None:
    root = project(tmp_path, pins(six="1.17.0"), pins(numpy="9.9.9"))
    error = assert_one_error(run_lock(root), 6)
    assert "no version numpy==9.9.9 exists" in error and "requirements/extra.toml:2" in error


def test_package_that_does_not_exist(tmp_path: Path, run_lock: Run) -> None:
    root = project(tmp_path, pins(six="1.17.0"), pins(**{"imagebot-no-such-package-x": "1.0"}))
    error = assert_one_error(run_lock(root), 6)
    assert "'imagebot-no-such-package-x' does not exist" in error


def test_committed_locks_resolve_again(tmp_path: Path, run_lock: Run) -> None:
    """The shipped sets still resolve together (upgrade re-resolves every layer)."""
    for name in ("base", "datascience", "r"):
        (tmp_path / "requirements").mkdir(exist_ok=True)
        source = REPO_ROOT / "requirements" / f"{name}.toml"
        (tmp_path / "requirements" / f"{name}.toml").write_text(source.read_text())
    (tmp_path / "imagebot.toml").write_text(
        CONFIG.replace('sets = ["base", "extra"]', 'sets = ["base", "datascience", "r"]')
    )
    done = run_lock(tmp_path)
    assert done.code == 0, done.err
    assert "pandas==" in (tmp_path / "requirements" / "datascience.lock").read_text()


# --- a new entry moves only what it must -------------------------------------------------------


def aged(root: Path, set_name: str, name: str, version: str) -> str:
    """Pin `name` of `<set_name>.lock` back to `version` and seal the text again, as `imagebot
    lock` wrote it when `version` was the newest; returns the version it replaced."""
    path = root / "requirements" / f"{set_name}.lock"
    text = path.read_text()
    lock = parse_lock(set_name, text)
    assert lock is not None and name in lock.pins()
    newest = lock.pins()[name]
    assert newest != version
    path.write_text(seal(text.replace(f"\n{name}=={newest} \\\n", f"\n{name}=={version} \\\n")))
    return newest


def locked_pins(root: Path, set_name: str) -> dict[str, str]:
    lock = parse_lock(set_name, (root / "requirements" / f"{set_name}.lock").read_text())
    assert lock is not None and lock.intact
    return lock.pins()


def test_adding_an_entry_keeps_older_transitive_pins_and_upgrade_moves_them(
    tmp_path: Path, run_lock: Run
) -> None:
    dateutil = {"python-dateutil": "2.9.0.post0"}  # depends on six
    root = project(tmp_path, pins(**dateutil), pins(arrow="1.4.0"))  # arrow: tzdata
    assert run_lock(root).code == 0
    base_lock = root / "requirements" / "base.lock"
    newest_hashes = set().union(*hashes_by_pin(base_lock.read_text()).values())
    newest_six = aged(root, "base", "six", "1.16.0")
    newest_tzdata = aged(root, "extra", "tzdata", "2024.1")

    (root / "requirements" / "base.toml").write_text(pins(**dateutil, idna="3.10"))
    done = run_lock(root)
    assert done.code == 0, done.err
    base = locked_pins(root, "base")
    assert base == {"idna": "3.10", "python-dateutil": "2.9.0.post0", "six": "1.16.0"}
    assert locked_pins(root, "extra")["tzdata"] == "2024.1"  # the later layer keeps its pins
    # uv wrote six 1.16.0's own hashes, not the ones left over from the newer release
    six_hashes = hashes_by_pin(base_lock.read_text())[Pin("six", "1.16.0")]
    assert six_hashes and not six_hashes & newest_hashes
    assert run_lock(root, "--check").code == 0

    done = run_lock(root, "--upgrade")
    assert done.code == 0, done.err
    assert locked_pins(root, "base")["six"] == newest_six
    assert locked_pins(root, "extra")["tzdata"] == newest_tzdata


def test_a_lock_edited_by_hand_does_not_steer_the_resolution(tmp_path: Path, run_lock: Run) -> None:
    dateutil = {"python-dateutil": "2.9.0.post0"}
    root = project(tmp_path, pins(**dateutil), pins(arrow="1.4.0"))
    assert run_lock(root).code == 0
    path = root / "requirements" / "base.lock"
    newest_six = aged(root, "base", "six", "1.16.0")
    # the pull request's own edit, not sealed: its content digest fails
    path.write_text(path.read_text().replace("\nsix==1.16.0 \\\n", "\nsix==1.15.0 \\\n"))

    (root / "requirements" / "base.toml").write_text(pins(**dateutil, idna="3.10"))
    done = run_lock(root)
    assert done.code == 0, done.err
    assert locked_pins(root, "base")["six"] == newest_six
