"""The smoke probe's own logic, run here: it is a stdlib module, fed fake distributions."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from imagebot.incontainer import lab_server, smoke_probe
from imagebot.incontainer import results as probe_results
from imagebot.incontainer.results import Results


@dataclass
class FakeDist:
    version: str
    requires: list[str] | None = field(default_factory=list)


@pytest.fixture
def results() -> Results:
    return Results()


def _by_subject(results: Results) -> dict[str, Any]:
    return {r["subject"]: r for r in results.items}


def test_dependency_rule_names_missing_and_conflicting_requirements(results: Results) -> None:
    dists: Any = {
        "jupyter-server": FakeDist("2.21.1", ["tornado>=6.2", "anyio>=3.1; python_version>'3'"]),
        "tornado": FakeDist("6.1"),
        "pandas": FakeDist("3.0.0", ["numpy>=1.26", 'pytest>=8; extra == "test"']),
        "numpy": FakeDist("2.3.0rc1"),  # a pre-release satisfies >=1.26, as in pip check
        "six": FakeDist("1.16.0", None),
    }
    graph = smoke_probe.check_dependencies(results, dists)
    found = _by_subject(results)
    assert found["jupyter-server"]["ok"] is False
    assert found["jupyter-server"]["detail"] == (
        "jupyter-server 2.21.1 has requirement tornado>=6.2, but you have tornado 6.1; "
        "jupyter-server 2.21.1 requires anyio, which is not installed"
    )
    assert found["pandas"]["ok"] and found["six"]["ok"] and found["tornado"]["ok"]
    # extra-only requirements are neither checked nor part of the graph
    assert graph["pandas"] == ["numpy"]
    assert graph["jupyter-server"] == ["tornado", "anyio"]


def test_only_an_extra_marker_is_recognised() -> None:
    only_extra = smoke_probe.ONLY_FOR_AN_EXTRA
    assert only_extra.match(' extra == "test"')
    assert only_extra.match(" extra=='docs' ")
    assert not only_extra.match(' extra == "test" or python_version < "3.12"')
    assert not only_extra.match(' python_version >= "3.8"')


def test_versions_are_compared_with_the_spec(results: Results) -> None:
    dists: Any = {"six": FakeDist("1.16.0"), "numpy": FakeDist("2.3.0")}
    versions = {"six": "1.16.0", "numpy": "2.3.1", "pandas": "3.0.0"}
    smoke_probe.check_versions(results, versions, dists)
    assert [(r["subject"], r["ok"], r["detail"]) for r in results.items] == [
        ("numpy", False, "installed 2.3.0, lock says 2.3.1"),
        ("pandas", False, "not installed (lock: 3.0.0)"),
        ("six", True, ""),
    ]


def test_imports_built_on_the_server_are_its_dependents() -> None:
    graph = {
        "jupyterlab": ["jupyter-server", "jupyterlab-server"],
        "jupyterlab-server": ["jupyter-server"],
        "jupyter-resource-usage": ["jupyter-server", "psutil"],
        "jupyter-server": ["tornado"],
        "ipykernel": ["tornado", "traitlets"],
        "pandas": ["numpy"],
    }
    assert smoke_probe.dependents(graph, "jupyter-server") == {
        "jupyter-server",
        "jupyterlab",
        "jupyterlab-server",
        "jupyter-resource-usage",
    }


def test_import_failures_name_the_module(results: Results) -> None:
    smoke_probe.check_imports(results, [("six", "json"), ("nope", "imagebot_no_such_module")])
    assert results.items[0] == {"check": "import", "subject": "six", "ok": True, "detail": ""}
    assert results.items[1]["detail"] == (
        "import imagebot_no_such_module: ModuleNotFoundError: "
        "No module named 'imagebot_no_such_module'"
    )


def test_r_answers_are_compared_with_the_set(results: Results) -> None:
    stdout = "R6\t2.5.1\ndata.table\t1.15-4\nbroken\tERROR there is no package called 'broken'\n"
    packages = [("R6", "2.5.1"), ("data.table", "1.15.4"), ("broken", "1.0"), ("gone", "1")]
    smoke_probe.record_r_answers(results, packages, stdout, "Execution halted")
    assert [(r["subject"], r["ok"], r["detail"]) for r in results.items] == [
        ("R6", True, ""),
        ("data.table", True, ""),  # R writes 1.15-4 for 1.15.4
        ("broken", False, "library(broken) failed: there is no package called 'broken'"),
        ("gone", False, "no answer from Rscript: Execution halted"),
    ]


def test_a_worker_returns_its_results(results: Results) -> None:
    finish = smoke_probe.in_worker(
        results, lambda own: own.record("import", "six", True), [("import", "six")]
    )
    finish()
    assert results.items == [{"check": "import", "subject": "six", "ok": True, "detail": ""}]


def test_a_worker_that_crashes_fails_only_its_own_checks(results: Results) -> None:
    def crash(own: Results) -> None:  # as a crashing extension module would
        os.kill(os.getpid(), signal.SIGKILL)

    finish = smoke_probe.in_worker(results, crash, [("import", "numpy"), ("import", "pandas")])
    finish()
    assert [(r["subject"], r["ok"], r["detail"]) for r in results.items] == [
        ("numpy", False, f"the checking process died (signal {int(signal.SIGKILL)})"),
        ("pandas", False, f"the checking process died (signal {int(signal.SIGKILL)})"),
    ]


def test_a_step_that_raises_is_a_failed_check(results: Results) -> None:
    def boom() -> None:
        raise RuntimeError("no metadata")

    assert probe_results.guarded(results, "version", boom) is None
    assert results.items == [
        {
            "check": "version",
            "subject": "checks",
            "ok": False,
            "detail": "RuntimeError: no metadata",
        }
    ]


def test_results_are_sorted_by_kind_and_details_bounded(results: Results) -> None:
    results.record("server", "jupyter server", True)
    results.record("import", "six", False, "x" * 2000)
    results.record("version", "six", True)
    assert [r["check"] for r in results.sorted()] == ["version", "import", "server"]
    assert len(results.items[1]["detail"]) == probe_results.DETAIL_LIMIT


def _fake_lab_main() -> int:
    """Stands in for jupyter-lab's entry point in the forked child: answers as the server does."""
    import http.server

    port = int(next(a for a in sys.argv if a.startswith("--port=")).split("=")[1])
    token = next(a for a in sys.argv if a.startswith("--ServerApp.token=")).split("=")[1]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.headers.get("Authorization") == f"token {token}"
            body = b'{"started": "now"}' if self.path == "/api/status" else b"<html/>"
            self.send_response(200 if ok else 403)
            self.end_headers()
            self.wfile.write(body)

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    return 0


def test_the_forked_server_answers_status_and_lab(
    results: Results, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lab_server, "lab_entry_point", lambda results: _fake_lab_main)
    monkeypatch.setattr(lab_server.md, "version", lambda name: "4.6.6")
    finish = lab_server.start_server(results, timeout=30)
    assert finish is not None
    finish()
    found = {r["check"]: r for r in results.items}
    assert found["server"]["ok"], found["server"]["detail"]
    assert found["jupyter"] == {
        "check": "jupyter",
        "subject": "jupyterlab",
        "ok": True,
        "detail": "jupyter lab 4.6.6 serves /lab",
    }


def test_a_server_that_exits_is_named_with_its_log(
    results: Results, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exits() -> int:
        os.write(2, b"cannot bind the port\n")  # the log is the child's fds 1 and 2
        return 3

    monkeypatch.setattr(lab_server, "lab_entry_point", lambda results: exits)
    finish = lab_server.start_server(results, timeout=30)
    assert finish is not None
    finish()
    assert results.items[0]["ok"] is False
    assert results.items[0]["detail"].startswith("no answer from /api/status within 30s: ")
    assert "cannot bind the port" in results.items[0]["detail"]
