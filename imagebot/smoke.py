"""`imagebot test IMAGE`: run a built image and check that it is what the locks promise.

All in-container checks run in ONE `docker run` of a generated Python script (fast): installed
versions equal the layered locks, every pinned package imports, pip check's dependency rule,
every R package loads at its pinned version, and `jupyter lab` starts a server that answers
`/api/status` and serves `/lab`. The script prints one JSON line of results, then the image's
package list (the manifest); the host turns them into a report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagebot.errors import ImageTestError, Problem
from imagebot.manifest import MARKER as MANIFEST_MARKER
from imagebot.manifest import PACKAGE_LISTER, Manifest, parse_manifest_output
from imagebot.requirements import normalize

if TYPE_CHECKING:
    from imagebot.config import Config

RESULT_MARKER = "IMAGEBOT-SMOKE-RESULT "
SCRIPT_PATH = "/tmp/imagebot_smoke.py"
SERVER_TIMEOUT = 90.0

# Distribution name -> import name, where they differ and the set entry gives no `import`.
IMPORT_NAMES: Mapping[str, str] = {
    "beautifulsoup4": "bs4",
    "google-cloud-bigquery": "google.cloud.bigquery",
    "google-cloud-storage": "google.cloud.storage",
    "ipython": "IPython",
    "jupyter-server": "jupyter_server",
    "jupyterlab-git": "jupyterlab_git",
    "opencv-python": "cv2",
    "opencv-python-headless": "cv2",
    "pillow": "PIL",
    "protobuf": "google.protobuf",
    "psycopg2-binary": "psycopg2",
    "psycopg-binary": "psycopg",
    "pyarrow": "pyarrow",
    "pygithub": "github",
    "pyjwt": "jwt",
    "pymysql": "pymysql",
    "python-dateutil": "dateutil",
    "python-dotenv": "dotenv",
    "pytz": "pytz",
    "pyyaml": "yaml",
    "scikit-image": "skimage",
    "scikit-learn": "sklearn",
    "sqlalchemy": "sqlalchemy",
    "tables": "tables",
    "typing-extensions": "typing_extensions",
}


def import_name(name: str, explicit: str | None) -> str:
    """PURE: the module to import for a distribution: the entry's `import`, the map, or a guess."""
    if explicit:
        return explicit
    key = normalize(name)
    return IMPORT_NAMES.get(key, key.replace("-", "_"))


@dataclass(frozen=True)
class SmokeSpec:
    """What the image must contain; the generated script checks exactly this."""

    versions: Mapping[str, str] = field(default_factory=dict)  # normalised name -> version
    imports: tuple[tuple[str, str], ...] = ()  # (distribution, module)
    r_packages: tuple[tuple[str, str], ...] = ()  # (package, version)
    jupyter: bool | None = None  # None: check Jupyter only when the image has it
    server_timeout: float = SERVER_TIMEOUT

    def to_json(self) -> str:
        return json.dumps(
            {
                "versions": dict(self.versions),
                "imports": [list(i) for i in self.imports],
                "r": [list(r) for r in self.r_packages],
                "jupyter": self.jupyter,
                "server_timeout": self.server_timeout,
            }
        )


def expectations(config: Config, image_name: str) -> SmokeSpec:
    """The spec for a configured image: its sets' entries and the pins of their layered locks."""
    from imagebot.index_pages import parse_compiled
    from imagebot.lock import lock_path, read_text_or_none
    from imagebot.requirements import load_sets

    image = config.image(image_name)
    if not image.sets:
        return SmokeSpec(jupyter=False)
    sets = load_sets(config.requirements_dir, image.sets)
    versions: dict[str, str] = {}
    for set_name in image.sets:  # later sets are installed later: their pins win
        text = read_text_or_none(lock_path(config.requirements_dir, set_name))
        versions.update((pin.name, pin.version) for pin in parse_compiled(text or ""))
    imports: list[tuple[str, str]] = []
    r_packages: list[tuple[str, str]] = []
    for req_set in sets:
        for entry in req_set.python:
            versions.setdefault(entry.key, entry.version)
            imports.append((entry.name, import_name(entry.name, entry.import_name)))
        r_packages.extend((entry.name, entry.version) for entry in req_set.r)
    # The Jupyter checks apply to notebook images, i.e. those that lock jupyterlab.
    jupyter = "jupyterlab" in versions
    return SmokeSpec(versions, tuple(imports), tuple(r_packages), jupyter=jupyter)


