"""Runs inside an image: check it against a spec and print the results as one marker line.

`python3 ARCHIVE smoke_probe SPEC_FILE` (see `imagebot.incontainer`) on the image's own python3,
standard library only (plus `packaging`, or pip's vendored copy, to read requirements). The
spec is JSON data written by the host (from `SmokeSpec` in the host's smoke module): pins,
import names and R package names are only ever compared, passed to `importlib.import_module`,
or passed to Rscript as arguments.

Checks: installed versions equal the spec's pins, every listed module imports, pip check's
dependency rule, every R package loads at its pinned version, and `jupyter lab` starts a
server that answers `/api/status` and serves `/lab`. The image's package list follows the
results (`list_packages`), for the release's package diff.

Why it is shaped this way: on a 2-core runner the checks are CPU-bound (about 5 s of imports,
4 s of Jupyter server start-up, 2 s of `pip check` and 2 s of R, run one after another). So
each piece of work is done once and both cores are kept busy. Rscript runs alongside
everything. The dependency check applies pip check's rule in this process instead of starting
pip. The import checks of packages built on jupyter-server run in this process, which then
forks the server from the `jupyter-lab` entry point it has already imported, so those imports
are paid once. Every other import check runs at the same time in a forked worker.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypedDict

from .lab_server import start_server
from .list_packages import list_packages, marker_line
from .results import Finish, Results, guarded

RESULT_MARKER = "IMAGEBOT-SMOKE-RESULT "
SERVER_DISTRIBUTION = "jupyter-server"
ONLY_FOR_AN_EXTRA = re.compile(r"""^\s*extra\s*==\s*['"][^'"]*['"]\s*$""")

R_LOAD = """
args <- commandArgs(trailingOnly = TRUE)
for (p in args) {
  v <- tryCatch({
    suppressPackageStartupMessages(library(p, character.only = TRUE))
    as.character(packageVersion(p))
  }, error = function(e) paste0("ERROR ", conditionMessage(e)))
  cat(p, "\\t", v, "\\n", sep = "")
}
"""


class Spec(TypedDict):
    versions: dict[str, str]  # normalised distribution name -> version
    imports: list[list[str]]  # [distribution, module]
    r: list[list[str]]  # [package, version]
    jupyter: bool | None  # None: check Jupyter only when the image has it
    server_timeout: float


def read_spec(path: str) -> Spec:
    with open(path, encoding="utf-8") as file:
        spec: Spec = json.load(file)
    return spec


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> dict[str, md.Distribution]:
    # The first distribution of a name on sys.path wins, as it does for imports.
    found: dict[str, md.Distribution] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(norm(name), dist)
    return found


def check_versions(
    results: Results, versions: Mapping[str, str], dists: Mapping[str, md.Distribution]
) -> None:
    for name, want in sorted(versions.items()):
        dist = dists.get(name)
        if dist is None:
            results.record("version", name, False, f"not installed (lock: {want})")
        elif dist.version != want:
            results.record("version", name, False, f"installed {dist.version}, lock says {want}")
        else:
            results.record("version", name, True)


def requirement_class() -> Any:
    # packaging itself first: pip's vendored copy may be one that parses ten times slower.
    for module in ("packaging.requirements", "pip._vendor.packaging.requirements"):
        try:
            return importlib.import_module(module).Requirement
        except ImportError:
            pass
    return None


def requirement_problems(
    name: str, dist: md.Distribution, dists: Mapping[str, md.Distribution], requirement: Any
) -> tuple[list[str], list[str]]:
    """pip check's rule for one distribution: (its problems, the names it requires)."""
    problems: list[str] = []
    required: list[str] = []
    for text in dist.requires or ():
        if ONLY_FOR_AN_EXTRA.match(text.partition(";")[2]):
            continue  # most requirements are; parsing them all would cost a second
        try:
            req = requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            dep_name = norm(req.name)
            required.append(dep_name)
            dep = dists.get(dep_name)
            if dep is None:
                problems.append(
                    f"{name} {dist.version} requires {req.name}, which is not installed"
                )
            elif not req.specifier.contains(dep.version, prereleases=True):
                problems.append(
                    f"{name} {dist.version} has requirement {req}, "
                    f"but you have {req.name} {dep.version}"
                )
        except Exception as exc:
            problems.append(f"{name} {dist.version}: cannot check requirement {text!r}: {exc}")
    return problems, required


def check_dependencies(
    results: Results, dists: Mapping[str, md.Distribution]
) -> dict[str, list[str]]:
    """pip check's rule: every requirement of every installed distribution whose marker holds
    (without extras) is installed at a version its specifier allows, pre-releases included.

    Returns the dependency graph (name -> the names it requires) for placing the imports.
    """
    requirement = requirement_class()
    if requirement is None:
        results.record(
            "pip check",
            "dependencies",
            False,
            "neither pip nor packaging is installed to read requirements",
        )
        return {}
    graph: dict[str, list[str]] = {}
    for name, dist in sorted(dists.items()):
        problems, graph[name] = requirement_problems(name, dist, dists, requirement)
        results.record("pip check", name, not problems, "; ".join(problems))
    return graph


