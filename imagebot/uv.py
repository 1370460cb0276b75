"""ADAPTER: uv, the one resolver imagebot runs (`uv pip compile`), for locks, the index and
environment scripts alike.

uv runs isolated from whatever repository or shell it is started in:
  - `--no-config`, so no `uv.toml` or `pyproject.toml [tool.uv]` is read;
  - a scratch working directory that holds only the input files imagebot wrote;
  - a child environment without `UV_*` and `PIP_*` variables (they can name indexes and
    configuration files), and exactly one `--index-url`: the upstream of
    `IMAGEBOT_UPSTREAM_INDEX` (default PyPI), or the vetted index for environment scripts;
  - input files of `name[extras]==version` lines only, every part validated, so no line can
    be read as an option. That includes the preferences: the pins of a layer's previous lock,
    written as uv's `--output-file` (which uv reads as the versions to keep where they still
    fit, unless `--upgrade`), so adding one entry does not float every transitive pin.

Standard library only at module level: `lock --check` imports this module; the `uv` package
is imported when uv runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from imagebot import validate
from imagebot.errors import ResolutionError

# `find_uv_bin` reads sysconfig, whose first read fills a global dict without a lock on Python
# 3.11: another thread can see it half-filled (`EXE` None) and fail. `index build` runs uv from
# several threads, so one thread at a time finds it.
_FINDING_UV = threading.Lock()

UPSTREAM_VARIABLE = "IMAGEBOT_UPSTREAM_INDEX"
CONSTRAINTS_FILE = "earlier-layers.txt"
PREFERENCES_FILE = "previous-lock.txt"
# The only variables of uv's family a child keeps: where its cache lives is not configuration.
_KEPT = frozenset({"UV_CACHE_DIR"})
_REQUIREMENT = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
    r"(?:\[[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:,[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)*\])?"
    r"==[A-Za-z0-9.+!_-]+",
    re.ASCII,
)


class ResolveFailed(Exception):
    """uv ran and said no; `output` is what it printed."""

    def __init__(self, output: str) -> None:
        super().__init__(output)
        self.output = output


class Resolver(Protocol):
    def compile(
        self,
        inputs: Mapping[str, str],
        constraints: str,
        python: str,
        platform: str,
        *,
        preferences: str = "",
    ) -> str:
        """Resolve `inputs` (file name -> requirement lines) under `constraints`
        (requirement lines) for one Python and platform, keeping the versions of `preferences`
        (requirement lines) where they still fit. Raises ResolveFailed."""
        ...


def requirement_line(name: str, version: str, extras: Iterable[str] = ()) -> str:
    """`name[extras]==version`, each part checked by its rule; raises validate.InvalidValue."""
    checked = [validate.python_extra(extra) for extra in extras]
    listed = f"[{','.join(checked)}]" if checked else ""
    return f"{validate.python_name(name)}{listed}=={validate.python_version(version)}"


def checked_lines(text: str, what: str) -> str:
    """`text` when every line is `name[extras]==version`; a ResolutionError otherwise."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not _REQUIREMENT.fullmatch(line):
            raise ResolutionError(
                f"refusing to pass line {number} of {what} to uv: {line[:80]!r} is not "
                "name[extras]==version",
                "requirement values are validated where they are read; report this as a bug",
            )
    return text


def upstream_index(env: Mapping[str, str]) -> str:
    """The one upstream index: `IMAGEBOT_UPSTREAM_INDEX`, or PyPI."""
    from imagebot.pypi import PYPI_SIMPLE_URL

    value = env.get(UPSTREAM_VARIABLE) or PYPI_SIMPLE_URL
    try:
        return validate.url(value, schemes=("https", "http", "file"))
    except validate.InvalidValue as exc:
        raise ResolutionError(f"{UPSTREAM_VARIABLE}: {exc.message}", exc.hint) from None


