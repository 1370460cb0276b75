"""`imagebot history PACKAGE`: when each version entered or left each set, index-only.toml,
each registered environment, the index, and each deployed image.

Two git commands in all, whatever the length of the history:
  - one `git log -p` over the imagebot repository's locks, index-only.toml and environments/:
    the `+name==version` / `-name==version` lines of each commit's diff say what entered or
    left which lock or environment file (index-only.toml lines are `name = { version = ... }`);
  - one `git log` over the GitOps files of every environment sharing a repository (a full
    clone with only those files checked out): each promotion commit's message carries the
    package diff (`~ numpy 2.4.6 -> 2.5.0` under `python:`), `promote_plan.commit_message`'s
    format.

The index serves every version some lock, index-only entry or registered environment pins,
so its entries and exits are derived from the first list without another command.
Parsing is pure (`parse_repo_log`, `parse_promotion_log`, `index_events`); `read_history`
runs git through the adapter in `imagebot.gitops`.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imagebot.promote_plan import IMPACT_HEADING
from imagebot.requirements import normalize

if TYPE_CHECKING:
    from imagebot.config import Config

RECORD = "\x1e"  # between commits in `git log --format`
FIELD = "\x1f"  # between a commit's fields
LOG_FORMAT = f"{RECORD}%H{FIELD}%cI{FIELD}%s{FIELD}%b{FIELD}"
ENTERED, LEFT = "entered", "left"
INDEX = "index"
_LOCK_LINE = re.compile(r"([+-])([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\#]+)")
_TOML_LINE = re.compile(
    r"""([+-])\s*(?:"([A-Za-z0-9][A-Za-z0-9._-]*)(?:==[^"]*)?"|([A-Za-z0-9][A-Za-z0-9._-]*))"""
    r"""\s*=\s*\{[^}]*?version\s*=\s*"([^"]+)\""""
)
_TOML_KEYED = re.compile(r"""([+-])\s*"([A-Za-z0-9][A-Za-z0-9._-]*)==([^"]+)"\s*=""")
_DIFF_FILE = re.compile(r"diff --git a/(\S+) b/(\S+)")
_SUBJECT = re.compile(r"imagebot: (\w+) (.+?) in (\S+) \[skip ci\]")
_PACKAGE_DIFF = re.compile(r"Package diff for (\S+):")
_CHANGE = re.compile(r"\s+([~+-]) (\S+) (\S+)(?: -> (\S+))?")


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
    package: str
    events: tuple[Event, ...]  # oldest first
    commits_read: int

    def to_json(self) -> dict[str, object]:
        return {
            "package": self.package,
            "events": [e.to_json() for e in self.events],
            "commits_read": self.commits_read,
        }

    def lines(self) -> list[str]:
        if not self.events:
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


def split_log(output: str) -> list[Commit]:
    """Commits of `git log --format=LOG_FORMAT [-p]` output, as git printed them (newest first)."""
    commits: list[Commit] = []
    for record in output.split(RECORD)[1:]:
        parts = record.split(FIELD, 4)
        if len(parts) < 5:
            continue
        sha, date, subject, body, patch = parts
        commits.append(Commit(sha, date, subject, body, patch))
    return commits


def place_of(path: str, requirements_dir: str) -> str | None:
    """What a changed file is: "set NAME" for a lock, "index-only", "environment TEAM/NAME"."""
    prefix = requirements_dir.rstrip("/") + "/"
    if path.startswith(prefix) and path.endswith(".lock") and "/" not in path[len(prefix) :]:
        return f"set {path[len(prefix) : -len('.lock')]}"
    if path == f"{prefix}index-only.toml":
        return "index-only"
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "environments" and parts[2].endswith(".txt"):
        return f"environment {parts[1]}/{parts[2][: -len('.txt')]}"
    return None


def _line_pin(place: str, line: str) -> tuple[str, str, str] | None:
    """(sign, normalised name, version) of one `+`/`-` diff line, or None."""
    if place == "index-only":
        keyed = _TOML_KEYED.match(line)
        if keyed:
            return keyed.group(1), normalize(keyed.group(2)), keyed.group(3)
        match = _TOML_LINE.match(line)
        if match:
            return match.group(1), normalize(match.group(2) or match.group(3)), match.group(4)
        return None
    match = _LOCK_LINE.match(line)
    return (match.group(1), normalize(match.group(2)), match.group(3)) if match else None


