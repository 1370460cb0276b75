"""A user's environment file: check it against the vetted index, and turn it into a script.

An environment file is a requirements-style file a user keeps with their project:

    # my project
    pandas==2.1.4
    python-dateutil==2.9.0.post0    # comments are fine
    nbconvert[webpdf]==7.16.4

Every requirement must be pinned with `==` to a version that the index serves. The index
manifest (imagebot-index.json) is the truth for "vetted": it holds every set package, every
index-only package and their dependencies, which is exactly what pip in a pod can install.
pip-compile output (with `--hash` options and `# via` comments) is accepted as is.

`render_script` writes a bash script with the whole resolved environment embedded as a lock
(every package pinned with its sha256), installed with `pip --require-hashes --no-deps`, so a
new pod gets exactly the same packages without resolving anything.

R users keep `renv.lock` (renv's JSON lock: the R version and every package with its Version
and Source). `check_renv_lock` checks each package and version against the manifest's R
part (OUT/cran), and that every dependency is in the lock; `renv_script` writes a bash script
that downloads each tarball from the vetted repository in dependency order, checks its MD5
(the upstream's, which the index build verified) and installs it into the user's library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagebot import validate
from imagebot.errors import EnvFileError, PackageIndexError, Problem, UsageError
from imagebot.index_pages import (
    SIMPLE_DIR,
    IndexManifest,
    Target,
    parse_platform,
    same_version,
)
from imagebot.lockfile import pins
from imagebot.requirements import normalize

SCRIPT_LOCK_MARKER = "IMAGEBOT_LOCK"
_HASH_OPTION = re.compile(r"\s--hash[=\s]+(\S+)")
_COMMENT = re.compile(r"(^|\s)#.*$")
_URL_LIKE = re.compile(r"^(git\+|hg\+|svn\+|bzr\+|https?://|file:|\.{0,2}/)")
_REQUEST_HINT_FALLBACK = "ask the platform team to vet it"


@dataclass(frozen=True)
class EnvRequirement:
    line: int
    text: str  # the requirement without options or comment, e.g. "pandas==2.1.4"
    name: str  # normalised
    version: str
    extras: tuple[str, ...]
    marker: str | None
    hashes: tuple[str, ...]  # "sha256:..." from --hash options
    written_name: str = ""  # the name as the file spells it, for messages

    @property
    def pin(self) -> str:
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        marker = f" ; {self.marker}" if self.marker else ""
        return f"{self.name}{extras}=={self.version}{marker}"


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with backslash continuations joined and comments removed."""
    result: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            result.append((start, joined))
    if pending.strip():
        result.append((start, pending.strip()))
    return result


def target_environment(target: Target) -> dict[str, str]:
    """PEP 508 marker values for the pod's interpreter."""
    arch, _, _ = parse_platform(target.platform)
    return {
        "python_version": target.python,
        "python_full_version": f"{target.python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": arch,
    }


def parse_env_file(
    file: str, text: str, target: Target
) -> tuple[list[EnvRequirement], list[Problem]]:
    """Parse every line; report every malformed, unpinned or duplicated one."""
    requirements: list[EnvRequirement] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    environment = target_environment(target)
    for number, line in logical_lines(text):
        parsed = _parse_line(file, number, line, environment)
        if parsed is None:
            continue  # not for the pod's platform: pip would skip it too
        if isinstance(parsed, Problem):
            problems.append(parsed)
        elif parsed.name in first_line:
            problems.append(
                Problem(
                    file,
                    number,
                    f"{parsed.written_name} is listed twice "
                    f"(first at line {first_line[parsed.name]})",
                    "keep one line per package",
                )
            )
        else:
            first_line[parsed.name] = number
            requirements.append(parsed)
    return requirements, problems


