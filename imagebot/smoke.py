"""`imagebot test IMAGE`: run a built image and check that it is what the locks promise.

All in-container checks run in ONE `docker run` of a generated Python script (fast): installed
versions equal the layered locks, every pinned package imports, `pip check`, every R package
loads at its pinned version, `jupyter lab --version`, and a Jupyter server that starts and
answers `/api/status`. The script prints one JSON line; the host turns it into a report.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagebot.errors import ImageTestError, Problem
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

_LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;\\]+)")


def parse_lock(text: str) -> dict[str, str]:
    """PURE: `name==version` pins of a lock file (hashes, comments, markers ignored)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        if match := _LOCK_LINE.match(line.strip()):
            pins[normalize(match.group(1))] = match.group(2)
    return pins


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
    from imagebot.requirements import load_sets

    image = config.image(image_name)
    if not image.sets:
        return SmokeSpec(jupyter=False)
    sets = load_sets(config.requirements_dir, image.sets)
    versions: dict[str, str] = {}
    for set_name in image.sets:  # later sets are installed later: their pins win
        lock = config.requirements_dir / f"{set_name}.lock"
        if lock.is_file():
            versions.update(parse_lock(lock.read_text(encoding="utf-8")))
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
    return SmokeReport(str(target.ref), checks, time.monotonic() - start)


def _tail(text: str, lines: int = 8) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def render_script(spec: SmokeSpec) -> str:
    """PURE: the in-container check script with the spec embedded."""
    return _SCRIPT.replace("@SPEC@", repr(spec.to_json())).replace("@MARKER@", RESULT_MARKER)


# Runs inside the image with its own python3: stdlib only.
_SCRIPT = r'''
import importlib, importlib.metadata as md, importlib.util, json, os, re, secrets, shutil, socket
import subprocess, sys, time, urllib.request

SPEC = json.loads(@SPEC@)
RESULTS = []


def record(check, subject, ok, detail=""):
    RESULTS.append({"check": check, "subject": subject, "ok": bool(ok), "detail": str(detail)[:500]})


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def check_versions():
    installed = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            installed.setdefault(norm(name), dist.version)
    for name, want in sorted(SPEC["versions"].items()):
        got = installed.get(name)
        if got is None:
            record("version", name, False, "not installed (lock: %s)" % want)
        elif got != want:
            record("version", name, False, "installed %s, lock says %s" % (got, want))
        else:
            record("version", name, True)
    return installed


def check_imports():
    for dist, module in SPEC["imports"]:
        try:
            importlib.import_module(module)
            record("import", dist, True)
        except BaseException as exc:
            record("import", dist, False, "import %s: %s: %s" % (module, type(exc).__name__, exc))


def start_pip_check():
    if importlib.util.find_spec("pip") is not None:
        run = [sys.executable, "-m", "pip", "check"]
    elif shutil.which("uv"):
        run = ["uv", "pip", "check", "--python", sys.executable]
    else:
        record("pip check", "pip", False, "neither pip nor uv is installed to check dependencies")
        return None
    proc = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish():
        text = proc.communicate()[0].strip()
        ok = proc.returncode == 0
        record("pip check", "dependencies", ok, text.splitlines()[-1] if text and ok else text)

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


def start_jupyter_checks():
    if SPEC["jupyter"] is False or (SPEC["jupyter"] is None and not shutil.which("jupyter")):
        return None
    if not shutil.which("jupyter"):
        record("jupyter", "jupyter", False, "the jupyter command is not installed")
        return None
    version = subprocess.Popen(["jupyter", "lab", "--version"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    token, port = secrets.token_hex(16), free_port()
    log = open("/tmp/imagebot_server.log", "w+")
    started = time.monotonic()
    server = subprocess.Popen(
        ["jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", "--port=%d" % port,
         "--ServerApp.token=%s" % token, "--ServerApp.root_dir=/tmp"],
        stdout=log, stderr=subprocess.STDOUT,
    )

    def finish():
        out, err = version.communicate()
        ok = version.returncode == 0
        record("jupyter", "jupyterlab", ok, "jupyter lab %s" % out.strip() if ok else err.strip()[-300:])
        deadline = started + SPEC["server_timeout"]
        answer = None
        try:
            while time.monotonic() < deadline and server.poll() is None:
                request = urllib.request.Request("http://127.0.0.1:%d/api/status" % port, headers={"Authorization": "token " + token})
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        answer = json.loads(response.read())
                        break
                except Exception:
                    time.sleep(0.3)
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        if answer is not None:
            record("server", "jupyter server", True, "/api/status answered in %.1fs" % (time.monotonic() - started))
        else:
            log.seek(0)
            tail = " | ".join(log.read().strip().splitlines()[-6:])
            record("server", "jupyter server", False, "no answer from /api/status within %ds: %s" % (SPEC["server_timeout"], tail))

    return finish


def guarded(name, step):
    try:
        return step()
    except Exception as exc:
        record(name, "checks", False, "%s: %s" % (type(exc).__name__, exc))
        return None


def main():
    # The subprocess checks (pip check, R, Jupyter) start first and run while this process
    # imports every package: the smoke test takes about as long as its slowest part.
    finishers = [(n, guarded(n, s)) for n, s in
                 (("pip check", start_pip_check), ("r", start_r_check), ("jupyter", start_jupyter_checks))]
    guarded("version", check_versions)
    guarded("import", check_imports)
    for name, finish in finishers:
        if finish is not None:
            guarded(name, finish)
    order = {"version": 0, "import": 1, "pip check": 2, "r": 3, "jupyter": 4, "server": 5}
    RESULTS.sort(key=lambda r: order.get(r["check"], 9))
    sys.stdout.flush()
    print("\n@MARKER@" + json.dumps(RESULTS), flush=True)


main()
'''
