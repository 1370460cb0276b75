"""Command: review, what a pull request changes in the vetted packages, for its reviewer.

It compares the working tree's requirement sets, index-only list and locks (the R lock,
`requirements/cran.lock`, included) with those of a base revision read from git, looks up facts
about every Python package that is new (an R package's are in its lock stanza), and prints the
report (imagebot.review): text on stdout, `--json`, `--markdown FILE`; inside Azure
Pipelines the Markdown also goes on the run's summary page. An entry added or changed without
the requester's confirmation fails the review (exit 4) after the whole report is printed. An R
lock stanza, new or changed, that its upstream's PACKAGES does not list exactly as the lock
says fails it (exit 13) before any report: the report shows no fact the upstream did not give.
The base's and the working tree's imagebot.toml are compared too, and any change is the
report's first section; it fails the review (exit 4) unless a reviewer accepts exactly those
changes (`--accept-config FINGERPRINT`).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagebot.errors import ImagebotError, UsageError

if TYPE_CHECKING:
    from imagebot.config import Config
    from imagebot.review import Review, RVerified, Vulnerabilities
    from imagebot.review_config import ConfigChanges

# Branches tried, in order, when no --base is given and no CI names the target branch.
DEFAULT_BASES = ("origin/HEAD", "origin/main", "origin/master", "main", "master")
# What a CI sets to the pull request's target branch: Azure Pipelines, GitHub Actions.
TARGET_BRANCH_VARIABLES = ("SYSTEM_PULLREQUEST_TARGETBRANCH", "GITHUB_BASE_REF")
# A revision as a person writes one: a branch, tag, sha, `HEAD~2`, `origin/main@{1}`. Never an
# option (no leading '-'), no shell or git-pathspec punctuation, no `..` ranges.
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./@{}~^+-]{0,199}", re.ASCII)
SUMMARY_FILE = "imagebot-review.md"


def register(app: typer.Typer) -> None:
    app.command("review")(review)


def review(
    ctx: typer.Context,
    base: str | None = typer.Option(
        None,
        "--base",
        help="Revision to compare with (default: the merge base of HEAD and the target branch).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    markdown: Path | None = typer.Option(
        None, "--markdown", help="Also write the report as Markdown to this file."
    ),
    advisories: str | None = typer.Option(
        None,
        "--advisories",
        help="Advisory source, as imagebot audit's --source: an OSV API URL or a directory of "
        "OSV records (default: [advisories] source in imagebot.toml).",
    ),
    accept_config: str | None = typer.Option(
        None,
        "--accept-config",
        envvar="IMAGEBOT_REVIEW_ACCEPT_CONFIG",
        help="Accept this pull request's imagebot.toml changes: the fingerprint the report "
        "shows for exactly those changes (a reviewer's confirmation; without it they fail the "
        "review).",
    ),
) -> None:
    """Report what this branch changes in the vetted packages: entries, new packages with
    facts from the upstream index, version changes, vulnerabilities, and first any imagebot.toml
    change; exit 4 when an added or changed entry lacks the requester's confirmation
    (safe_because), or when imagebot.toml changes without a reviewer's --accept-config."""
    from imagebot import console
    from imagebot.errors import PackageIndexError, RequirementsError
    from imagebot.review import CONFIRMATION_FIELD
    from imagebot.review_config import ACCEPT_OPTION
    from imagebot.review_render import render_markdown, render_text, review_json
    from imagebot.state import state

    config = state(ctx).config
    start = time.monotonic()
    result = run_review(config, base, os.environ, advisories, accept_config)
    elapsed = time.monotonic() - start
    console.info(
        f"review: {len(result.changes.new_packages)} new Python and "
        f"{len(result.changes.r.new_packages)} new R packages, {result.requests} requests "
        f"for facts, {result.r_verified.requests} for R packages' upstream PACKAGES, "
        f"{elapsed:.1f}s"
    )
    if as_json:
        console.print_json(review_json(result))
    else:
        typer.echo(render_text(result), nl=False)
    summary = markdown
    if summary is None and console.in_pipeline():
        summary = Path(os.environ.get("AGENT_TEMPDIRECTORY") or _tempdir()) / SUMMARY_FILE
    if summary is not None:
        from imagebot.files import write_atomically

        write_atomically({summary: render_markdown(result)})
        console.upload_summary(summary)
    if result.all_problems:
        confirm = (
            f"each added or changed entry needs {CONFIRMATION_FIELD}: what its requester "
            f'checked, in one line, e.g. {CONFIRMATION_FIELD} = "known publisher (pola-rs), '
            'MIT, no open advisories"'
        )
        accept = (
            f"a package request leaves imagebot.toml alone; a platform maintainer accepts a "
            f"change they have read with {ACCEPT_OPTION} {result.config.fingerprint}"
        )
        hints = [confirm] if result.problems else []
        hints += [accept] if result.config.problems() else []
        what = ["the pull request's entries"] if result.problems else []
        what += ["the pull request's imagebot.toml"] if result.config.problems() else []
        raise RequirementsError(result.all_problems, " and ".join(what), "; and ".join(hints))
    missing = [p for p in result.changes.new_packages if p.facts is None or p.facts.problem]
    if missing:
        raise PackageIndexError(
            f"no facts for {len(missing)} new package(s): {', '.join(p.name for p in missing)}",
            "the report above says why for each; check the network or IMAGEBOT_UPSTREAM_INDEX",
        )