def _parse_line(
    file: str, number: int, line: str, environment: Mapping[str, str]
) -> EnvRequirement | Problem | None:
    """One logical line: its requirement, the problem with it, or None when its marker is
    false for the pod."""
    from packaging.requirements import InvalidRequirement, Requirement

    hashes = tuple(_HASH_OPTION.findall(" " + line))
    spec = _HASH_OPTION.sub("", " " + line).strip()
    if spec.startswith("-"):
        return Problem(
            file,
            number,
            f"option {spec.split()[0]!r} is not allowed in an environment file",
            "list packages as name==version only; the install script sets the index",
        )
    if _URL_LIKE.match(spec) or " @ " in spec:
        return Problem(
            file,
            number,
            f"{spec!r} installs from a URL or path, not from the vetted index",
            "use a vetted name==version; ask for the package to be vetted if it is missing",
        )
    try:
        parsed = Requirement(spec)
    except InvalidRequirement as exc:
        return Problem(file, number, f"not a requirement: {spec!r} ({exc})", "write name==version")
    if parsed.marker is not None and not parsed.marker.evaluate(dict(environment)):
        return None
    specifiers = list(parsed.specifier)
    version = specifiers[0].version if len(specifiers) == 1 else ""
    if len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in version:
        return Problem(
            file,
            number,
            f"{parsed.name} is not pinned to one version ({spec!r})",
            f"pin it exactly: {parsed.name}==VERSION",
        )
    return EnvRequirement(
        line=number,
        text=spec,
        name=normalize(parsed.name),
        version=version,
        extras=tuple(sorted(parsed.extras)),
        marker=str(parsed.marker) if parsed.marker is not None else None,
        hashes=hashes,
        written_name=parsed.name,
    )


def vetting_problems(
    file: str,
    requirements: Sequence[EnvRequirement],
    manifest: IndexManifest,
    request_url: str = "",
) -> list[Problem]:
    """One problem per requirement whose name, version or hash the index does not serve."""
    ask = f"ask for it at {request_url}" if request_url else _REQUEST_HINT_FALLBACK
    problems: list[Problem] = []
    for req in requirements:
        vetted = manifest.versions(req.name)
        if not vetted:
            problems.append(
                Problem(file, req.line, f"{req.name} is not a vetted package", f"{ask}")
            )
            continue
        match = next((p for v, p in vetted.items() if same_version(v, req.version)), None)
        if match is None:
            versions = ", ".join(sorted(vetted))
            problems.append(
                Problem(
                    file,
                    req.line,
                    f"{req.name}=={req.version} is not vetted",
                    f"vetted versions: {versions}; pin one of them, or {ask}",
                )
            )
            continue
        expected = f"sha256:{match.file.sha256}"
        if req.hashes and expected not in req.hashes:
            problems.append(
                Problem(
                    file,
                    req.line,
                    f"{req.name}=={req.version}: no --hash matches the vetted file "
                    f"{match.file.filename}",
                    f"use --hash={expected}, or drop the --hash options",
                )
            )
    return problems


def check_env_file(
    file: str, text: str, manifest: IndexManifest, request_url: str = ""
) -> list[EnvRequirement]:
    """Parse and vet an environment file; raise EnvFileError listing every problem."""
    requirements, problems = parse_env_file(file, text, manifest.target)
    problems += vetting_problems(file, requirements, manifest, request_url)
    if not requirements and not problems:
        problems.append(Problem(file, 0, "no requirements in the file", "add name==version lines"))
    if problems:
        problems.sort(key=lambda p: p.line)
        raise EnvFileError(problems, file, "fix the lines above, then run imagebot env check again")
    return requirements


def lock_problems(file: str, lock_text: str, manifest: IndexManifest) -> list[Problem]:
    """The resolved lock may only hold what the manifest vets, with the manifest's hashes."""
    problems: list[Problem] = []
    for pin in pins(lock_text):
        vetted = manifest.versions(pin.name)
        if not any(same_version(v, pin.version) for v in vetted):
            problems.append(
                Problem(
                    file,
                    0,
                    f"the resolved environment needs {pin}, which the manifest does not vet",
                    "the index and its manifest disagree: rebuild the index",
                )
            )
    return problems