@dataclass(frozen=True)
class Check:
    check: str  # "version" | "import" | "pip check" | "r" | "jupyter" | "server"
    subject: str  # the package (or tool) the check is about
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class SmokeReport:
    ref: str
    checks: tuple[Check, ...]
    seconds: float
    manifest: Manifest | None = None  # the image's packages, listed by the same run

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def lines(self) -> list[str]:
        """A readable summary, one line per kind of check (failures follow as error details)."""
        lines = [f"image {self.ref}"]
        kinds: dict[str, list[Check]] = {}
        for check in self.checks:
            kinds.setdefault(check.check, []).append(check)
        for kind, checks in kinds.items():
            failed = [c for c in checks if not c.ok]
            mark = "FAIL" if failed else "ok  "
            detail = f": {checks[0].detail}" if len(checks) == 1 and checks[0].detail else ""
            lines.append(
                f"  {mark} {kind}: {len(checks) - len(failed)}/{len(checks)} passed{detail}"
            )
        lines.append(f"  {len(self.checks)} checks in {self.seconds:.1f}s")
        return lines

    def raise_for_failures(self) -> None:
        if self.failures:
            raise ImageTestError(
                [Problem(f"{c.check} {c.subject}", 0, c.detail) for c in self.failures],
                f"image {self.ref}",
                "fix the package or pin named above, rebuild, and run imagebot test again",
            )