def _tempdir() -> str:
    import tempfile

    return tempfile.gettempdir()


# --- the operation ---------------------------------------------------------------------------


def run_review(
    config: Config,
    base: str | None,
    env: Mapping[str, str],
    advisories: str | None = None,
    accept_config: str | None = None,
) -> Review:
    """Read both states, compare them, look up facts and advisories; the Review (no output).
    `accept_config` is a reviewer's acceptance of the imagebot.toml changes (their fingerprint)."""
    from imagebot.cranlock import CRAN_LOCK_NAME
    from imagebot.errors import Problem, RequirementsError, StaleError
    from imagebot.package_facts import PYPI_SIMPLE_URL, PackageFactsSource
    from imagebot.requirements import check_sets, index_only_problems, parse_set
    from imagebot.review import (
        Review,
        compare,
        confirmation_problems,
        state_from_files,
        with_facts,
    )
    from imagebot.review_config import accept_config_changes

    root = config.root
    directory = config.requirements_dir.relative_to(root).as_posix()
    names = _file_names(config)
    revision, shown = resolve_base(root, base, env)
    base_files = read_revision(root, revision, directory, names)
    head_files = _read_working_tree(config, names)
    base_state, _ = state_from_files(base_files, directory)
    head_state, problems = state_from_files(head_files, directory)
    r_lock = f"{directory}/{CRAN_LOCK_NAME}"
    for problem in problems:
        if problem.file == r_lock:  # the working tree's R lock: stale, as lock --check says
            raise StaleError(problem.message, problem.hint)
    parsed = {
        path: parse_set(Path(path), text)[0]
        for path, text in head_files.items()
        if path.endswith(".toml")
    }
    index_only = parsed.pop(f"{directory}/index-only.toml", None)
    sets = [s for s in parsed.values() if s is not None]
    problems.extend(check_sets(sets))
    if index_only is not None:
        problems.extend(index_only_problems(index_only, sets))
    if problems:
        raise RequirementsError(
            problems, str(config.requirements_dir), "fix the entries above, then review again"
        )
    configured = accept_config_changes(config_changes_since(config, revision), accept_config)
    r_verified = verify_r_lock(config, base_files, head_files, r_lock)
    if r_verified.packages and configured.r_upstream_keys:
        r_verified = replace(r_verified, changed_by_pull_request=configured.r_upstream_keys)
    changes = compare(base_state, head_state)
    upstream = env.get("IMAGEBOT_UPSTREAM_INDEX") or PYPI_SIMPLE_URL
    source = PackageFactsSource(upstream)
    facts = source.facts([(p.name, p.version) for p in changes.new_packages])
    changes = with_facts(changes, facts)
    confirmations: list[Problem] = confirmation_problems(changes)
    return Review(
        base=shown,
        changes=changes,
        facts_source=upstream,
        requests=source.requests,
        vulnerabilities=vulnerabilities_of(
            config, changes.pins_to_check(), advisories, changes.r_pins_to_check()
        ),
        who_this_may_hurt=who_this_may_hurt(config, base_files, head_files, directory),
        problems=tuple(confirmations),
        r_verified=r_verified,
        config=configured,
    )


def config_changes_since(config: Config, revision: str) -> ConfigChanges:
    """What the working tree's imagebot.toml changes since `revision`'s, as the files say
    (imagebot.review_config.config_changes). A base file that is absent, not UTF-8 or not TOML is
    said in the report, never fatal: the base is history."""
    from imagebot.files import read_text
    from imagebot.gitops import run_git
    from imagebot.review_config import config_changes

    root = config.root
    name = config.path.resolve().relative_to(root).as_posix()
    head = read_text(config.path)  # load_config read it a moment ago
    code, listed = _git(root, ["ls-tree", "-z", "--name-only", revision, "--", name])
    if code != 0 or not listed.strip("\0"):
        return config_changes(None, head, profile=config.profile)
    try:
        proc = run_git(["show", f"{revision}:./{name}"], root, {"GIT_TERMINAL_PROMPT": "0"})
    except UnicodeDecodeError:
        return config_changes(None, head, profile=config.profile, base_unreadable="is not UTF-8")
    if proc.returncode != 0:
        return config_changes(None, head, profile=config.profile, base_unreadable="cannot be read")
    return config_changes(proc.stdout, head, profile=config.profile)


