"""Writing files that users and git read: all or nothing, never half-written.

Stdlib only: `render --check`'s fast path imports this.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from imagebot.errors import ImagebotError


class Unreadable(Exception):
    """An input file that cannot be read as text; `reason` says why, for a one-line error."""

    def __init__(self, path: Path, reason: str, *, missing: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.missing = missing


def read_text(path: Path) -> str:
    """The UTF-8 text of an input file, line ends as they are (CRLF stays CRLF).

    Raises Unreadable (never OSError or UnicodeDecodeError) so that callers can report the
    file with their own exit code.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Unreadable(path, "file not found", missing=True) from None
    except IsADirectoryError:
        raise Unreadable(path, "is a directory, not a file") from None
    except OSError as exc:
        raise Unreadable(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(path, f"is not UTF-8 text (byte {exc.start})") from None


def write_atomically(
    files: Mapping[Path, str], *, mode: int | None = None, inside: Path | None = None
) -> None:
    """Write every file to a temp file beside it, then rename them all over their targets.

    A file keeps its permission bits (git records the executable bit) unless `mode` is given;
    a new one gets `mode` or 0644. A symlink's target is replaced, not the link; with `inside`
    (the repository, for the files imagebot generates there), a target outside it is refused
    before anything is written: a pull request could make a lock a link to any file. On
    failure no target has changed and no temp file is left behind; the error names the file
    (exit 1).
    """
    import tempfile  # here, not at the top: the read-only checks never write

    if inside is not None:
        root = inside.resolve()
        for path in files:
            if not path.resolve().is_relative_to(root):
                raise ImagebotError(
                    f"{path}: a symlink to {path.resolve()}, outside {root}; refusing to write "
                    "through it",
                    f"make {path.name} a regular file (remove the link), then run again",
                )
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            target = path.resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            keep = target.stat().st_mode & 0o777 if target.exists() else 0o644
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            staged.append((tmp, target))
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            os.chmod(tmp, keep if mode is None else mode)  # mkstemp makes 0600 files
        for tmp, target in staged:
            os.replace(tmp, target)
    except OSError as exc:
        raise ImagebotError(
            f"cannot write {exc.filename or 'a file'}: {exc.strerror or exc}",
            "check the permissions of the directory and the file",
        ) from None
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