def isolated_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the variables uv or pip read configuration or indexes from."""
    kept = {
        key: value
        for key, value in env.items()
        if key in _KEPT or not key.upper().startswith(("UV_", "PIP_"))
    }
    kept.pop("VIRTUAL_ENV", None)
    return {**kept, "UV_NO_PROGRESS": "1", "NO_COLOR": "1"}


class Uv:
    """`uv pip compile`, isolated (see the module docstring), in a scratch directory."""

    def __init__(
        self,
        index_url: str | None = None,
        *,
        hashes: bool = True,
        annotate: bool = True,
        pylock: bool = False,
        cache: bool = True,
        timeout: float = 600,
        env: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if env is None else env
        self.index_url = index_url or upstream_index(environ)
        self.hashes, self.annotate, self.pylock, self.cache = hashes, annotate, pylock, cache
        self.timeout = timeout
        self.env = isolated_environment(environ)
        self.runs = 0

    def command(
        self,
        uv_bin: str,
        input_files: Iterable[str],
        python: str,
        platform: str,
        *,
        preferences: bool = False,
    ) -> list[str]:
        command = [uv_bin, "pip", "compile", *input_files, "--constraint", CONSTRAINTS_FILE]
        if preferences:  # uv keeps an existing output file's pins; the result replaces it
            command += ["--output-file", PREFERENCES_FILE]
        command += ["--no-config", "--index-url", self.index_url, "--only-binary", ":all:"]
        command += ["--python-version", python, "--python-platform", platform]
        command += ["--no-header", "--color", "never", "--quiet"]
        if self.hashes:
            command.append("--generate-hashes")
        if not self.annotate:
            command.append("--no-annotate")
        if self.pylock:
            command += ["--format", "pylock.toml"]
        if not self.cache:
            command.append("--no-cache")  # the vetted index changes under the same URLs
        return command

    def compile(
        self,
        inputs: Mapping[str, str],
        constraints: str,
        python: str,
        platform: str,
        *,
        preferences: str = "",
    ) -> str:
        from uv import find_uv_bin

        if preferences and self.pylock:
            raise ValueError(
                "preferences are requirement lines; pylock.toml output cannot hold them"
            )
        self.runs += 1
        with tempfile.TemporaryDirectory(prefix="imagebot-uv-") as scratch:
            for file_name, text in inputs.items():
                _scratch_file(scratch, file_name).write_text(
                    checked_lines(text, file_name), encoding="utf-8"
                )
            Path(scratch, CONSTRAINTS_FILE).write_text(
                checked_lines(constraints, CONSTRAINTS_FILE), encoding="utf-8"
            )
            output = Path(scratch, PREFERENCES_FILE)
            if preferences:
                output.write_text(checked_lines(preferences, PREFERENCES_FILE), encoding="utf-8")
            with _FINDING_UV:
                uv_bin = find_uv_bin()
            command = self.command(uv_bin, inputs, python, platform, preferences=bool(preferences))
            try:
                done = subprocess.run(
                    command,
                    cwd=scratch,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=self.timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise ResolveFailed(f"uv timed out after {self.timeout:.0f}s") from None
            if done.returncode != 0:
                raise ResolveFailed(done.stderr or done.stdout)
            # With --quiet uv prints nothing when it writes an output file.
            return output.read_text(encoding="utf-8") if preferences else done.stdout


def _scratch_file(scratch: str, file_name: str) -> Path:
    """An input file's path: a plain `NAME.in` inside the scratch directory."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.in", file_name, re.ASCII):
        raise ValueError(f"not an input file name: {file_name!r}")
    return Path(scratch, file_name)


# --- uv's explanation as one line --------------------------------------------------------------
# Pattern strings, compiled (and cached by `re`) only when a resolution fails.

_ANSI = r"\x1b\[[0-9;]*m"
_MARKER = r"\{[^}]*\}"


def explain(output: str) -> str:
    """uv's reasoning as one line: the text after `cause:` / `╰─▶`, without hints or the
    resolver's dump; '' when uv printed nothing."""
    text = re.sub(_ANSI, "", output)
    for marker in ("cause:", "\u2570\u2500\u25b6"):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    else:
        text = re.sub(r"^\s*(error|\u00d7):?\s*", "", text)
    kept = [line.strip() for line in text.splitlines() if not line.strip().startswith("hint:")]
    return re.sub(_MARKER, "", " ".join(line for line in kept if line))


def summarize(output: str, limit: int = 400) -> str:
    """`explain`, cut to `limit` characters, or a fallback when uv printed nothing."""
    return explain(output)[:limit] or "uv failed without a message"