def verify_r_lock(
    config: Config, base_files: Mapping[str, str], head_files: Mapping[str, str], path: str
) -> RVerified:
    """Have the upstream vouch for every stanza of the head's R lock (`path`) that is new or
    changed since the base: each must be in its upstream's PACKAGES exactly as the lock says
    (PackageIndexError, exit 13, otherwise), so the facts the report shows are the upstream's
    and not the pull request's. The upstreams are the ones `imagebot lock` reads for the
    working tree's imagebot.toml (`cran_upstream_urls`, `r_user_agent`); only those the
    changed stanzas name are read, and none when no stanza changed."""
    from imagebot.cran_upstream import CranUpstream, fetch_listed
    from imagebot.cranlock import (
        changed_since,
        cran_upstream_urls,
        parse_cran_lock,
        require_listed_as_locked,
        upstreams_named,
    )
    from imagebot.errors import StaleError
    from imagebot.review import RVerified

    text = head_files.get(path)
    if text is None:
        return RVerified()
    head = parse_cran_lock(text, path)  # readable: state_from_files said so
    try:
        base = parse_cran_lock(base_files[path], path) if path in base_files else None
    except StaleError:  # an unreadable base lock lends nothing: every stanza is new
        base = None
    changed = changed_since(head, base)
    if not changed:
        return RVerified()
    urls = upstreams_named(changed, cran_upstream_urls(config))
    upstreams = [CranUpstream(url, config.index.r_user_agent) for url in urls]
    listed = fetch_listed(upstreams)
    require_listed_as_locked(changed, dict(zip(urls, listed, strict=True)), path)
    return RVerified(len(changed), tuple(urls), sum(u.requests for u in upstreams))


def who_this_may_hurt(
    config: Config, base_files: Mapping[str, str], head_files: Mapping[str, str], directory: str
) -> str:
    """The pull request's impact (imagebot.impact.section): who needs each package that changes
    or leaves, and the registered environments that pin it. Local and pure: the files above and
    environments/ (whose problems are `imagebot check`'s to report)."""
    from imagebot.environments import load_environments, target_of
    from imagebot.impact import render_text, section

    environments, _ = load_environments(config.root, *target_of(config))
    return render_text(section(base_files, head_files, directory, environments))


def vulnerabilities_of(
    config: Config,
    pins: list[tuple[str, str]],
    location: str | None,
    r_pins: list[tuple[str, str]] | None = None,
) -> Vulnerabilities:
    """Known vulnerabilities of the new and changed pins, Python's (`pins`, OSV ecosystem PyPI)
    and R's (`r_pins`, CRAN), by `imagebot audit`'s operation with the working tree's waivers. A source that cannot answer is said in the report, not hidden;
    the gate that fails on findings is `imagebot audit`."""
    from datetime import UTC, datetime

    from imagebot import console
    from imagebot.advisories import CRAN, PYPI, Package
    from imagebot.audit import audit
    from imagebot.osv import source_for
    from imagebot.review import Vulnerabilities, Vulnerability
    from imagebot.waivers import load_waivers

    packages = [Package(PYPI, name, version, ()) for name, version in pins]
    packages += [Package(CRAN, name, version, ()) for name, version in r_pins or ()]
    if not packages:
        return Vulnerabilities(True, "nothing new or changed to check")
    base = Path.cwd() if location else config.root
    try:
        source = source_for(location or config.advisories.source, base, on_retry=console.info)
        result = audit(
            packages,
            source,
            load_waivers(config.requirements_dir),
            datetime.now(UTC).date(),
        )
    except ImagebotError as exc:
        return Vulnerabilities(False, f"not checked: {exc.message}")
    found = [(finding, "") for finding in result.findings] + [
        (finding, f"{waiver.reason} (approved by {waiver.approved_by} until {waiver.expires})")
        for finding, waiver in result.waived
    ]
    checked = f"{len(result.packages)} new or changed versions checked against {result.source}"
    return Vulnerabilities(
        True,
        f"{checked}: {len(found) or 'none'} known",
        tuple(
            Vulnerability(
                finding.package.name,
                finding.package.version,
                finding.advisory.id,
                finding.advisory.aliases,
                finding.advisory.summary,
                finding.fixed,
                waived,
                finding.package.ecosystem,
            )
            for finding, waived in found
        ),
    )