def render_script(
    env_file: str,
    lock_text: str,
    index_url: str,
    request_url: str = "",
    summary: Mapping[str, str] | None = None,
) -> str:
    """A self-contained bash script that installs the locked environment into $PYTHON."""
    lock = lock_text.strip("\n")
    if SCRIPT_LOCK_MARKER in lock:
        raise ValueError("lock text contains the heredoc marker")  # cannot come from uv
    env_file = _comment_text(env_file, "the environment file's name")
    ask = _ask_comment(request_url)
    described = _summary_comment(summary)
    return (
        "#!/usr/bin/env bash\n"
        f"# Generated by `imagebot env script {env_file}`. Do not edit: change {env_file}\n"
        "# and run that command again.\n"
        "#\n"
        "# Reinstalls this project's environment in a fresh pod, exactly: every package is\n"
        "# pinned with its sha256 and installed from the vetted index without resolving.\n"
        "#   bash this-script                       # into python3's environment\n"
        "#   PYTHON=.venv/bin/python bash this-script   # into a virtual environment\n"
        "#   bash this-script --user                # extra arguments go to pip install\n"
        f"{described}"
        f"{ask}"
        "set -euo pipefail\n"
        f'index_url="${{IMAGEBOT_INDEX_URL:-{_bash_default(index_url)}}}"\n'
        'python="${PYTHON:-python3}"\n'
        'lock="$(mktemp)"\n'
        "trap 'rm -f \"$lock\"' EXIT\n"
        f"cat >\"$lock\" <<'{SCRIPT_LOCK_MARKER}'\n"
        f"{lock}\n"
        f"{SCRIPT_LOCK_MARKER}\n"
        '"$python" -m pip install --disable-pip-version-check --no-input \\\n'
        '    --index-url "$index_url" --only-binary :all: --no-deps --require-hashes \\\n'
        '    "$@" -r "$lock"\n'
        '"$python" -m pip check --disable-pip-version-check\n'
    )


def _comment_text(value: str, what: str) -> str:
    """A value for a `#` comment line of the script: one line, or a line of its own could
    follow and run."""
    try:
        return validate.one_line(value)
    except validate.InvalidValue as exc:
        raise UsageError(f"{what}: {exc.message}", exc.hint) from None


def _ask_comment(request_url: str) -> str:
    """The script's comment line naming where to ask for a package ("" without request_url)."""
    if not request_url:
        return ""
    return f"# Not vetted yet? Ask at {_comment_text(request_url, 'request_url')}\n"


def _summary_comment(summary: Mapping[str, str] | None) -> str:
    """The script's comment lines listing the summary, one `key: value` a line."""
    return "".join(
        f"#   {_comment_text(k, 'a summary key')}: {_comment_text(v, k)}\n"
        for k, v in (summary or {}).items()
    )


def _bash_default(value: str) -> str:
    """A value safe inside "${VAR:-...}": no quotes, $, backslashes, braces or spaces."""
    if re.search(r"[\"'`$\\{}\s]", value):
        raise UsageError(
            f"index url {value!r} contains shell metacharacters",
            "use a plain URL (--index-url or [index] url in imagebot.toml)",
        )
    return value


def uv_index_url(location: str) -> str:
    """What uv resolves against: the index URL, or file://OUT/simple for a local build."""
    if "://" in location:
        return location
    return (Path(location).absolute() / SIMPLE_DIR).as_uri()


def resolve_lock(
    requirements: Sequence[EnvRequirement], location: str, target: Target, file: str
) -> str:
    """The whole environment, resolved against the vetted index only, with hashes.

    uv gets `name[extras]==version` lines: markers were evaluated for the pod already."""
    from imagebot.uv import ResolveFailed, Uv, requirement_line, summarize

    lines = "".join(requirement_line(r.name, r.version, r.extras) + "\n" for r in requirements)
    resolver = Uv(index_url=uv_index_url(location), annotate=False, cache=False)
    try:
        return resolver.compile({"environment.in": lines}, "", target.python, target.platform)
    except ResolveFailed as failed:
        raise PackageIndexError(
            f"cannot resolve {file} for {target.describe()}: {summarize(failed.output)}",
            "vet versions whose dependencies resolve for the image's Python and platform",
        ) from None


@dataclass(frozen=True)
class EnvScript:
    text: str
    packages: int


