"""`imagebot history [--r] PACKAGE`: when each version of a Python or R package entered or
left each set, index-only.toml, each registered environment, the vetted index, and each
deployed image.

Two git commands in all, whatever the length of the history:
  - one `git log -p` over the imagebot repository's files that pin packages. Python: the set
    locks (`requirements/<set>.lock`, never `cran.lock`), index-only.toml's [python] and
    `environments/<team>/<name>.txt`. R: the sets' and index-only.toml's [r] entries
    (`requirements/<set>.toml`, Debian-sourced sets too), `requirements/cran.lock` (the R lock:
    exactly what the vetted R repository serves, so its entries and exits are the R index's)
    and `environments/<team>/<name>.renv.lock`;
  - one `git log` over the GitOps files of every environment sharing a repository (a full
    clone with only those files checked out): each promotion commit's message carries the
    package diff per ecosystem (`~ numpy 2.4.6 -> 2.5.0` under `python:`, `~ cli 3.6.1 ->
    3.6.2` under `r:`), `promote_plan.commit_message`'s format.

Reading the diff: a pin is not always a line. A TOML entry means nothing without the `[r]` or
`[python]` header above it, a cran.lock stanza's `Version:` line can change without its
`Package:` line, and a renv.lock package spans several JSON lines. No amount of diff context
is right for all of them (a set's `[r]` header can be any distance above a changed entry), so
the log is read with `--unified=0` along the first-parent chain, and each file's text is
replayed from its creation: every commit's hunks are applied to the previous text, and the
whole file, before and after, is parsed by the same parser that reads it in the working tree
(`lockfile.pins`, `requirements.parse_set`, `cranlock.parse_cran_lock`,
`envfile.parse_renv_lock`). What entered or left is the difference of the two parses. The
first-parent chain (`--first-parent --diff-merges=first-parent`) is what makes the replay
exact: each listed commit's diff is against the previous listed state, and a merged pull
request's changes are dated by the merge that landed them. A file text no parser reads
(invalid TOML, a hand-broken cran.lock) changes nothing until a readable text follows.

The Python index serves every version some lock, index-only entry or registered environment
pins, so its entries and exits are derived from those events without another command. Parsing
is pure (`parse_repo_log`, `parse_promotion_log`, `index_events`); `read_history` runs git
through the adapter in `imagebot.gitops`.
"""

from __future__ import annotations

import re
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imagebot.cranlock import CRAN_LOCK_NAME as CRAN_LOCK  # the R lock, never a set's lock
from imagebot.promote_plan import IMPACT_HEADING
from imagebot.requirements import INDEX_ONLY, NOT_SETS, normalize

if TYPE_CHECKING:
    from imagebot.config import Config

PYTHON, R = "python", "r"
RECORD = "\x1e"  # between commits in `git log --format`
FIELD = "\x1f"  # between a commit's fields
ENTERED, LEFT = "entered", "left"
INDEX = "index"
_SET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*", re.ASCII)  # requirements' rule for set files
_DIFF_FILE = re.compile(r"diff --git a/(\S+) b/(\S+)")
_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_SUBJECT = re.compile(r"imagebot: (\w+) (.+?) in (\S+) \[skip ci\]")
_PACKAGE_DIFF = re.compile(r"Package diff for (\S+):")
_CHANGE = re.compile(r"\s+([~+-]) (\S+) (\S+)(?: -> (\S+))?")


@dataclass(frozen=True)
class Markers:
    """What separates commits and fields in `git log --format` output. The adapter adds a
    random suffix per run, so a commit message or a file line cannot forge a commit."""

    record: str = RECORD
    field: str = FIELD

    @classmethod
    def fresh(cls) -> Markers:
        nonce = secrets.token_hex(8)
        return cls(RECORD + nonce, FIELD + nonce)

    @property
    def log_format(self) -> str:
        # hash and date first (git writes them); subject and body may hold anything
        r, f = self.record, self.field
        return f"{r}%H{f}%cI{f}%s{f}%b{f}"


LOG_FORMAT = Markers().log_format