def _file_names(config: Config) -> list[str]:
    sets = sorted({name for image in config.images.values() for name in image.sets})
    from imagebot.cranlock import CRAN_LOCK_NAME

    return [f"{name}{suffix}" for name in sets for suffix in (".toml", ".lock")] + [
        "index-only.toml",
        CRAN_LOCK_NAME,
    ]


def _read_working_tree(config: Config, names: list[str]) -> dict[str, str]:
    from imagebot.files import Unreadable, read_text

    directory = config.requirements_dir.relative_to(config.root).as_posix()
    files: dict[str, str] = {}
    for name in names:
        path = config.requirements_dir / name
        try:
            files[f"{directory}/{name}"] = read_text(path)
        except Unreadable as exc:
            if not exc.missing:
                raise ImagebotError(
                    f"{path}: {exc.reason}", "fix or restore the file, then review again"
                ) from None
    return files


# --- the base revision, from the local git repository ----------------------------------------


def valid_revision(value: str) -> str:
    """`value` when it is a revision a person would write; UsageError (exit 2) otherwise."""
    if not _REVISION.fullmatch(value) or ".." in value:
        raise UsageError(
            f"--base {value!r} is not a git revision imagebot accepts",
            "name a branch, tag or commit, e.g. --base origin/main or --base 1a2b3c4",
        )
    return value


def _git(root: Path, args: list[str]) -> tuple[int, str]:
    """The one way this command runs git: the gitops adapter's runner, in the project root."""
    from imagebot.gitops import run_git

    try:
        proc = run_git(args, root, {"GIT_TERMINAL_PROMPT": "0"})
    except UnicodeDecodeError:
        raise ImagebotError(
            f"git {args[0]} printed text that is not UTF-8", "check the files in the base revision"
        ) from None
    return proc.returncode, proc.stdout


def _commit(root: Path, revision: str) -> str | None:
    code, out = _git(
        root, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"]
    )
    return out.strip() if code == 0 and out.strip() else None


def resolve_base(root: Path, base: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    """(commit sha, how to show it) of the revision to compare with.

    `--base REF` as given; else the merge base of HEAD and the pull request's target branch
    (named by the CI), else the first of DEFAULT_BASES that exists.
    """
    if base is not None:
        sha = _commit(root, valid_revision(base))
        if sha is None:
            raise UsageError(
                f"--base {base!r} is not a commit in this repository",
                "fetch it first (git fetch origin BRANCH) or name another revision",
            )
        return sha, f"{base} ({sha[:12]})"
    candidates = list(DEFAULT_BASES)
    for variable in TARGET_BRANCH_VARIABLES:
        target = env.get(variable, "").removeprefix("refs/heads/")
        if target and _REVISION.fullmatch(target) and ".." not in target:
            candidates = [f"origin/{target}", target]
            break
    if _commit(root, "HEAD") is None:
        raise ImagebotError(
            f"{root} is not a git checkout with commits",
            "run imagebot review in a clone of the repository, or pass --base REF",
        )
    for candidate in candidates:
        target_sha = _commit(root, candidate)
        if target_sha is None:
            continue
        code, out = _git(root, ["merge-base", "HEAD", target_sha])
        if code != 0 or not out.strip():
            raise ImagebotError(
                f"HEAD and {candidate} have no merge base in this clone",
                f"fetch more history (git fetch --deepen=100 origin), or pass --base {candidate}",
            )
        sha = out.strip()
        return sha, f"the merge base of HEAD and {candidate} ({sha[:12]})"
    raise ImagebotError(
        f"no base branch to compare with: none of {', '.join(candidates)} exists",
        "pass --base REF, e.g. --base origin/main",
    )


def read_revision(root: Path, sha: str, directory: str, names: list[str]) -> dict[str, str]:
    """`{directory/name: text}` of the named files that exist in commit `sha`."""
    code, out = _git(root, ["ls-tree", "-z", "--name-only", sha, "--", f"{directory}/"])
    if code != 0:
        raise ImagebotError(f"cannot list {directory}/ in {sha[:12]}", "check the clone")
    present = {path for path in out.split("\0") if path}
    files: dict[str, str] = {}
    for name in names:
        path = f"{directory}/{name}"
        if path not in present:
            continue
        code, text = _git(root, ["show", f"{sha}:./{path}"])
        if code != 0:
            raise ImagebotError(f"cannot read {path} at {sha[:12]}", "check the clone")
        files[path] = text
    return files