def env_script(
    file: Path,
    text: str,
    location: str,
    manifest: IndexManifest,
    install_url: str,
    request_url: str = "",
) -> EnvScript:
    """`env script`: vet FILE's text, resolve it against the vetted index and render the
    install script. Writes nothing."""
    _comment_text(file.name, "the environment file's name")  # refused before uv runs
    requirements = check_env_file(str(file), text, manifest, request_url)
    lock = resolve_lock(requirements, location, manifest.target, str(file))
    problems = lock_problems(str(file), lock, manifest)
    if problems:
        raise EnvFileError(problems, str(file), "rebuild the index, then run this again")
    packages = len(pins(lock))
    summary = {"packages": str(packages), "target": manifest.target.describe()}
    return EnvScript(render_script(file.name, lock, install_url, request_url, summary), packages)


# --- renv.lock: R environments --------------------------------------------------------------

RENV_SOURCES = ("Repository", "CRAN")  # renv's Source for packages from a CRAN-like repository
_MD5_HEX = re.compile(r"[0-9a-f]{32}")
_R_CODE_MARKER = "IMAGEBOT_R"


def is_renv_lock(text: str) -> bool:
    """renv.lock is JSON; a requirements-style file never starts with '{'."""
    return text.lstrip("\ufeff \t\r\n").startswith("{")


@dataclass(frozen=True)
class RenvPackage:
    line: int
    name: str
    version: str


@dataclass(frozen=True)
class RenvLock:
    r_version: str  # "" when the lock does not say
    packages: tuple[RenvPackage, ...]
    with_r: tuple[str, ...]  # base and recommended packages, which come with R


def parse_renv_lock(file: str, text: str) -> tuple[RenvLock, list[Problem]]:
    """renv.lock's R version and packages; every bad name, version or source is a problem."""
    import json

    from imagebot.cran import WITH_R

    problems: list[Problem] = []
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "write renv.lock with renv::snapshot()"
        return RenvLock("", (), ()), [Problem(file, exc.lineno, f"not JSON: {exc.msg}", hint)]
    except RecursionError:
        return RenvLock("", (), ()), [Problem(file, 0, "nested too deeply", "use renv.lock")]
    packages_raw = raw.get("Packages") if isinstance(raw, dict) else None
    if not isinstance(packages_raw, dict):
        hint = "pass renv.lock as renv::snapshot() writes it"
        return RenvLock("", (), ()), [Problem(file, 1, 'no "Packages" object', hint)]
    r_version = _renv_r_version(file, text, raw.get("R"), problems)
    packages: list[RenvPackage] = []
    with_r: list[str] = []
    for name, record in packages_raw.items():
        line = _json_key_line(text, name)
        package = _renv_package(file, line, name, record, problems)
        if package is None:
            continue
        if package.name in WITH_R:
            with_r.append(package.name)
        else:
            packages.append(package)
    return RenvLock(r_version, tuple(packages), tuple(sorted(with_r))), problems


def _renv_r_version(file: str, text: str, r: object, problems: list[Problem]) -> str:
    version = r.get("Version", "") if isinstance(r, dict) else ""
    try:
        return validate.r_version(version) if version else ""
    except validate.InvalidValue as exc:
        line = _json_key_line(text, "R")
        problems.append(Problem(file, line, f"R: Version: {exc.message}", exc.hint))
        return ""


def _json_key_line(text: str, key: str) -> int:
    """The line of the first `"key":` in the text (JSON has no positions), 0 when not found."""
    import json

    needle = json.dumps(key) + ":"
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line.replace('": ', '":'):
            return number
    return 0


def _renv_package(
    file: str, line: int, name: str, record: object, problems: list[Problem]
) -> RenvPackage | None:
    def problem(message: str, hint: str) -> None:
        problems.append(Problem(file, line, message, hint))

    try:
        validate.r_name(name)
    except validate.InvalidValue as exc:
        problem(f"{_shown_value(name)}: {exc.message}", exc.hint)
        return None
    if not isinstance(record, dict):
        problem(f"{name}: not an object", "write renv.lock with renv::snapshot()")
        return None
    if record.get("Package", name) != name:
        problem(
            f'{name}: "Package" says {_shown_value(record.get("Package"))}',
            "the key and Package must name the same package",
        )
        return None
    source = record.get("Source", "Repository")
    if source not in RENV_SOURCES:
        problem(
            f"{name}: Source {_shown_value(source)} installs from outside the vetted repository",
            'install it from the repository (renv::install("NAME@VERSION")), then snapshot',
        )
        return None
    try:
        version = validate.r_version(record.get("Version"))
    except validate.InvalidValue as exc:
        problem(f"{name}: Version: {exc.message}", exc.hint)
        return None
    return RenvPackage(line, name, version)


