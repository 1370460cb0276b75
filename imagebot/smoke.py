"""`imagebot test IMAGE`: run a built image and check that it is what the locks promise.

All in-container checks run in ONE `docker run` of `imagebot.incontainer.smoke_probe` (fast):
installed versions equal the layered locks, every pinned package imports, pip check's dependency
rule, every R package loads at its pinned version, and `jupyter lab` starts a server that
answers `/api/status` and serves `/lab`. The probe reads the spec built here as a JSON file (data,
never code), prints one JSON line of results, then the image's package list (the manifest); the
host turns them into a report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagebot.errors import ImageTestError, Problem
from imagebot.incontainer.smoke_probe import RESULT_MARKER, Spec
from imagebot.manifest import ImagePackages, parse_package_list
from imagebot.requirements import normalize

if TYPE_CHECKING:
    from imagebot.config import Config

SPEC_PATH = "/tmp/imagebot_smoke_spec.json"
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
    """What the image must contain; the in-container probe checks exactly this."""

    versions: Mapping[str, str] = field(default_factory=dict)  # normalised name -> version
    imports: tuple[tuple[str, str], ...] = ()  # (distribution, module)
    r_packages: tuple[tuple[str, str], ...] = ()  # (package, version)
    jupyter: bool | None = None  # None: check Jupyter only when the image has it
    server_timeout: float = SERVER_TIMEOUT

    def probe_spec(self) -> Spec:
        """The probe's input, as the JSON object it reads."""
        return {
            "versions": dict(self.versions),
            "imports": [list(i) for i in self.imports],
            "r": [list(r) for r in self.r_packages],
            "jupyter": self.jupyter,
            "server_timeout": self.server_timeout,
        }


def expectations(config: Config, image_name: str) -> SmokeSpec:
    """The spec for a configured image: its sets' entries and the pins of their layered locks."""
    from imagebot.index_pages import parse_compiled
    from imagebot.lockfile import lock_path, read_text_or_none
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
    manifest: ImagePackages | None = None  # the image's packages, listed by the same run

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
    """PURE: the checks from the probe's marker line, or None when it never got there."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARKER):
            raw = json.loads(line[len(RESULT_MARKER) :])
            return tuple(Check(r["check"], r["subject"], bool(r["ok"]), r["detail"]) for r in raw)
    return None


def smoke_test(
    config: Config, image: str, *, env: Mapping[str, str] | None = None, timeout: float = 600
) -> SmokeReport:
    """Run the checks in one container of image (a config name or a ref).

    The sets and locks are read and validated before the engine is touched: a set file that
    validation refuses never reaches a container.
    """
    from imagebot.engine import local_image, resolve_ref, run_container
    from imagebot.incontainer import ARCHIVE_PATH, probe_archive, probe_command

    start = time.monotonic()
    name, _ = resolve_ref(config, image)
    spec = expectations(config, name) if name else SmokeSpec()
    target = local_image(config, image, env)
    result = run_container(
        target.client,
        target.engine_ref,
        probe_command("smoke_probe", SPEC_PATH),
        timeout=timeout,
        environment={"MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"},
        files={ARCHIVE_PATH: probe_archive(), SPEC_PATH: probe_input(spec)},
    )
    checks = parse_results(result.output)
    if checks is None:
        checks = (_did_not_finish(result.exit_code, result.output),)
    manifest = parse_package_list(str(target.ref), result.output)
    return SmokeReport(str(target.ref), checks, time.monotonic() - start, manifest)


def probe_input(spec: SmokeSpec) -> bytes:
    """PURE: the spec file the probe reads: JSON data, so no value in it is ever run."""
    return json.dumps(spec.probe_spec()).encode()


def _did_not_finish(exit_code: int, output: str) -> Check:
    detail = f"the check script did not finish (exit {exit_code}): {_tail(output)}"
    return Check("run", "python3", False, detail)


def _tail(text: str, lines: int = 8) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])
