"""Registered environments: the pinned environments teams keep working, named in this repository.

A team registers a Python environment by committing `environments/<team>/<name>.txt`, an
environment file in the format `imagebot env check` reads (one `name==version` per line,
pip-compile output accepted), with one owner line:

    # owner: @kari.nordmann
    # The 2024 labour force survey's replay environment (env script).
    numpy==2.4.6
    pandas==3.1.1

and an R environment as `environments/<team>/<name>.renv.lock`: renv's own lock, as
`renv::snapshot()` writes it and `imagebot env check` reads it, with one top-level
`"Owner": "@kari.nordmann"` field (renv reads the fields it knows and ignores the others, so
`renv::restore()` still works; `renv::snapshot()` drops it, so add it again after one).

The owner is who must move when a pinned version can no longer be served: a GitHub handle
(`@user`) or team (`@org/team`). `imagebot check` validates every registered file (path, owner,
pins) and that every pin is vetted; `imagebot impact`, `review` and each promotion commit name
the owner of every registered environment that an upgrade changes or breaks, and the index
keeps serving every version a registered Python environment pins (its manifest names the
environment).

"Vetted" here, without a built index: a Python package is a set's entry, pinned in a set's lock,
or listed in `index-only.toml`. The exact version must be one of those, or one that the locks no
longer pin (an upgrade moved on): such a version is *kept*, served for the environment, and
reported as differing from the image, so an upgrade never has to wait for every team to move.
An R environment's packages must be served by the vetted R repository at exactly the pinned
version (`requirements/cran.lock`, which the repository is built from): a version that leaves
the lock breaks the environment, and impact names its owner.

Parsing is pure (`parse_environment`); `load_environments` reads the directory. Standard library
only at module level (`imagebot check` imports this).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imagebot import validate
from imagebot.errors import EnvFileError, ImagebotError, Problem

if TYPE_CHECKING:
    from datetime import date

    from imagebot.config import Config
    from imagebot.index_pages import Root
    from imagebot.osv import AdvisorySource
    from imagebot.requirements import RequirementSet
    from imagebot.waivers import Waiver

ENVIRONMENTS_DIR = "environments"
SUFFIX = ".txt"  # a Python environment (env check's requirements format)
RENV_SUFFIX = ".renv.lock"  # an R environment (renv's lock)
SUFFIXES = (RENV_SUFFIX, SUFFIX)
PYTHON, R = "python", "r"
OWNER_PREFIX = "# owner:"
# imagebot.cranlock.CRAN_LOCK_NAME: imagebot.cranlock (and imagebot.cran) are imported only
# when the file exists, so that `check` does not pay for them where no R is vetted.
CRAN_LOCK_NAME = "cran.lock"
RENV_OWNER = "Owner"  # renv.lock's top-level field (renv ignores fields it does not know)
# A GitHub user (@name) or team (@org/team): ASCII, one word.
_OWNER = re.compile(
    r"@[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:/[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?",
    re.ASCII,
)
_SIMPLE_PIN = re.compile(
    r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*==\s*([A-Za-z0-9.+!_-]+)", re.ASCII
)
_PART = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?", re.ASCII)
OWNER_HINT = "add a line `# owner: @github-handle` (or `@org/team`): who moves when a pin breaks"
RENV_OWNER_HINT = (
    f'add a top-level "{RENV_OWNER}": "@github-handle" (or "@org/team") to renv.lock: who moves '
    "when a pin breaks (renv ignores it; add it again after renv::snapshot())"
)


@dataclass(frozen=True, order=True)
class EnvironmentPin:
    name: str  # PEP 503 normalised (Python); exact (R names are case-sensitive)
    version: str
    line: int


@dataclass(frozen=True)
class RegisteredEnvironment:
    path: str  # relative to the repository root, POSIX: environments/<team>/<name>.txt
    team: str
    name: str
    owner: str
    pins: tuple[EnvironmentPin, ...]
    ecosystem: str = PYTHON  # "r" for environments/<team>/<name>.renv.lock

    @property
    def label(self) -> str:
        return f"{self.team}/{self.name}"

    def pinned(self, package: str) -> EnvironmentPin | None:
        return next((pin for pin in self.pins if pin.name == package), None)


@dataclass(frozen=True)
class Vetted:
    """What `check` counts as vetted without a built index."""

    locked: Mapping[str, frozenset[str]]  # package -> versions a set's entry or lock pins
    index_only: Mapping[str, frozenset[str]]  # package -> versions listed in index-only.toml
    # R package -> versions the vetted R repository serves (requirements/cran.lock)
    r: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def names(self) -> frozenset[str]:
        return frozenset(self.locked) | frozenset(self.index_only)

    def versions(self, name: str) -> frozenset[str]:
        return self.locked.get(name, frozenset()) | self.index_only.get(name, frozenset())


def relative_parts(path: str) -> tuple[str, str] | Problem:
    """(team, name) of `environments/<team>/<name>.txt` or `.renv.lock`; a Problem for any
    other shape."""
    parts = path.split("/")
    hint = (
        f"register it as {ENVIRONMENTS_DIR}/<team>/<name>{SUFFIX} (Python) or "
        f"<name>{RENV_SUFFIX} (R): lower-case letters, digits, . _ -"
    )
    suffix = next((s for s in SUFFIXES if parts[-1].endswith(s)), "")
    if (
        len(parts) != 3
        or parts[0] != ENVIRONMENTS_DIR
        or not suffix
        or not _PART.fullmatch(parts[1])
        or not _PART.fullmatch(parts[2][: -len(suffix)])
    ):
        return Problem(_shown(path), 0, "not a registered environment's path", hint)
    return parts[1], parts[2][: -len(suffix)]


def ecosystem_of(path: str) -> str:
    return R if path.endswith(RENV_SUFFIX) else PYTHON


def _normalize(name: str) -> str:
    from imagebot.requirements import normalize

    return normalize(name)


def _shown(path: str) -> str:
    """A path for a message: printable, or its repr (a name with a newline stays one line)."""
    return path if path.isprintable() else repr(path)[1:-1]


def owner_of(path: str, text: str) -> str | Problem:
    """The one `# owner:` line's value, validated."""
    found: list[tuple[int, str]] = [
        (number, line[len(OWNER_PREFIX) :].strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.startswith(OWNER_PREFIX)
    ]
    if not found:
        return Problem(path, 0, "no owner line", OWNER_HINT)
    if len(found) > 1:
        return Problem(
            path,
            found[1][0],
            f"a second owner line (first at line {found[0][0]})",
            "keep one `# owner:` line; name a team for several people",
        )
    number, value = found[0]
    return _valid_owner(path, number, value, OWNER_HINT)


def _simple_pins(text: str) -> list[EnvironmentPin] | None:
    """The pins of a file of plain `name==version` lines and `#` comments; None for anything
    else (which `imagebot.envfile` parses). `check` reads registered files on its fast path,
    and the full parser costs more than the rest of `check` together."""
    pins: list[EnvironmentPin] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        match = _SIMPLE_PIN.fullmatch(line)
        if match is None:
            return None
        pins.append(EnvironmentPin(_normalize(match.group(1)), match.group(2), number))
    return pins


def _valid_owner(path: str, line: int, value: object, hint: str) -> str | Problem:
    if not isinstance(value, str) or not _OWNER.fullmatch(value):
        text = repr(value)
        shown = text if len(text) <= 62 else text[:60] + "..."
        return Problem(path, line, f"owner {shown} is not a GitHub handle or team", hint)
    return value


def renv_owner_of(path: str, text: str) -> str | Problem:
    """renv.lock's one top-level "Owner" field, validated. A file that is not a JSON object
    lends no owner problem: `parse_renv_lock` reports it."""
    import json

    from imagebot.envfile import _json_key_line

    top: list[list[tuple[str, object]]] = []

    def pairs(found: list[tuple[str, object]]) -> dict[str, object]:
        top[:] = [found]  # the outermost object is decoded last
        return dict(found)

    try:
        raw = json.loads(text, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(raw, dict):
        return ""
    owners = [value for key, value in (top[0] if top else ()) if key == RENV_OWNER]
    line = _json_key_line(text, RENV_OWNER)
    if not owners:
        return Problem(path, 0, f'no "{RENV_OWNER}" field', RENV_OWNER_HINT)
    if len(owners) > 1:
        return Problem(
            path,
            line,
            f'a second "{RENV_OWNER}" field',
            "keep one; name a team for several people",
        )
    return _valid_owner(path, line, owners[0], RENV_OWNER_HINT)


def parse_renv_environment(
    path: str, text: str
) -> tuple[RegisteredEnvironment | None, list[Problem]]:
    """A registered R environment: renv.lock parsed by `imagebot env check`'s own parser
    (packages that come with R are not pins), and its owner."""
    from imagebot.envfile import parse_renv_lock

    parts = relative_parts(path)
    if isinstance(parts, Problem):
        return None, [parts]
    lock, problems = parse_renv_lock(path, text)
    owner = renv_owner_of(path, text)
    if isinstance(owner, Problem):
        problems.insert(0, owner)
    if not lock.packages and not problems:
        problems.append(Problem(path, 0, "no packages", "write renv.lock with renv::snapshot()"))
    if problems or isinstance(owner, Problem):
        return None, problems
    pins = tuple(EnvironmentPin(p.name, p.version, p.line) for p in lock.packages)
    team, name = parts
    return RegisteredEnvironment(path, team, name, owner, pins, R), []


def parse_environment(
    path: str, text: str, python: str, platform: str
) -> tuple[RegisteredEnvironment | None, list[Problem]]:
    """One registered environment from its path (relative, POSIX) and text; every problem."""
    if ecosystem_of(path) == R:
        return parse_renv_environment(path, text)
    parts = relative_parts(path)
    if isinstance(parts, Problem):
        return None, [parts]
    owner = owner_of(path, text)
    simple = _simple_pins(text)
    problems: list[Problem] = []
    if simple is None:  # extras, markers, hashes, continuations: envfile's whole parser
        from imagebot.envfile import parse_env_file
        from imagebot.index_pages import Target

        requirements, problems = parse_env_file(path, text, Target(python, platform))
        simple = [EnvironmentPin(r.name, r.version, r.line) for r in requirements]
    if isinstance(owner, Problem):
        problems.insert(0, owner)
    if not simple and not problems:
        problems.append(Problem(path, 0, "no pinned packages", "add name==version lines"))
    pins: list[EnvironmentPin] = []
    seen: dict[str, int] = {}
    for pin in simple:
        try:
            validate.python_version(pin.version)
        except validate.InvalidValue as exc:
            problems.append(Problem(path, pin.line, exc.message, exc.hint))
            continue
        if pin.name in seen:
            problems.append(
                Problem(
                    path,
                    pin.line,
                    f"{pin.name} is listed twice (first at line {seen[pin.name]})",
                    "keep one line per package",
                )
            )
            continue
        seen[pin.name] = pin.line
        pins.append(pin)
    if problems or isinstance(owner, Problem):
        return None, problems
    team, name = parts
    return RegisteredEnvironment(path, team, name, owner, tuple(pins)), []


def vetting_problems(environment: RegisteredEnvironment, vetted: Vetted) -> list[Problem]:
    """A pin of a package that no lock pins and index-only.toml does not list; for an R
    environment, a pin the vetted R repository does not serve at that version."""
    if environment.ecosystem == R:
        return r_vetting_problems(environment, vetted)
    return [
        Problem(
            environment.path,
            pin.line,
            f"{pin.name}=={pin.version} is not vetted: no set or lock pins {pin.name} and "
            "index-only.toml does not list it",
            "ask for it in requirements/ first (a set or index-only.toml), then register it",
        )
        for pin in environment.pins
        if pin.name not in vetted.names()
    ]


R_ASK_HINT = (
    'vet it in requirements/index-only.toml [r] (or a set with r_source = "cran"), run '
    "`imagebot lock`, then register the environment"
)


def r_vetting_problems(environment: RegisteredEnvironment, vetted: Vetted) -> list[Problem]:
    """Every pin of an R environment that requirements/cran.lock does not serve exactly: R
    environments replay from the vetted R repository, which serves what that lock holds."""
    from imagebot.cran import same_r_version
    from imagebot.cran import sort_key as r_sort_key

    problems: list[Problem] = []
    for pin in environment.pins:
        served = vetted.r.get(pin.name, frozenset())
        if not served:
            message = f"R package {pin.name} {pin.version} is not vetted: requirements/cran.lock"
            problems.append(Problem(environment.path, pin.line, f"{message} lacks it", R_ASK_HINT))
        elif not any(same_r_version(pin.version, v) for v in served):
            listed = ", ".join(sorted(served, key=r_sort_key))
            problems.append(
                Problem(
                    environment.path,
                    pin.line,
                    f"R package {pin.name} {pin.version} is not served: the vetted R repository "
                    f"serves {listed}",
                    f'renv::install("{pin.name}@VERSION") a served version and snapshot, or '
                    f"vet {pin.version} in index-only.toml [r]",
                )
            )
    return problems


def kept_versions(environment: RegisteredEnvironment, vetted: Vetted) -> list[EnvironmentPin]:
    """Pins of vetted packages at a version that no lock or index-only entry pins (any more).
    None for an R environment: its pins must be served exactly (`r_vetting_problems`)."""
    if environment.ecosystem == R:
        return []
    return [
        pin
        for pin in environment.pins
        if pin.name in vetted.names() and pin.version not in vetted.versions(pin.name)
    ]


def environment_files(root: Path) -> tuple[list[str], list[Problem]]:
    """Every `environments/**` file (relative POSIX paths, sorted), and problems with the tree:
    a symlink (its target could be any file) or a file outside `<team>/<name>.txt` or
    `<team>/<name>.renv.lock`."""
    base = root / ENVIRONMENTS_DIR
    if base.is_symlink():
        return [], [Problem(ENVIRONMENTS_DIR, 0, "is a symbolic link", "make it a directory")]
    if not base.is_dir():
        return [], []
    found: list[str] = []
    problems: list[Problem] = []
    for path in sorted(base.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            problems.append(
                Problem(_shown(relative), 0, "is a symbolic link", "commit the file itself")
            )
        elif path.is_file():
            if path.parent == base and not path.name.endswith(SUFFIXES):
                continue  # a README beside the team directories
            found.append(relative)
    return found, problems


def load_environments(
    root: Path, python: str, platform: str
) -> tuple[list[RegisteredEnvironment], list[Problem]]:
    """Every registered environment under `root/environments`, and every problem found."""
    from imagebot.files import Unreadable, read_text

    paths, problems = environment_files(root)
    environments: list[RegisteredEnvironment] = []
    for relative in paths:
        parts = relative_parts(relative)
        if isinstance(parts, Problem):
            problems.append(parts)
            continue
        try:
            text = read_text(root / relative)
        except Unreadable as exc:
            problems.append(Problem(relative, 0, exc.reason, "save it as UTF-8 text"))
            continue
        environment, found = parse_environment(relative, text, python, platform)
        problems.extend(found)
        if environment is not None:
            environments.append(environment)
    return environments, problems


def vetted_from(
    lock_pins: Iterable[tuple[str, str]],
    index_only: Iterable[tuple[str, str]],
    r_served: Iterable[tuple[str, str]] = (),
) -> Vetted:
    def grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, frozenset[str]]:
        result: dict[str, set[str]] = {}
        for name, version in pairs:
            result.setdefault(name, set()).add(version)
        return {name: frozenset(versions) for name, versions in result.items()}

    return Vetted(grouped(lock_pins), grouped(index_only), grouped(r_served))


def check_environments(
    environments: Sequence[RegisteredEnvironment], problems: Sequence[Problem], vetted: Vetted
) -> None:
    """Raise EnvFileError (exit 14) listing every problem of every registered environment."""
    found = list(problems)
    for environment in environments:
        found.extend(vetting_problems(environment, vetted))
    if found:
        raise EnvFileError(
            sorted(found, key=lambda p: (p.file, p.line)),
            f"{ENVIRONMENTS_DIR}/",
            "fix the registered environments above, then run imagebot check again",
        )


def target_of(config: Config) -> tuple[str, str]:
    """The Python and platform pods run: the rendered (JupyterLab) image's."""
    images = config.rendered_images or config.locked_images
    if not images:
        return "3.11", "x86_64-manylinux_2_36"
    return images[0].python, images[0].platform


def vetted_in(
    config: Config,
    *,
    sets: Mapping[str, RequirementSet] | None = None,
    index_only: RequirementSet | None = None,
) -> Vetted:
    """Every entry and lock pin of every configured set, index-only.toml's Python entries, and
    what requirements/cran.lock serves. A file that cannot be read or parsed lends nothing:
    `check` and `lock --check` report it on their own.

    A caller that has loaded and validated the set files already (`check`) passes them as
    `sets`, and with them `index_only` (None: there is no index-only.toml); without `sets`,
    both are read here."""
    from imagebot.lockfile import lock_path, pins
    from imagebot.requirements import INDEX_ONLY, set_path

    loaded = sets or {}
    in_sets: list[tuple[str, str]] = []
    names = dict.fromkeys(n for image in config.locked_images for n in image.sets)
    for name in names:
        if name in loaded:
            in_sets.extend((entry.key, entry.version) for entry in loaded[name].python)
        else:
            in_sets.extend(_python_entries(set_path(config.requirements_dir, name)))
        text = _text_or_none(lock_path(config.requirements_dir, name))
        in_sets.extend((pin.name, pin.version) for pin in pins(text or ""))
    if sets is None:
        listed = _python_entries(set_path(config.requirements_dir, INDEX_ONLY))
    else:
        listed = [(entry.key, entry.version) for entry in index_only.python] if index_only else []
    return vetted_from(in_sets, listed, r_served(config.requirements_dir))


def r_served(requirements_dir: Path) -> list[tuple[str, str]]:
    """(name, version) of every package requirements/cran.lock holds: what the vetted R
    repository serves. Empty when there is no R lock or it does not parse."""
    path = requirements_dir / CRAN_LOCK_NAME
    text = _text_or_none(path)
    if text is None:
        return []
    from imagebot.cranlock import parse_cran_lock

    try:
        lock = parse_cran_lock(text, path.name)
    except ImagebotError:
        return []
    return [(p.name, p.version) for p in lock.packages]


def _text_or_none(path: Path) -> str | None:
    from imagebot.files import Unreadable, read_text

    try:
        return read_text(path)
    except Unreadable:
        return None


def _python_entries(path: Path) -> list[tuple[str, str]]:
    from imagebot.requirements import parse_set

    text = _text_or_none(path)
    parsed = parse_set(path, text)[0] if text is not None else None
    return [(entry.key, entry.version) for entry in parsed.python] if parsed else []


def registered(config: Config) -> list[RegisteredEnvironment]:
    """Every registered environment of the repository, checked: raises EnvFileError (exit 14)
    listing every problem (path, owner, pins, vetting) of every file."""
    environments, problems = load_environments(config.root, *target_of(config))
    if environments or problems:
        check_environments(environments, problems, vetted_in(config))
    return environments


def source_of(environment: RegisteredEnvironment) -> str:
    """What the index manifest names as the reason a registered environment's pin is served."""
    return f"environment {environment.label}"


def index_roots(
    environments: Sequence[RegisteredEnvironment],
    served: Iterable[tuple[str, str]],
    blocked: Iterable[tuple[str, str]] = (),
) -> list[Root]:
    """The roots the index adds so that it keeps serving every version a registered
    environment pins: one per pin that `served` (the sets' and index-only roots, as
    (normalised name, version)) does not already serve, with the environment as the reason and
    its owner as the requester. A pin in `blocked` (an unwaived advisory) gets no root: the
    impact report names the owner who must move."""
    from imagebot.index_pages import Root

    have = set(served)
    refused = set(blocked)
    roots: list[Root] = []
    for environment in environments:
        if environment.ecosystem != PYTHON:
            continue  # an R environment's pins must be vetted exactly (r_vetting_problems)
        for pin in environment.pins:
            ident = (pin.name, pin.version)
            if ident in have or ident in refused:
                continue
            have.add(ident)
            roots.append(
                Root(
                    name=pin.name,
                    version=pin.version,
                    source=source_of(environment),
                    reason=f"pinned by the registered environment {environment.path}",
                    requested_by=environment.owner,
                )
            )
    return roots


def blocked_pins(
    roots: Sequence[Root], source: AdvisorySource, waivers: Sequence[Waiver], today: date
) -> dict[tuple[str, str], tuple[str, ...]]:
    """The registered pins (`index_roots` without `blocked`) that an advisory not waived
    affects: {(name, version): advisory ids}. The index serves none of them; the impact report
    names their owners as the ones who must move. `imagebot audit`'s operation decides."""
    from imagebot.advisories import PYPI, Package
    from imagebot.audit import audit

    if not roots:
        return {}
    packages = [Package(PYPI, root.key, root.version, (root.source,)) for root in roots]
    found: dict[tuple[str, str], list[str]] = {}
    for finding in audit(packages, source, waivers, today).findings:
        ident = (finding.package.name, finding.package.version)
        found.setdefault(ident, []).append(finding.advisory.id)
    return {ident: tuple(ids) for ident, ids in found.items()}


@dataclass(frozen=True)
class KeptServing:
    """What `imagebot index build` adds for the registered environments."""

    roots: tuple[Root, ...]  # served for an environment, which the manifest names as reason
    blocked: tuple[tuple[RegisteredEnvironment, EnvironmentPin, tuple[str, ...]], ...]

    def lines(self) -> list[str]:
        """One line per blocked pin: the owner who must move, and why."""
        return [
            f"{environment.path}:{pin.line}: {pin.name}=={pin.version} is not served: "
            f"{', '.join(ids)} (not waived); {environment.owner} must move"
            for environment, pin, ids in self.blocked
        ]


def keep_serving(config: Config, roots: Sequence[Root], today: date | None = None) -> KeptServing:
    """Roots for every registered pin the sets and index-only.toml do not serve, less those an
    unwaived advisory affects ([advisories] source, requirements/waivers.toml)."""
    from datetime import UTC, datetime

    from imagebot.osv import source_for
    from imagebot.waivers import load_waivers

    environments = registered(config)
    served = {(root.key, root.version) for root in roots}
    candidates = index_roots(environments, served)
    if not candidates:
        return KeptServing((), ())
    blocked = blocked_pins(
        candidates,
        source_for(config.advisories.source, config.root),
        load_waivers(config.requirements_dir),
        today or datetime.now(UTC).date(),
    )
    refused = tuple(
        (environment, pin, blocked[(pin.name, pin.version)])
        for environment in environments
        if environment.ecosystem == PYTHON
        for pin in environment.pins
        if (pin.name, pin.version) in blocked
    )
    return KeptServing(tuple(index_roots(environments, served, blocked)), refused)