def _shown_value(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}..."


def renv_problems(
    file: str, lock: RenvLock, manifest: IndexManifest, request_url: str = ""
) -> list[Problem]:
    """One problem per package the vetted repository does not serve at that version, and per
    dependency (Depends, Imports, LinkingTo) that renv.lock lacks or pins out of range."""
    from imagebot.cran import same_r_version, version_key

    ask = f"ask for it at {request_url}" if request_url else _REQUEST_HINT_FALLBACK
    problems: list[Problem] = []
    locked = {p.name: p for p in lock.packages}
    for package in lock.packages:
        vetted = manifest.r.versions(package.name)
        match = next((p for v, p in vetted.items() if same_r_version(v, package.version)), None)
        if not vetted:
            problems.append(
                Problem(file, package.line, f"R package {package.name} is not vetted", ask)
            )
            continue
        if match is None:
            problems.append(
                Problem(
                    file,
                    package.line,
                    f"R package {package.name} {package.version} is not vetted",
                    f"vetted versions: {', '.join(sorted(vetted, key=version_key))}; "
                    f"use one of them, or {ask}",
                )
            )
            continue
        for dep in match.package.dependencies():
            have = locked.get(dep.name)
            if have is None:
                problems.append(
                    Problem(
                        file,
                        package.line,
                        f"{package.name} needs {dep}, which renv.lock does not list",
                        "run renv::snapshot() again so that the lock is complete",
                    )
                )
            elif not dep.allows(have.version):
                problems.append(
                    Problem(
                        file,
                        have.line,
                        f"{package.name} needs {dep}; renv.lock has {have.version}",
                        "pin a version that fits",
                    )
                )
    return problems


def check_renv_lock(
    file: str, text: str, manifest: IndexManifest, request_url: str = ""
) -> RenvLock:
    """Parse and vet a renv.lock; raise EnvFileError listing every problem."""
    lock, problems = parse_renv_lock(file, text)
    if not problems:
        problems = renv_problems(file, lock, manifest, request_url)
    if not lock.packages and not problems:
        problems.append(Problem(file, 0, "no packages in renv.lock", "run renv::snapshot()"))
    if problems:
        problems.sort(key=lambda p: p.line)
        raise EnvFileError(problems, file, "fix the lines above, then run imagebot env check again")
    return lock


def install_order(lock: RenvLock, manifest: IndexManifest) -> list[tuple[str, str, str, str]]:
    """(name, version, path in the repository, md5) per package, dependencies first."""
    from imagebot.cran import CONTRIB, same_r_version

    chosen = {}
    for package in lock.packages:
        vetted = manifest.r.versions(package.name)
        chosen[package.name] = next(
            p for v, p in vetted.items() if same_r_version(v, package.version)
        )
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in visiting:
            return  # a dependency cycle installs in listed order, as R would refuse it anyway
        visiting.add(name)
        for dep in chosen[name].package.dependencies():
            if dep.name in chosen:
                visit(dep.name)
        order.append(name)

    for name in sorted(chosen):
        visit(name)
    rows = []
    for name in order:
        indexed = chosen[name].package
        version, md5 = validate.r_version(indexed.version), indexed.md5
        if not _MD5_HEX.fullmatch(md5):
            raise PackageIndexError(f"the manifest's MD5 of {name} is not an MD5", "rebuild it")
        filename = f"{name}_{version}.tar.gz"
        current = chosen[name].current
        path = f"{CONTRIB}/{filename}" if current else f"{CONTRIB}/Archive/{name}/{filename}"
        rows.append((name, version, path, md5))
    return rows