def parse_repo_log(
    output: str, package: str, requirements_dir: str = "requirements"
) -> list[Event]:
    """Events for `package` from one `git log -p` of the locks, index-only.toml and environments."""
    key = normalize(package)
    events: list[Event] = []
    for commit in reversed(split_log(output)):  # oldest first
        place: str | None = None
        changes: dict[tuple[str, str], int] = {}
        for line in commit.patch.splitlines():
            header = _DIFF_FILE.match(line)
            if header:
                place = place_of(header.group(2), requirements_dir)
                continue
            if place is None or line.startswith(("+++", "---")):
                continue
            found = _line_pin(place, line)
            if found is None or found[1] != key:
                continue
            sign, _, version = found
            changes[(place, version)] = changes.get((place, version), 0) + (
                1 if sign == "+" else -1
            )
        for (where, version), delta in sorted(changes.items()):
            if delta:
                change = ENTERED if delta > 0 else LEFT
                events.append(
                    Event(commit.date, commit.sha, where, version, change, commit.subject)
                )
    return events


def index_events(events: Sequence[Event]) -> list[Event]:
    """When each version entered or left the index: while any set, index-only entry or
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
    output: str, package: str, files: Mapping[str, str] | None = None
) -> list[Event]:
    """Events for `package` from one `git log` of GitOps files: each imagebot promotion or
    rollback commit's package diff (python section) says which version each deployed image
    gained or lost. `files` is unused by the parser (the subject names the environment)."""
    key = normalize(package)
    events: list[Event] = []
    for commit in reversed(split_log(output)):
        subject = _SUBJECT.fullmatch(commit.subject.strip())
        if subject is None:
            continue
        environment = subject.group(3)
        image, ecosystem = "", ""
        for line in commit.body.splitlines():
            if (diff := _PACKAGE_DIFF.fullmatch(line.strip())) is not None:
                image, ecosystem = diff.group(1), ""
                continue
            if line.strip() == IMPACT_HEADING:  # who it may hurt: no diff lines until the next
                ecosystem = ""
                continue
            head = line.split(":", 1)[0]
            if not line.startswith(" ") and head in ("python", "r", "dpkg"):
                ecosystem = head
                continue
            change = _CHANGE.fullmatch(line)
            if not image or ecosystem != "python" or change is None:
                continue
            sign, name, first, second = change.groups()
            if normalize(name) != key:
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
) -> History:
    """PURE: the whole history of `package` from the logs read by `read_history`."""
    events = parse_repo_log(repo_log, package, requirements_dir)
    events += index_events(events)
    commits = len(split_log(repo_log))
    for log in promotion_logs:
        events += parse_promotion_log(log, package)
        commits += len(split_log(log))
    ordered = sorted(events, key=lambda e: (_instant(e.date), e.where == INDEX))  # stable
    return History(normalize(package), tuple(ordered), commits)


def _instant(date: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(date).timestamp()
    except ValueError:
        return 0.0


# --- reading git (the adapter) ---------------------------------------------------------------


def repo_log(root: Path, requirements_dir: str) -> str:
    """One `git log -p` of the repository's locks, index-only.toml and registered environments."""
    from imagebot.gitops import Git

    git = Git(root, str(root), {})
    pathspecs = [
        f":(glob){requirements_dir}/*.lock",
        f":(glob){requirements_dir}/index-only.toml",
        ":(glob)environments/*/*.txt",
    ]
    return git.run(
        [
            "log",
            f"--format={LOG_FORMAT}",
            "-p",
            "--no-color",
            "--unified=0",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--",
            *pathspecs,
        ],
        "log",
    )


def promotion_logs(config: Config, env: Mapping[str, str]) -> list[str]:
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
            logs.append(git.run(["log", f"--format={LOG_FORMAT}", "--", *unique], "log"))
    return logs


def read_history(
    config: Config, package: str, env: Mapping[str, str], *, deployments: bool = True
) -> History:
    """`imagebot history PACKAGE`: one log of this repository, one per GitOps repository."""
    requirements_dir = config.requirements_dir.relative_to(config.root).as_posix()
    log = repo_log(config.root, requirements_dir)
    logs = promotion_logs(config, env) if deployments else []
    return history(package, log, logs, requirements_dir)