def parse_results(output: str) -> tuple[Check, ...] | None:
    """PURE: the checks from the script's marker line, or None when it never got there."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARKER):
            raw = json.loads(line[len(RESULT_MARKER) :])
            return tuple(Check(r["check"], r["subject"], bool(r["ok"]), r["detail"]) for r in raw)
    return None


def smoke_test(
    config: Config, image: str, *, env: Mapping[str, str] | None = None, timeout: float = 600
) -> SmokeReport:
    """Run the checks in one container of image (a config name or a ref)."""
    from imagebot.build import local_image
    from imagebot.engine import run_container

    start = time.monotonic()
    target = local_image(config, image, env)
    spec = expectations(config, target.image) if target.image else SmokeSpec()
    result = run_container(
        target.client,
        target.engine_ref,
        ["python3", SCRIPT_PATH],
        timeout=timeout,
        environment={"MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"},
        files={SCRIPT_PATH: render_script(spec).encode()},
    )
    checks = parse_results(result.output)
    if checks is None:
        checks = (
            Check(
                "run",
                "python3",
                False,
                f"the check script did not finish (exit {result.exit_code}): "
                + _tail(result.output),
            ),
        )
    manifest = parse_manifest_output(str(target.ref), result.output)
    return SmokeReport(str(target.ref), checks, time.monotonic() - start, manifest)


def _tail(text: str, lines: int = 8) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def render_script(spec: SmokeSpec) -> str:
    """PURE: the in-container check script with the spec embedded."""
    return (
        _SCRIPT.replace("@SPEC@", repr(spec.to_json()))
        .replace("@MARKER@", RESULT_MARKER)
        .replace("@MANIFEST_MARKER@", MANIFEST_MARKER)
        .replace("@PACKAGE_LISTER@", PACKAGE_LISTER)
    )


# Runs inside the image with its own python3: stdlib only, plus `packaging` (or pip's vendored copy).
#
# Why it is shaped this way: on a 2-core runner the checks are CPU-bound (about 5 s of imports,
# 4 s of Jupyter server start-up, 2 s of `pip check` and 2 s of R, run one after another). So
# each piece of work is done once and both cores are kept busy. Rscript runs alongside
# everything. The dependency check applies pip check's rule in this process instead of starting
# pip. The import checks of packages built on jupyter-server run in this process, which then
# forks the server from the `jupyter-lab` entry point it has already imported, so those imports
# are paid once. Every other import check runs at the same time in a forked worker.
_SCRIPT = r'''
import importlib, importlib.metadata as md, json, os, re, secrets, shutil, signal, socket
import subprocess, sys, time, traceback, urllib.request

SPEC = json.loads(@SPEC@)
RESULTS = []
SERVER_DISTRIBUTION = "jupyter-server"
ONLY_FOR_AN_EXTRA = re.compile(r"""^\s*extra\s*==\s*['"][^'"]*['"]\s*$""")


def record(check, subject, ok, detail=""):
    RESULTS.append({"check": check, "subject": subject, "ok": bool(ok), "detail": str(detail)[:500]})


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions():
    # The first distribution of a name on sys.path wins, as it does for imports.
    found = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(norm(name), dist)
    return found


def check_versions(dists):
    for name, want in sorted(SPEC["versions"].items()):
        dist = dists.get(name)
        if dist is None:
            record("version", name, False, "not installed (lock: %s)" % want)
        elif dist.version != want:
            record("version", name, False, "installed %s, lock says %s" % (dist.version, want))
        else:
            record("version", name, True)


def requirement_class():
    # packaging itself first: pip's vendored copy may be one that parses ten times slower.
    for module in ("packaging.requirements", "pip._vendor.packaging.requirements"):
        try:
            return importlib.import_module(module).Requirement
        except ImportError:
            pass
    return None


def check_dependencies(dists):
    # pip check's rule: every requirement of every installed distribution whose marker holds
    # (without extras) is installed at a version its specifier allows, pre-releases included.
    # Returns the dependency graph (name -> the names it requires) for placing the imports.
    Requirement = requirement_class()
    if Requirement is None:
        record("pip check", "dependencies", False, "neither pip nor packaging is installed to read requirements")
        return {}
    graph = {}
    for name, dist in sorted(dists.items()):
        problems, graph[name] = [], []
        for text in dist.requires or ():
            if ONLY_FOR_AN_EXTRA.match(text.partition(";")[2]):
                continue  # most requirements are; parsing them all would cost a second
            try:
                req = Requirement(text)
                if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                    continue
                dep_name = norm(req.name)
                graph[name].append(dep_name)
                dep = dists.get(dep_name)
                if dep is None:
                    problems.append("%s %s requires %s, which is not installed" % (name, dist.version, req.name))
                elif not req.specifier.contains(dep.version, prereleases=True):
                    problems.append("%s %s has requirement %s, but you have %s %s" % (name, dist.version, req, req.name, dep.version))
            except Exception as exc:
                problems.append("%s %s: cannot check requirement %r: %s" % (name, dist.version, text, exc))
        record("pip check", name, not problems, "; ".join(problems))
    return graph


def dependents(graph, target):
    # target and every distribution that requires it, directly or not.
    required_by = {}
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


def check_imports(imports):
    for dist, module in imports:
        try:
            importlib.import_module(module)
            record("import", dist, True)
        except BaseException as exc:
            record("import", dist, False, "import %s: %s: %s" % (module, type(exc).__name__, exc))


def in_worker(work, subjects):
    # Run work() in a forked process; its results come back through a pipe. A worker that dies
    # (a crashing extension module) fails the checks it had, and only those.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        del RESULTS[:]
        try:
            work()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            with os.fdopen(write_end, "w") as pipe:
                json.dump(RESULTS, pipe)
            os._exit(0)
    os.close(write_end)

    def finish():
        with os.fdopen(read_end) as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        try:
            RESULTS.extend(json.loads(data))
        except ValueError:
            if os.WIFSIGNALED(status):
                how = "signal %d" % os.WTERMSIG(status)
            else:
                how = "exit %d" % os.WEXITSTATUS(status)
            for check, subject in subjects:
                record(check, subject, False, "the checking process died (%s)" % how)

    return finish


R_CODE = """
args <- commandArgs(trailingOnly = TRUE)
for (p in args) {
  v <- tryCatch({
    suppressPackageStartupMessages(library(p, character.only = TRUE))
    as.character(packageVersion(p))
  }, error = function(e) paste0("ERROR ", conditionMessage(e)))
  cat(p, "\\t", v, "\\n", sep = "")
}
"""


def rnorm(version):
    return version.replace("-", ".")


def start_r_check():
    packages = SPEC["r"]
    if not packages:
        return None
    if not shutil.which("Rscript"):
        for name, _ in packages:
            record("r", name, False, "Rscript is not installed")
        return None
    proc = subprocess.Popen(["Rscript", "-e", R_CODE] + [n for n, _ in packages],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish():
        stdout, stderr = proc.communicate()
        got = {}
        for line in stdout.splitlines():
            name, _, value = line.partition("\t")
            got[name] = value.strip()
        for name, want in packages:
            value = got.get(name)
            if value is None:
                record("r", name, False, "no answer from Rscript: %s" % stderr.strip()[-300:])
            elif value.startswith("ERROR"):
                record("r", name, False, "library(%s) failed: %s" % (name, value[6:]))
            elif rnorm(value) != rnorm(want):
                record("r", name, False, "installed %s, set says %s" % (value, want))
            else:
                record("r", name, True)

    return finish


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wants_jupyter():
    return SPEC["jupyter"] is True or (SPEC["jupyter"] is None and bool(shutil.which("jupyter")))


def start_server():
    # `jupyter lab` is the jupyter command handing over to the jupyter-lab console script; its
    # entry point is called here, in a fork, exactly as that script calls it.
    missing = [command for command in ("jupyter", "jupyter-lab") if not shutil.which(command)]
    if missing:
        record("jupyter", "jupyter", False, "not on PATH: %s" % ", ".join(missing))
        return None
    entry = [ep for ep in md.entry_points(group="console_scripts") if ep.name == "jupyter-lab"]
    if not entry:
        record("jupyter", "jupyter", False, "no jupyter-lab console script is installed")
        return None
    lab_main = entry[0].load()
    token, port = secrets.token_hex(16), free_port()
    log = open("/tmp/imagebot_server.log", "w+")
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.argv = ["jupyter-lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", "--port=%d" % port,
                    "--ServerApp.token=%s" % token, "--ServerApp.root_dir=/tmp"]
        try:
            sys.exit(lab_main())
        except SystemExit as exit:
            os._exit(exit.code if isinstance(exit.code, int) else 1)
        except BaseException:
            traceback.print_exc()
            os._exit(1)

    def get(path):
        url = "http://127.0.0.1:%d%s" % (port, path)
        request = urllib.request.Request(url, headers={"Authorization": "token " + token})
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()

    def finish():
        deadline = started + SPEC["server_timeout"]
        status = lab = None
        try:
            while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
                try:
                    status = json.loads(get("/api/status")[1])
                    lab = get("/lab")[0]
                    break
                except Exception:
                    time.sleep(0.1)
            answered = time.monotonic() - started
        finally:
            # Only the answers matter: no graceful shutdown to wait for.
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass
        if status is not None:
            record("server", "jupyter server", True, "/api/status answered in %.1fs" % answered)
            version = md.version("jupyterlab")
            ok = lab == 200
            record("jupyter", "jupyterlab", ok, "jupyter lab %s serves /lab" % version if ok else "/lab answered %s" % lab)
        else:
            log.seek(0)
            tail = " | ".join(log.read().strip().splitlines()[-6:])
            record("server", "jupyter server", False, "no answer from /api/status within %ds: %s" % (SPEC["server_timeout"], tail))

    return finish


def guarded(name, step, *args):
    try:
        return step(*args)
    except Exception as exc:
        record(name, "checks", False, "%s: %s" % (type(exc).__name__, exc))
        return None


def main():
    finishers = [("r", guarded("r", start_r_check))]
    dists = guarded("version", installed_distributions) or {}
    guarded("version", check_versions, dists)
    graph = guarded("pip check", check_dependencies, dists) or {}
    jupyter = wants_jupyter()
    built_on_server = dependents(graph, SERVER_DISTRIBUTION) if jupyter else set()
    imports = [tuple(i) for i in SPEC["imports"]]
    with_server = [i for i in imports if norm(i[0]) in built_on_server]
    alongside = [i for i in imports if norm(i[0]) not in built_on_server]
    # The worker is forked first, so that its imports run while this process imports the server.
    if alongside:
        subjects = [("import", dist) for dist, _ in alongside]
        finishers.append(("import", in_worker(lambda: check_imports(alongside), subjects)))
    if jupyter:
        finishers.append(("server", guarded("server", start_server)))
    check_imports(with_server)
    try:  # for the release's package diff; not a check
        packages = list_packages()
    except Exception:
        packages = None
    for name, finish in finishers:
        if finish is not None:
            guarded(name, finish)
    order = {"version": 0, "import": 1, "pip check": 2, "r": 3, "jupyter": 4, "server": 5}
    RESULTS.sort(key=lambda r: order.get(r["check"], 9))
    sys.stdout.flush()
    print("\n@MARKER@" + json.dumps(RESULTS), flush=True)
    if packages is not None:
        print("@MANIFEST_MARKER@" + json.dumps(packages), flush=True)


@PACKAGE_LISTER@

main()
'''