def render_renv_script(
    env_file: str,
    rows: Sequence[tuple[str, str, str, str]],
    repo_url: str,
    request_url: str = "",
    summary: Mapping[str, str] | None = None,
) -> str:
    """A bash script that installs exactly renv.lock's packages from the vetted repository
    into the user's library, each tarball checked against its MD5 before it is installed."""
    env_file = _comment_text(env_file, "the environment file's name")
    ask = _ask_comment(request_url)
    described = _summary_comment(summary)
    table = ",\n".join(
        f'  c("{name}", "{version}", "{path}", "{md5}")' for name, version, path, md5 in rows
    )
    return (
        "#!/usr/bin/env bash\n"
        f"# Generated by `imagebot env script {env_file}`. Do not edit: change {env_file}\n"
        "# and run that command again.\n"
        "#\n"
        "# Reinstalls this project's R packages in a fresh pod, exactly: every version of\n"
        "# renv.lock from the vetted repository, each file checked against its MD5 first.\n"
        "#   bash this-script                 # into your library (R_LIBS_USER)\n"
        "#   bash this-script DIR             # into the library DIR\n"
        f"{described}"
        f"{ask}"
        "set -euo pipefail\n"
        f'repo="${{IMAGEBOT_CRAN_URL:-{_bash_default(repo_url)}}}"\n'
        'code="$(mktemp)"\n'
        "trap 'rm -f \"$code\"' EXIT\n"
        f"cat >\"$code\" <<'{_R_CODE_MARKER}'\n"
        "args <- commandArgs(trailingOnly = TRUE)\n"
        "repo <- args[[1]]\n"
        'lib <- if (length(args) > 1) args[[2]] else Sys.getenv("R_LIBS_USER")\n'
        "dir.create(lib, recursive = TRUE, showWarnings = FALSE)\n"
        ".libPaths(c(lib, .libPaths()))\n"
        "files <- list(\n"
        f"{table}\n"
        ")\n"
        'work <- tempfile("imagebot-renv-")\n'
        "dir.create(work)\n"
        "for (f in files) {\n"
        "  dest <- file.path(work, basename(f[[3]]))\n"
        '  download.file(paste0(repo, "/", f[[3]]), dest, quiet = TRUE, mode = "wb")\n'
        "  if (!identical(unname(tools::md5sum(dest)), f[[4]]))\n"
        '    stop(f[[1]], " ", f[[2]], ": the file does not match the vetted MD5; not installed")\n'
        '  install.packages(dest, repos = NULL, type = "source", lib = lib, quiet = TRUE)\n'
        "  got <- tryCatch(as.character(packageVersion(f[[1]], lib.loc = lib)),\n"
        '                  error = function(e) "none")\n'
        "  if (!isTRUE(package_version(got, strict = FALSE) == package_version(f[[2]])))\n"
        '    stop(f[[1]], " ", got, " installed, renv.lock wants ", f[[2]])\n'
        '  message("installed ", f[[1]], " ", f[[2]])\n'
        "}\n"
        "unlink(work, recursive = TRUE)\n"
        f"{_R_CODE_MARKER}\n"
        'Rscript "$code" "$repo" "$@"\n'
    )


def r_repo_url(location: str) -> str:
    """The vetted R repository of an index URL (<root>/cran), or of a local OUT directory."""
    from imagebot.cran import CRAN_DIR, cran_url

    if "://" in location:
        return cran_url(location)
    return (Path(location).absolute() / CRAN_DIR).as_uri()


def renv_script(
    file: Path, text: str, manifest: IndexManifest, repo_url: str, request_url: str = ""
) -> EnvScript:
    """`env script renv.lock`: vet it and render the install script. Writes nothing."""
    _comment_text(file.name, "the environment file's name")
    lock = check_renv_lock(str(file), text, manifest, request_url)
    rows = install_order(lock, manifest)
    summary = {"R packages": str(len(rows))}
    if lock.r_version:
        summary["R version in renv.lock"] = lock.r_version
    if lock.with_r:
        summary["with R itself (not installed)"] = ", ".join(lock.with_r)
    return EnvScript(render_renv_script(file.name, rows, repo_url, request_url, summary), len(rows))
