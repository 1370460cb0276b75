"""The one error hierarchy. Each class owns a documented exit code (README, "Exit codes").

An ImagebotError is an *expected* failure: bad input, an unreachable service, a stale file.
The CLI prints it as one `error:` line plus a `hint:` line and exits with `exit_code`.
Anything else is a bug in imagebot and exits 70 with a traceback, except what the boundary
(imagebot.main) knows to be the user's environment: an OSError on a named path and an input
file that is not UTF-8 (exit 1), and `Interrupted` (SIGINT 130, SIGTERM 143).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ImagebotError(Exception):
    """Base for every expected failure. `message` says what happened, `hint` how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def detail_lines(self) -> list[str]:
        """Extra lines printed before the `error:` line (e.g. one per problem)."""
        return []


class UsageError(ImagebotError):
    exit_code = 2


class ConfigError(ImagebotError):
    exit_code = 3


@dataclass(frozen=True)
class Problem:
    """One finding in an input file, reported as `file:line: message (hint: ...)`."""

    file: str
    line: int
    message: str
    hint: str = ""

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        tail = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}: {self.message}{tail}"


class ProblemsError(ImagebotError):
    """Several problems found at once; all are reported, then one summary `error:` line."""

    def __init__(self, problems: Sequence[Problem], what: str, hint: str) -> None:
        count = len(problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{count} {noun} in {what}", hint)
        self.problems = tuple(problems)

    def detail_lines(self) -> list[str]:
        return [p.render() for p in self.problems]


class RequirementsError(ProblemsError):
    exit_code = 4


class StaleError(ImagebotError):
    """A generated file (lock, Dockerfile) differs from what imagebot would write now."""

    exit_code = 5

    def __init__(self, message: str, hint: str = "", diff: str = "") -> None:
        super().__init__(message, hint)
        self.diff = diff


class ResolutionError(ImagebotError):
    exit_code = 6


class EngineError(ImagebotError):
    """The Docker engine is unreachable, or a build or run failed."""

    exit_code = 7


class ImageTestError(ProblemsError):
    exit_code = 8


class RegistryAuthError(ImagebotError):
    """401/403 from the registry: never retried."""

    exit_code = 9


class RegistryError(ImagebotError):
    """The registry is unreachable, a push failed after retries, or a ref does not exist."""

    exit_code = 10


class TransientError(ImagebotError):
    """A fault worth retrying (5xx, 429, a refused or reset connection, a timeout).

    The one error the retry policy (`imagebot.retry`) retries. Adapters turn it into their own
    error (RegistryError, PackageIndexError) once retries are used up, so it never reaches
    the boundary on its own; if it does, it exits 1.
    """


class YamlEditError(ImagebotError):
    exit_code = 11


class GitOpsError(ImagebotError):
    exit_code = 12


class PackageIndexError(ImagebotError):
    exit_code = 13


class EnvFileError(ProblemsError):
    exit_code = 14


class VulnerabilityError(ImagebotError):
    """`imagebot audit` found a known vulnerability that is not waived, or an expired waiver."""

    exit_code = 15


class AdvisorySourceError(ImagebotError):
    """The advisory source (OSV API or directory) cannot be read: nothing was audited."""


INTERNAL_ERROR_EXIT = 70
INTERRUPTED_EXIT = 130  # 128 + SIGINT
TERMINATED_EXIT = 143  # 128 + SIGTERM


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (imagebot.main installs the handler that raises it).

    A KeyboardInterrupt, so it passes every `except Exception` and each `finally` and context
    manager on the way up runs: temporary directories, the docker config that holds the
    registry token. The boundary exits 128 + `signum`.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