@dataclass(frozen=True, order=True)
class Event:
    """One version of the package entering or leaving one place, in one commit."""

    date: str  # ISO 8601 committer date
    commit: str
    where: str  # "set datascience", "index-only", "environment team/name", "index",
    # "staging jupyterlab"
    version: str
    change: str  # entered | left
    subject: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "date": self.date,
            "commit": self.commit,
            "where": self.where,
            "version": self.version,
            "change": self.change,
            "subject": self.subject,
        }


@dataclass(frozen=True)
class History:
    package: str  # PEP 503 normalised (Python); exactly as R names it (R)
    events: tuple[Event, ...]  # oldest first
    commits_read: int
    ecosystem: str = PYTHON

    def to_json(self) -> dict[str, object]:
        return {
            "package": self.package,
            "ecosystem": self.ecosystem,
            "events": [e.to_json() for e in self.events],
            "commits_read": self.commits_read,
        }

    def lines(self) -> list[str]:
        if not self.events:
            if self.ecosystem == R:
                return [
                    f"R package {self.package}: no set or index-only [r] entry, cran.lock, "
                    "R environment or promotion names it"
                ]
            return [f"{self.package}: no lock, index-only entry, environment or promotion names it"]
        width = max(len(e.where) for e in self.events)
        return [
            f"{e.date[:10]} {e.commit[:10]} {e.where:<{width}} {e.change:<7} {e.version}"
            for e in self.events
        ]


@dataclass(frozen=True)
class Commit:
    sha: str
    date: str
    subject: str
    body: str
    patch: str


def split_log(output: str, markers: Markers = Markers()) -> list[Commit]:
    """Commits of `git log --format=markers.log_format [-p]` output, newest first as git
    printed them."""
    commits: list[Commit] = []
    for record in output.split(markers.record)[1:]:
        parts = record.split(markers.field, 4)
        if len(parts) < 5:
            continue
        sha, date, subject, body, patch = parts
        commits.append(Commit(sha, date, subject, body, patch))
    return commits


# --- which files pin what ----------------------------------------------------------------------


def place_of(path: str, requirements_dir: str, ecosystem: str = PYTHON) -> str | None:
    """Where a changed file pins packages of `ecosystem`: "set NAME", "index-only", "index"
    (R: cran.lock), "environment TEAM/NAME"; None for any other file."""
    from imagebot.environments import RENV_SUFFIX, SUFFIX, relative_parts

    prefix = requirements_dir.rstrip("/") + "/"
    if path.startswith(prefix) and "/" not in path[len(prefix) :]:
        name = path[len(prefix) :]
        stem, dot, suffix = name.rpartition(".")
        if name == f"{INDEX_ONLY}.toml":
            return INDEX_ONLY
        if ecosystem == R and name == CRAN_LOCK:
            return INDEX
        wanted = "lock" if ecosystem == PYTHON else "toml"
        if dot and suffix == wanted and name != CRAN_LOCK and stem not in NOT_SETS:
            return f"set {stem}" if _SET_NAME.fullmatch(stem) else None
        return None
    if path.endswith(RENV_SUFFIX if ecosystem == R else SUFFIX):
        parts = relative_parts(path)
        return f"environment {parts[0]}/{parts[1]}" if isinstance(parts, tuple) else None
    return None


def is_version(ecosystem: str, version: str) -> bool:
    """Whether `version` is a version by the ecosystem's rule: anything else read from the
    history (a hand-edited lock, an odd image listing) is not a pin, and is never printed."""
    from imagebot import validate

    try:
        (validate.r_version if ecosystem == R else validate.python_version)(version)
    except validate.InvalidValue:
        return False
    return True


