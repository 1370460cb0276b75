"""ADAPTER: the GitOps repository through the git CLI, and the push-and-retry loop.

The git CLI, not GitPython: every operation here is one porcelain command with flags GitPython
would only pass through (shallow, sparse, `-c`, a child environment for credentials), the CLI
speaks every transport and credential helper a pipeline agent has, and importing GitPython
costs 120-190 ms and a `git version` run before any work starts.

Credentials come from the environment and reach git only through `GIT_CONFIG_*` variables of
the child process: never in argv, never in the remote URL and never in a clone's .git/config.
`IMAGEBOT_GIT_TOKEN` (with `IMAGEBOT_GIT_USERNAME`, default `x-access-token`) becomes an
`http.extraHeader: Authorization: Basic ...`; `IMAGEBOT_GIT_AUTH_HEADER` is used verbatim (Azure
Pipelines: `Authorization: Bearer $(System.AccessToken)`). A remote URL with a password in it is
refused, and every message that leaves this module has URL userinfo redacted.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from imagebot import validate
from imagebot.errors import ConfigError, GitOpsError, TransientError
from imagebot.files import write_atomically
from imagebot.redaction import redact

TOKEN_ENV = "IMAGEBOT_GIT_TOKEN"
USERNAME_ENV = "IMAGEBOT_GIT_USERNAME"
HEADER_ENV = "IMAGEBOT_GIT_AUTH_HEADER"
GIT_TIMEOUT_S = 300
PUSH_ATTEMPTS = 12
PUSH_BACKOFF_S = 0.05  # first wait after a lost race; doubles each time

_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")


def remote_url(repo: str, root: Path, key: str = "repo") -> str:
    """A clone URL for `repo`: URLs and scp-style remotes as they are, paths as file:// URLs.

    Relative paths resolve against `root` (the directory of imagebot.toml). Local paths become
    file:// so that `--depth 1` is honoured (git ignores it for plain-path clones). A URL with
    userinfo is refused (ConfigError naming `key`): credentials come from the environment. The
    one exception is an ssh user name without a password (`ssh://git@host/...`, `git@host:...`).
    """
    _refuse_userinfo(repo, key)
    if "://" in repo or _SCP_LIKE.match(repo):
        return repo
    path = Path(repo).expanduser()
    return (path if path.is_absolute() else root / path).resolve().as_uri()


def _refuse_userinfo(repo: str, key: str) -> None:
    if not repo.isprintable():
        raise ConfigError(
            f"imagebot.toml: {key}: {redact(repo)[:80]!r} is not one line of printable text",
            "write the GitOps repository's URL or path",
        )
    scheme, sep, rest = repo.partition("://")
    if sep:
        authority = rest.split("/", 1)[0]
        if "@" not in authority:
            return
        if scheme.lower() in ("ssh", "git+ssh") and ":" not in authority.rsplit("@", 1)[0]:
            return  # an ssh user name is no secret
    elif "@" not in repo or ":" not in repo.split("@", 1)[0]:
        return  # a path, or scp-style user@host:path
    shown = redact(repo) if sep else "***@" + repo.rsplit("@", 1)[1]
    raise ConfigError(
        f"imagebot.toml: {key}: {shown} has credentials in its URL",
        f"remove user:password@ from the URL; set {TOKEN_ENV} (or {HEADER_ENV}) instead",
    )


def credential_env(env: Mapping[str, str]) -> dict[str, str]:
    """Child-process variables that give git the pipeline's credentials, and never prompt.

    The header is appended after any `GIT_CONFIG_*` entries the caller's environment already
    has; a caller's own GIT_ASKPASS or credential helper keeps working.
    """
    extra: dict[str, str] = {"GIT_TERMINAL_PROMPT": "0"}
    header = env.get(HEADER_ENV, "")
    token = env.get(TOKEN_ENV, "")
    if token and not header:
        user = env.get(USERNAME_ENV, "") or "x-access-token"
        basic = base64.b64encode(f"{user}:{token}".encode()).decode()
        header = f"Authorization: Basic {basic}"
    if header:
        count = env.get("GIT_CONFIG_COUNT") or os.environ.get("GIT_CONFIG_COUNT") or "0"
        index = int(count) if count.isdigit() else 0
        extra.update(
            {
                "GIT_CONFIG_COUNT": str(index + 1),
                f"GIT_CONFIG_KEY_{index}": "http.extraHeader",
                f"GIT_CONFIG_VALUE_{index}": header,
            }
        )
    return extra


class PushOutcome(Enum):
    PUSHED = "pushed"
    STALE = "stale"  # non-fast-forward: someone pushed first; fetch, re-apply, retry


_STALE = ("[rejected]", "non-fast-forward", "fetch first", "stale info")
# Two pushes racing into the same ref: the loser's ref update fails on the server.
_LOST_RACE = ("cannot lock ref", "failed to update ref", "incorrect old value")
_AUTH = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "permission denied",
    "403",
    "401",
    "terminal prompts disabled",
)
_UNREACHABLE = (
    "could not resolve host",
    "connection refused",
    "does not appear to be a git repository",
    "repository not found",
    "not found",
    "could not read from remote",
    "timed out",
    "unable to access",
)


def _detail(output: str, returncode: int) -> str:
    """The last lines git printed, on one line; never empty."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return redact(" ".join(lines[-3:])) or f"git exited with status {returncode}"