def dependents(graph: Mapping[str, Iterable[str]], target: str) -> set[str]:
    """target and every distribution that requires it, directly or not."""
    required_by: dict[str, list[str]] = {}
    for name, deps in graph.items():
        for dep in deps:
            required_by.setdefault(dep, []).append(name)
    found, todo = {target}, [target]
    while todo:
        for name in required_by.get(todo.pop(), ()):
            if name not in found:
                found.add(name)
                todo.append(name)
    return found


def check_imports(results: Results, imports: Sequence[tuple[str, str]]) -> None:
    for dist, module in imports:
        try:
            importlib.import_module(module)
            results.record("import", dist, True)
        except BaseException as exc:
            results.record("import", dist, False, f"import {module}: {type(exc).__name__}: {exc}")


def how_it_ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


def in_worker(
    results: Results, work: Callable[[Results], None], subjects: Sequence[tuple[str, str]]
) -> Finish:
    """Run work in a forked process; its results come back through a pipe.

    A worker that dies (a crashing extension module) fails the checks it had, and only those.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        own = Results()
        try:
            work(own)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            with os.fdopen(write_end, "w") as pipe:
                json.dump(own.items, pipe)
            os._exit(0)
    os.close(write_end)

    def finish() -> None:
        with os.fdopen(read_end) as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        try:
            results.items.extend(json.loads(data))
        except ValueError:
            for check, subject in subjects:
                results.record(
                    check, subject, False, f"the checking process died ({how_it_ended(status)})"
                )

    return finish


def same_r_version(installed: str, wanted: str) -> bool:
    return installed.replace("-", ".") == wanted.replace("-", ".")


def record_r_answers(
    results: Results, packages: Sequence[tuple[str, str]], stdout: str, stderr: str
) -> None:
    got: dict[str, str] = {}
    for line in stdout.splitlines():
        name, _, answer = line.partition("\t")
        got[name] = answer.strip()
    for name, want in packages:
        value = got.get(name)
        if value is None:
            results.record("r", name, False, f"no answer from Rscript: {stderr.strip()[-300:]}")
        elif value.startswith("ERROR"):
            results.record("r", name, False, f"library({name}) failed: {value[6:]}")
        elif not same_r_version(value, want):
            results.record("r", name, False, f"installed {value}, set says {want}")
        else:
            results.record("r", name, True)


def start_r_check(results: Results, packages: Sequence[tuple[str, str]]) -> Finish | None:
    if not packages:
        return None
    if not shutil.which("Rscript"):
        for name, _ in packages:
            results.record("r", name, False, "Rscript is not installed")
        return None
    # Package names are arguments to the R code, never part of it.
    proc = subprocess.Popen(
        ["Rscript", "-e", R_LOAD, *(name for name, _ in packages)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def finish() -> None:
        stdout, stderr = proc.communicate()
        record_r_answers(results, packages, stdout, stderr)

    return finish


def wants_jupyter(jupyter: bool | None) -> bool:
    return jupyter is True or (jupyter is None and bool(shutil.which("jupyter")))


def run_checks(spec: Spec) -> tuple[Results, dict[str, dict[str, str]] | None]:
    """The checks of spec, and the image's package list (listed while the checks finish)."""
    results = Results()
    finishers: list[tuple[str, Finish | None]] = []
    r_packages = [(name, version) for name, version in spec["r"]]
    finishers.append(("r", guarded(results, "r", lambda: start_r_check(results, r_packages))))
    dists: dict[str, md.Distribution] = guarded(results, "version", installed_distributions) or {}
    guarded(results, "version", lambda: check_versions(results, spec["versions"], dists))
    graph = guarded(results, "pip check", lambda: check_dependencies(results, dists)) or {}
    jupyter = wants_jupyter(spec["jupyter"])
    built_on_server = dependents(graph, SERVER_DISTRIBUTION) if jupyter else set()
    imports = [(dist, module) for dist, module in spec["imports"]]
    with_server = [i for i in imports if norm(i[0]) in built_on_server]
    alongside = [i for i in imports if norm(i[0]) not in built_on_server]
    # The worker is forked first, so that its imports run while this process imports the server.
    if alongside:
        subjects = [("import", dist) for dist, _ in alongside]
        work: Callable[[Results], None] = lambda own: check_imports(own, alongside)  # noqa: E731
        finishers.append(("import", in_worker(results, work, subjects)))
    if jupyter:
        timeout = spec["server_timeout"]
        finishers.append(
            ("server", guarded(results, "server", lambda: start_server(results, timeout)))
        )
    check_imports(results, with_server)
    packages = package_list()
    for name, finish in finishers:
        if finish is not None:
            guarded(results, name, finish)
    return results, packages


def package_list() -> dict[str, dict[str, str]] | None:
    """For the release's package diff; not a check, so a failure only leaves it out."""
    try:
        return list_packages()
    except Exception:
        return None


def main() -> None:
    results, packages = run_checks(read_spec(sys.argv[1]))
    sys.stdout.flush()
    print("\n" + RESULT_MARKER + json.dumps(results.sorted()), flush=True)
    if packages is not None:
        print(marker_line(packages), flush=True)


if __name__ == "__main__":
    main()