def pins_reader(package: str, ecosystem: str) -> Callable[[str, str], frozenset[str] | None]:
    """The versions of `package` a file's text pins, by the file's own parser; None when the
    text is not readable by it. Python names are compared PEP 503 normalised, R names exactly."""
    key = normalize(package) if ecosystem == PYTHON else package

    def read(path: str, text: str) -> frozenset[str] | None:
        if not text:
            return frozenset()
        name = path.rsplit("/", 1)[-1]
        if ecosystem == R and name == CRAN_LOCK:
            return _cran_lock_versions(key, path, text)
        if name.endswith(".toml"):
            return _entry_versions(key, ecosystem, path, text)
        if ecosystem == R:
            return _renv_versions(key, path, text)
        from imagebot import lockfile

        return frozenset(p.version for p in lockfile.pins(text) if p.name == key)

    return read


def _entry_versions(key: str, ecosystem: str, path: str, text: str) -> frozenset[str] | None:
    from imagebot.requirements import parse_set

    parsed, _ = parse_set(Path(path), text)
    if parsed is None:
        return None
    return frozenset(e.version for e in parsed.entries(ecosystem) if e.key == key)


def _cran_lock_versions(key: str, path: str, text: str) -> frozenset[str] | None:
    from imagebot.cranlock import parse_cran_lock
    from imagebot.errors import ImagebotError

    try:
        lock = parse_cran_lock(text, path)
    except ImagebotError:
        return None
    return frozenset(p.version for p in lock.packages if p.name == key)


def _renv_versions(key: str, path: str, text: str) -> frozenset[str] | None:
    from imagebot.envfile import parse_renv_lock

    lock, problems = parse_renv_lock(path, text)
    if problems and not lock.packages:
        return None
    return frozenset(p.version for p in lock.packages if p.name == key)


# --- replaying each file's text from the -U0 patches --------------------------------------------


@dataclass(frozen=True)
class FileChange:
    """One file of one commit's patch: its path, whether git created it, and its hunks."""

    path: str
    created: bool
    hunks: tuple[tuple[int, int, tuple[str, ...], tuple[str, ...]], ...]  # old start, old
    # count, removed lines, added lines


def file_changes(patch: str) -> Iterator[FileChange]:
    """The files of one commit's `--unified=0` patch. Lines are split on "\\n" only: a file's
    line may hold "\\r", U+2028 and the like, which str.splitlines would break."""
    path: str | None = None
    created = False
    hunks: list[tuple[int, int, list[str], list[str]]] = []
    in_hunk = False

    def done() -> Iterator[FileChange]:
        if path is not None:
            yield FileChange(
                path, created, tuple((a, b, tuple(m), tuple(p)) for a, b, m, p in hunks)
            )

    for line in patch.split("\n"):
        header = _DIFF_FILE.fullmatch(line)
        if header is not None:
            yield from done()
            path, created, hunks, in_hunk = header.group(2), False, [], False
            continue
        if path is None:
            continue
        hunk = _HUNK.match(line)
        if hunk is not None:
            count = int(hunk.group(2)) if hunk.group(2) is not None else 1
            hunks.append((int(hunk.group(1)), count, [], []))
            in_hunk = True
        elif in_hunk and line.startswith("-"):
            hunks[-1][2].append(line[1:])
        elif in_hunk and line.startswith("+"):
            hunks[-1][3].append(line[1:])
        elif not in_hunk and line.startswith("new file mode"):
            created = True
    yield from done()


def apply_hunks(old: Sequence[str], change: FileChange) -> list[str] | None:
    """The file's lines after `change`; None when the hunks do not fit `old` (a history this
    replay cannot follow)."""
    new: list[str] = []
    pos = 0
    for start, count, removed, added in change.hunks:
        first = start if count == 0 else start - 1  # -U0: an insertion follows line `start`
        if first < pos or first + count > len(old) or tuple(old[first : first + count]) != removed:
            return None
        new.extend(old[pos:first])
        new.extend(added)
        pos = first + count
    new.extend(old[pos:])
    return new