def _classify(stderr: str, action: str, url: str, returncode: int = 1) -> GitOpsError:
    text = stderr.lower()
    detail = _detail(stderr, returncode)
    where = redact(url)
    if "remote rejected" in text or "hook declined" in text:
        return GitOpsError(
            f"{action} to {where} was rejected by the remote: {detail}",
            "a server-side rule (protected branch, hook) refused it; nothing was changed",
        )
    if any(marker in text for marker in _AUTH):
        return GitOpsError(
            f"{action} {where}: authentication failed: {detail}",
            f"set {TOKEN_ENV} (or {HEADER_ENV}) to a token with write access",
        )
    if any(marker in text for marker in _UNREACHABLE):
        return GitOpsError(
            f"{action} {where}: remote unreachable: {detail}",
            "check the environment's repo URL in imagebot.toml and the network",
        )
    return GitOpsError(
        f"{action} {where} failed: {detail}", "run the git command by hand to see why"
    )


@dataclass(frozen=True)
class Git:
    """git in one working directory, with the credential variables applied."""

    cwd: Path
    url: str  # the remote's URL, for messages only (redacted there)
    env: Mapping[str, str]

    def run(self, args: Sequence[str], action: str) -> str:
        """stdout; a classified GitOpsError when git fails (`action` names it)."""
        proc = run_git(args, self.cwd, self.env)
        if proc.returncode != 0:
            raise _classify(proc.stderr + proc.stdout, action, self.url, proc.returncode)
        return proc.stdout

    def try_run(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return run_git(args, self.cwd, self.env)


def run_git(
    args: Sequence[str], cwd: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    child_env = {**os.environ, **env, "LC_ALL": "C"}
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise GitOpsError("git is not installed", "install git (apt-get install git)") from None
    except subprocess.TimeoutExpired:
        raise GitOpsError(
            f"git {args[0]} timed out after {GIT_TIMEOUT_S}s", "check the network and the remote"
        ) from None


def clone(
    url: str,
    branch: str,
    dest: Path,
    env: Mapping[str, str],
    *,
    depth: int = 1,
    paths: Sequence[str] = (),
) -> Git:
    """Shallow, single-branch clone of `branch` into `dest` (which must not exist).

    With `paths`, only those files are checked out (sparse checkout): a GitOps repo can hold
    thousands of files, and writing them all out costs more than the whole promotion.
    """
    git = Git(dest.parent, url, credential_env(env))
    args = ["clone", "--quiet", "--no-tags", "--single-branch", "--branch", branch]
    if depth:
        args += ["--depth", str(depth)]
    if paths:
        args.append("--no-checkout")
    proc = git.try_run([*args, "--", url, str(dest)])
    if proc.returncode != 0:
        if "remote branch" in proc.stderr and "not found" in proc.stderr:
            raise GitOpsError(
                f"branch {branch!r} does not exist in {redact(url)}",
                "check the environment's branch in imagebot.toml",
            )
        raise _classify(proc.stderr, "clone", url, proc.returncode)
    cloned = Git(dest, url, git.env)
    if paths:
        patterns = ["/" + path.lstrip("/") for path in paths]
        cloned.run(["sparse-checkout", "set", "--no-cone", "--", *patterns], "sparse-checkout")
        cloned.run(["checkout", "--quiet", branch], "checkout")
    return cloned


def head(git: Git) -> str:
    return git.run(["rev-parse", "HEAD"], "rev-parse").strip()


def commit_all(git: Git, paths: Sequence[str], message: str, author: str) -> str:
    """Commit `paths` with `author` ("Name <email>") as author and committer; the new sha."""
    match = re.fullmatch(r"\s*(.*?)\s*<([^>]*)>\s*", author)
    name, email = (match.group(1), match.group(2)) if match else (author, "")
    ident = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
    local = Git(git.cwd, git.url, {**git.env, **ident})
    local.run(["add", "--", *paths], "add")
    proc = local.try_run(
        ["-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "-m", message]
    )
    if proc.returncode != 0:
        raise GitOpsError(
            f"git commit failed: {_detail(proc.stderr + proc.stdout, proc.returncode)}",
            "check the clone's state",
        )
    return head(git)


def push(git: Git, branch: str, *, new_branch: bool = False) -> PushOutcome:
    """Push HEAD to `branch`. STALE when someone pushed first (non-fast-forward)."""
    args = ["push", "--quiet", "--porcelain", "origin", f"HEAD:refs/heads/{branch}"]
    proc = git.try_run(args)
    if proc.returncode == 0:
        return PushOutcome.PUSHED
    output = proc.stdout + proc.stderr
    lowered = output.lower()
    lost_race = any(m in lowered for m in _LOST_RACE)
    if lost_race or ("remote rejected" not in lowered and any(m in lowered for m in _STALE)):
        if new_branch:
            raise GitOpsError(
                f"branch {branch!r} already exists in {redact(git.url)}",
                "choose another --branch name or delete the old branch",
            )
        return PushOutcome.STALE
    raise _classify(output, "push", git.url, proc.returncode)


def fetch_reset(git: Git, branch: str) -> None:
    """Make the clone equal to the remote branch's tip again (after a rejected push)."""
    git.run(
        ["fetch", "--quiet", "--no-tags", "--depth", "1", "origin", f"+refs/heads/{branch}:"],
        "fetch",
    )
    git.run(["reset", "--quiet", "--hard", "FETCH_HEAD"], "reset")


def file_at(git: Git, rev: str, path: str) -> str | None:
    """The file's text at `rev`, or None when it does not exist there."""
    proc = git.try_run(["show", f"{rev}:{path}"])
    return proc.stdout if proc.returncode == 0 else None


def file_commits(git: Git, path: str) -> list[str]:
    """Commits that touched `path`, newest first, within the clone's (possibly shallow) history."""
    out = git.run(["log", "--format=%H", "--", path], "log")
    return out.split()


def deepen(git: Git, branch: str, by: int) -> bool:
    """Fetch `by` more commits of history; False when the clone already has all of it."""
    if git.run(["rev-parse", "--is-shallow-repository"], "rev-parse").strip() != "true":
        return False
    git.run(
        ["fetch", "--quiet", "--no-tags", f"--deepen={by}", "origin", f"refs/heads/{branch}"],
        "fetch",
    )
    return True


def source_revision(root: Path, env: Mapping[str, str]) -> str:
    """The imagebot repository's revision: BUILD_SOURCEVERSION in pipelines, else git HEAD,
    else "unknown" (no git, not a checkout): it labels things, it never stops them."""
    if env.get("BUILD_SOURCEVERSION"):
        return env["BUILD_SOURCEVERSION"]
    try:
        proc = run_git(["rev-parse", "HEAD"], root, {})
    except GitOpsError:
        return "unknown"
    revision = proc.stdout.strip()
    return revision if proc.returncode == 0 and revision else "unknown"


def worktree_file(git: Git, path: str) -> Path:
    """`path` in the clone: refused unless it stays inside the clone with no symlink on the way.

    A symlink committed to the GitOps repo could point anywhere on the agent; imagebot reads
    and writes regular files of the clone only.
    """
    full = git.cwd / path
    for part in (*reversed(full.parents), full):  # outermost first
        if git.cwd in part.parents and part.is_symlink():
            shown = part.relative_to(git.cwd).as_posix()
            raise GitOpsError(
                f"{shown} is a symlink in {redact(git.url)}; imagebot edits regular files only",
                f"point the environment's file at the real file, not at the link {shown}",
            )
    try:
        validate.repo_path(path, git.cwd)
    except validate.InvalidValue as exc:
        raise GitOpsError(f"{path!r} in {redact(git.url)}: {exc.message}", exc.hint) from None
    return full


@dataclass(frozen=True)
class Change:
    """One commit to make: new texts by path (relative to the clone), message, author."""

    files: Mapping[str, str]
    message: str
    author: str


@dataclass(frozen=True)
class Landed:
    """What the push loop did: the commit pushed (None: nothing to change), attempts made."""

    commit: str | None
    attempts: int


def land(
    git: Git,
    branch: str,
    change: Callable[[], Change | None],
    *,
    new_branch: bool = False,
    attempts: int = PUSH_ATTEMPTS,
    before_push: Callable[[Path, int], None] | None = None,
) -> Landed:
    """Commit what `change()` returns and push it to `branch`. A push that lost a race is a
    TransientError for the one retry policy: fetch, reset, ask `change()` again, push again.

    `change()` reads the clone as it is now; None means nothing is left to change.
    `before_push(clone_dir, attempt)` runs right before each push (tests race it there).
    """
    from imagebot.retry import retry_transient

    tries = 0

    def attempt() -> Landed:
        nonlocal tries
        tries += 1
        if tries > 1:
            fetch_reset(git, branch)  # only a push to an existing branch can lose a race
        wanted = change()
        if wanted is None:
            return Landed(None, tries)
        write_atomically({worktree_file(git, path): text for path, text in wanted.files.items()})
        sha = commit_all(git, list(wanted.files), wanted.message, wanted.author)
        if before_push is not None:
            before_push(git.cwd, tries)
        if push(git, branch, new_branch=new_branch) is PushOutcome.STALE:
            raise TransientError(f"push to {branch} lost a race")
        return Landed(sha, tries)

    try:
        return retry_transient(
            attempt, what=f"push to {branch}", attempts=attempts, backoff=PUSH_BACKOFF_S
        )
    except TransientError:
        raise GitOpsError(
            f"push to {branch} of {redact(git.url)} was rejected {attempts} times: "
            "others keep pushing first",
            "run the promotion again; nothing was pushed",
        ) from None
