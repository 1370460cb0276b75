"""The in-image smoke script's own logic, run here: the script is stdlib Python, so its
functions are loaded from the rendered text (without calling main) and fed fake distributions.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import Any

import pytest

from imagebot.smoke import SmokeSpec, render_script


@dataclass
class FakeDist:
    version: str
    requires: list[str] | None = field(default_factory=list)


@pytest.fixture
def script() -> dict[str, Any]:
    text = render_script(SmokeSpec(jupyter=False))
    assert text.rstrip().endswith("main()")
    namespace: dict[str, Any] = {"__name__": "smoke_script"}
    exec(compile(text.rstrip().removesuffix("main()"), "smoke.py", "exec"), namespace)
    return namespace


def _results(script: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["subject"]: r for r in script["RESULTS"]}


def test_dependency_rule_names_missing_and_conflicting_requirements(
    script: dict[str, Any],
) -> None:
    dists = {
        "jupyter-server": FakeDist("2.21.1", ["tornado>=6.2", "anyio>=3.1; python_version>'3'"]),
        "tornado": FakeDist("6.1"),
        "pandas": FakeDist("3.0.0", ["numpy>=1.26", 'pytest>=8; extra == "test"']),
        "numpy": FakeDist("2.3.0rc1"),  # a pre-release satisfies >=1.26, as in pip check
        "six": FakeDist("1.16.0", None),
    }
    graph = script["check_dependencies"](dists)
    results = _results(script)
    assert results["jupyter-server"]["ok"] is False
    assert results["jupyter-server"]["detail"] == (
        "jupyter-server 2.21.1 has requirement tornado>=6.2, but you have tornado 6.1; "
        "jupyter-server 2.21.1 requires anyio, which is not installed"
    )
    assert results["pandas"]["ok"] and results["six"]["ok"] and results["tornado"]["ok"]
    # extra-only requirements are neither checked nor part of the graph
    assert graph["pandas"] == ["numpy"]
    assert graph["jupyter-server"] == ["tornado", "anyio"]


def test_only_an_extra_marker_is_recognised(script: dict[str, Any]) -> None:
    only_extra = script["ONLY_FOR_AN_EXTRA"]
    assert only_extra.match(' extra == "test"')
    assert only_extra.match(" extra=='docs' ")
    assert not only_extra.match(' extra == "test" or python_version < "3.12"')
    assert not only_extra.match(' python_version >= "3.8"')


def test_imports_built_on_the_server_are_its_dependents(script: dict[str, Any]) -> None:
    graph = {
        "jupyterlab": ["jupyter-server", "jupyterlab-server"],
        "jupyterlab-server": ["jupyter-server"],
        "jupyter-resource-usage": ["jupyter-server", "psutil"],
        "jupyter-server": ["tornado"],
        "ipykernel": ["tornado", "traitlets"],
        "pandas": ["numpy"],
    }
    assert script["dependents"](graph, "jupyter-server") == {
        "jupyter-server",
        "jupyterlab",
        "jupyterlab-server",
        "jupyter-resource-usage",
    }


def test_a_worker_returns_its_results(script: dict[str, Any]) -> None:
    finish = script["in_worker"](
        lambda: script["record"]("import", "six", True), [("import", "six")]
    )
    finish()
    assert script["RESULTS"] == [{"check": "import", "subject": "six", "ok": True, "detail": ""}]


def test_a_worker_that_crashes_fails_only_its_own_checks(script: dict[str, Any]) -> None:
    def crash() -> None:  # as a crashing extension module would, minus faulthandler's report
        os.kill(os.getpid(), signal.SIGKILL)

    finish = script["in_worker"](crash, [("import", "numpy"), ("import", "pandas")])
    finish()
    assert [(r["subject"], r["ok"], r["detail"]) for r in script["RESULTS"]] == [
        ("numpy", False, f"the checking process died (signal {int(signal.SIGKILL)})"),
        ("pandas", False, f"the checking process died (signal {int(signal.SIGKILL)})"),
    ]