def parse_repo_log(
    output: str,
    package: str,
    requirements_dir: str = "requirements",
    ecosystem: str = PYTHON,
    markers: Markers = Markers(),
) -> list[Event]:
    """Events for `package` from one first-parent `git log -p --unified=0` of the files that
    pin packages of `ecosystem` (`repo_log`), oldest first."""
    read = pins_reader(package, ecosystem)
    texts: dict[str, list[str] | None] = {}  # None: not followed (the log began mid-history)
    known: dict[str, frozenset[str]] = {}  # each file's last readable pins of the package
    events: list[Event] = []
    for commit in reversed(split_log(output, markers)):
        changes: dict[tuple[str, str], int] = {}
        for change in file_changes(commit.patch):
            where = place_of(change.path, requirements_dir, ecosystem)
            if where is None:
                continue
            old = [] if change.created else texts.get(change.path)
            new = None if old is None else apply_hunks(old, change)
            texts[change.path] = new
            if new is None:
                continue
            after = read(change.path, "\n".join(new))
            if after is None:
                continue
            after = frozenset(v for v in after if is_version(ecosystem, v))
            before = known.get(change.path, frozenset())
            known[change.path] = after
            for version in after - before:
                changes[(where, version)] = changes.get((where, version), 0) + 1
            for version in before - after:
                changes[(where, version)] = changes.get((where, version), 0) - 1
        for (where, version), delta in sorted(changes.items()):
            if delta:
                change_kind = ENTERED if delta > 0 else LEFT
                events.append(
                    Event(commit.date, commit.sha, where, version, change_kind, commit.subject)
                )
    return events


def index_events(events: Sequence[Event]) -> list[Event]:
    """When each Python version entered or left the index: while any set, index-only entry or
    registered environment holds it, the index serves it."""
    holders: dict[str, set[str]] = {}
    derived: list[Event] = []
    for event in events:
        held = holders.setdefault(event.version, set())
        before = bool(held)
        (held.add if event.change == ENTERED else held.discard)(event.where)
        if before != bool(held):
            change = ENTERED if held else LEFT
            derived.append(
                Event(event.date, event.commit, INDEX, event.version, change, event.subject)
            )
    return derived


def parse_promotion_log(
    output: str,
    package: str,
    files: Mapping[str, str] | None = None,
    ecosystem: str = PYTHON,
    markers: Markers = Markers(),
) -> list[Event]:
    """Events for `package` from one `git log` of GitOps files: each imagebot promotion or
    rollback commit's package diff (its `ecosystem` section: `python:` or `r:`) says which
    version each deployed image gained or lost. `files` is unused by the parser (the subject
    names the environment)."""
    key = normalize(package) if ecosystem == PYTHON else package
    events: list[Event] = []
    for commit in reversed(split_log(output, markers)):
        subject = _SUBJECT.fullmatch(commit.subject.strip())
        if subject is None:
            continue
        environment = subject.group(3)
        image, section = "", ""
        for line in commit.body.split("\n"):
            if (diff := _PACKAGE_DIFF.fullmatch(line.strip())) is not None:
                image, section = diff.group(1), ""
                continue
            if line.strip() == IMPACT_HEADING:  # who it may hurt: no diff lines until the next
                section = ""
                continue
            head = line.split(":", 1)[0]
            if not line.startswith(" ") and head in ("python", "r", "dpkg"):
                section = head
                continue
            change = _CHANGE.fullmatch(line)
            if not image or section != ecosystem or change is None:
                continue
            sign, name, first, second = change.groups()
            if (normalize(name) if ecosystem == PYTHON else name) != key:
                continue
            if not all(is_version(ecosystem, v) for v in (first, second) if v is not None):
                continue
            where = f"{environment} {image}"
            if sign in "-~":
                events.append(Event(commit.date, commit.sha, where, first, LEFT, commit.subject))
            if sign == "+":
                events.append(Event(commit.date, commit.sha, where, first, ENTERED, commit.subject))
            elif sign == "~" and second:
                events.append(
                    Event(commit.date, commit.sha, where, second, ENTERED, commit.subject)
                )
    return events


def history(
    package: str,
    repo_log: str,
    promotion_logs: Iterable[str],
    requirements_dir: str = "requirements",
    ecosystem: str = PYTHON,
    markers: Markers = Markers(),
) -> History:
    """PURE: the whole history of `package` from the logs read by `read_history`. For R the
    index is cran.lock itself (`place_of`); for Python it is derived (`index_events`)."""
    events = parse_repo_log(repo_log, package, requirements_dir, ecosystem, markers)
    if ecosystem == PYTHON:
        events += index_events(events)
    commits = len(split_log(repo_log, markers))
    for log in promotion_logs:
        events += parse_promotion_log(log, package, None, ecosystem, markers)
        commits += len(split_log(log, markers))
    ordered = sorted(events, key=lambda e: (_instant(e.date), e.where == INDEX))  # stable
    name = normalize(package) if ecosystem == PYTHON else package
    return History(name, tuple(ordered), commits, ecosystem)


def _instant(date: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(date).timestamp()
    except ValueError:
        return 0.0


# --- reading git (the adapter) ---------------------------------------------------------------


def repo_pathspecs(requirements_dir: str, ecosystem: str) -> list[str]:
    """The files `place_of` reads for `ecosystem` (and a few it then skips, like waivers)."""
    if ecosystem == R:
        return [
            f":(glob){requirements_dir}/*.toml",
            f":(glob){requirements_dir}/{CRAN_LOCK}",
            ":(glob)environments/*/*.renv.lock",
        ]
    return [
        f":(glob){requirements_dir}/*.lock",
        f":(exclude,glob){requirements_dir}/{CRAN_LOCK}",
        f":(glob){requirements_dir}/{INDEX_ONLY}.toml",
        ":(glob)environments/*/*.txt",
    ]


def repo_log(
    root: Path, requirements_dir: str, ecosystem: str = PYTHON, markers: Markers = Markers()
) -> str:
    """One first-parent `git log -p --unified=0` of the files that pin `ecosystem`'s packages
    (the module docstring says why first-parent and no context)."""
    from imagebot.gitops import Git

    git = Git(root, str(root), {})
    return git.run(
        [
            "log",
            f"--format={markers.log_format}",
            "-p",
            "--first-parent",
            "--diff-merges=first-parent",
            "--no-color",
            "--unified=0",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--text",  # a `-diff` attribute must not hide a lock's lines
            "--",
            *repo_pathspecs(requirements_dir, ecosystem),
        ],
        "log",
    )


def promotion_logs(
    config: Config, env: Mapping[str, str], markers: Markers = Markers()
) -> list[str]:
    """One full, file-filtered clone and one `git log` per GitOps repository and branch."""
    from imagebot import gitops

    groups: dict[tuple[str, str], list[str]] = {}
    for environment in config.environments.values():
        key = f"environments.{environment.name}.repo"
        url = gitops.remote_url(environment.repo, config.root, key)
        groups.setdefault((url, environment.branch), []).append(environment.file)
    logs: list[str] = []
    for (url, branch), files in groups.items():
        unique = list(dict.fromkeys(files))
        with tempfile.TemporaryDirectory(prefix="imagebot-history-") as tmp:
            git = gitops.clone(url, branch, Path(tmp) / "repo", env, depth=0, paths=unique)
            logs.append(git.run(["log", f"--format={markers.log_format}", "--", *unique], "log"))
    return logs


def read_history(
    config: Config,
    package: str,
    env: Mapping[str, str],
    *,
    deployments: bool = True,
    ecosystem: str = PYTHON,
) -> History:
    """`imagebot history [--r] PACKAGE`: one log of this repository, one per GitOps
    repository."""
    from imagebot.errors import GitOpsError

    requirements_dir = config.requirements_dir.relative_to(config.root).as_posix()
    markers = Markers.fresh()
    try:
        log = repo_log(config.root, requirements_dir, ecosystem, markers)
        logs = promotion_logs(config, env, markers) if deployments else []
    except UnicodeDecodeError:
        raise GitOpsError(
            "git log printed text that is not UTF-8 (a file or commit message in the history)",
            "imagebot reads only UTF-8 requirement files; find the commit with "
            "`git log -p -- requirements environments | iconv -f utf-8 >/dev/null`",
        ) from None
    return history(package, log, logs, requirements_dir, ecosystem, markers)
