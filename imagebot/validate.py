"""PURE: one rule per kind of value that comes from a file a pull request can change.

Every function returns the value when it is valid and raises `InvalidValue` otherwise; the
caller turns that into its own Problem or error with the file, line or key. Patterns are ASCII
only and match the whole string (`re.fullmatch`): `$` would accept a trailing newline, and
case-insensitive Unicode matching would let U+017F (long s) or U+0131 (dotless i) pass as `s` or `i`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import urlsplit

from imagebot.redaction import redact

MAX_NAME = 200  # package names, extras
MAX_VERSION = 100
MAX_TEXT = 500  # one line of free text: a reason, a description
MAX_URL = 2048
MAX_IMAGE_NAME = 255  # the distribution spec's limit on a repository name, domain included
MAX_PATH = 1024


class InvalidValue(ValueError):
    """A value that breaks its rule; `message` says what, `hint` how to write it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _shown(value: object) -> str:
    """The value for an error message: repr (escapes newlines) and cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(str(value))} characters)"


def _string(value: object, what: str, limit: int, example: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{what} must be a string, got {_shown(value)}", f"e.g. {example}")
    if len(value) > limit:
        raise InvalidValue(
            f"{what} is {len(value)} characters long (at most {limit})", f"e.g. {example}"
        )
    return value


def _match(pattern: re.Pattern[str], value: object, what: str, limit: int, hint: str) -> str:
    text = _string(value, what, limit, hint)
    if not pattern.fullmatch(text):
        raise InvalidValue(f"{_shown(text)} is not a valid {what}", hint)
    return text


# PEP 508 names and extras (the same grammar): ASCII letters and digits, with . _ - inside.
_PY_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?", re.ASCII)
# PEP 440 (the spec's permissive form, as `packaging` parses it), no surrounding whitespace.
_PY_VERSION = re.compile(
    r"""
    [vV]?
    (?:[0-9]+!)?                                    # epoch
    [0-9]+(?:\.[0-9]+)*                             # release
    (?:[-_.]?(?:alpha|a|beta|b|preview|pre|c|rc)[-_.]?[0-9]*)?
    (?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?
    (?:[-_.]?dev[-_.]?[0-9]*)?
    (?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?             # local version
    """,
    re.ASCII | re.IGNORECASE | re.VERBOSE,
)
# Debian policy 5.6.1 / 5.6.12; a trailing '*' pins an upstream prefix (an apt glob).
_APT_NAME = re.compile(r"[a-z0-9][a-z0-9.+-]+", re.ASCII)
_APT_VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*\*?", re.ASCII)
# "Writing R Extensions" 1.1.1: letters, digits and '.', a letter first, no '.' last;
# versions are at least two non-negative integers separated by '.' or '-'.
_R_NAME = re.compile(r"[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]", re.ASCII)
_R_VERSION = re.compile(r"[0-9]+(?:[.-][0-9]+)+", re.ASCII)


def python_name(value: object) -> str:
    return _match(_PY_NAME, value, "Python project name", MAX_NAME, "use the name as on PyPI")


def python_extra(value: object) -> str:
    return _match(_PY_NAME, value, "Python extra", MAX_NAME, 'e.g. extras = ["excel"]')


def python_version(value: object) -> str:
    return _match(
        _PY_VERSION,
        value,
        "exact Python version",
        MAX_VERSION,
        'write the exact version, e.g. version = "2.3.4" (no ranges, no ==)',
    )


def apt_name(value: object) -> str:
    return _match(
        _APT_NAME, value, "Debian package name", MAX_NAME, "lowercase letters, digits and . + -"
    )


def apt_version(value: object) -> str:
    return _match(
        _APT_VERSION,
        value,
        "Debian version",
        MAX_VERSION,
        'use the version apt-cache policy shows, or an upstream prefix like "15.14*"',
    )


def r_name(value: object) -> str:
    return _match(
        _R_NAME, value, "R package name", MAX_NAME, "use the name as on CRAN, e.g. data.table"
    )


def r_version(value: object) -> str:
    return _match(
        _R_VERSION,
        value,
        "R version",
        MAX_VERSION,
        'write it as packageVersion() prints it, e.g. "1.14.8"',
    )


_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", re.ASCII)


def python_module(value: object) -> str:
    """A dotted Python module name (what `import` takes), ASCII only."""
    return _match(_MODULE, value, "Python module name", MAX_NAME, 'e.g. import = "sklearn"')


def one_line(value: object, limit: int = MAX_TEXT) -> str:
    """Printable text on one line: no control, format, separator or private-use characters."""
    text = _string(value, "text", limit, '"one line of plain text"')
    # str.isprintable is False for Cc, Cf, Cs, Co, Cn, Zl, Zp and every space but ' '.
    if not text.isprintable():
        bad = next(c for c in text if not c.isprintable())
        raise InvalidValue(
            f"{_shown(text)} contains {bad!r}, which is not printable text on one line",
            "write one line of plain text, without newlines, tabs or control characters",
        )
    return text


# RFC 3986 characters, less the ones a shell or a Dockerfile gives a meaning to ($ ' ( ) `).
_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!&*+,;=%-]+", re.ASCII)


def url(value: object, schemes: Iterable[str] = ("https", "http")) -> str:
    """An absolute URL with one of `schemes` and a host, without userinfo or whitespace."""
    allowed = tuple(schemes)
    hint = f"e.g. {allowed[0]}://host.example/path; credentials come from the environment"
    text = _string(value, "URL", MAX_URL, hint)
    shown = _url_shown(text)
    if not _URL_CHARS.fullmatch(text):
        bad = next((c for c in text if not _URL_CHARS.fullmatch(c)), "")
        raise InvalidValue(f"URL {shown} contains {bad!r}", f"{hint}; percent-encode it")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as exc:
        raise InvalidValue(f"URL {shown} is not valid: {redact(str(exc))}", hint) from None
    if parts.scheme.lower() not in allowed:
        raise InvalidValue(
            f"URL {shown} must start with {' or '.join(f'{s}://' for s in allowed)}", hint
        )
    if "@" in parts.netloc:
        raise InvalidValue(f"URL {shown} must not contain user:password@", hint)
    if not parts.hostname:
        raise InvalidValue(f"URL {shown} has no host", hint)
    return text


def _url_shown(text: str) -> str:
    """A refused URL for its message: userinfo redacted, and no query or fragment, which may
    hold a token, so that no credential is echoed."""
    shown = redact(text)
    for mark in "?#":
        shown = shown.partition(mark)[0]
    return _shown(shown)


# The distribution reference grammar (distribution/reference), repository in lower case.
_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
_IMAGE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::{_TAG})?(?:@{_DIGEST})?",
    re.ASCII,
)


def image_reference(value: object) -> str:
    """`[host[:port]/]path[:tag][@digest]`, as docker and OCI registries accept it."""
    hint = "e.g. docker.io/library/python:3.11-slim-bookworm (repository in lower case)"
    text = _string(value, "image reference", MAX_IMAGE_NAME + 200, hint)
    match = _IMAGE.fullmatch(text)
    if match is None:
        raise InvalidValue(f"{_shown(text)} is not a valid image reference", hint)
    if len(match.group("name")) > MAX_IMAGE_NAME:
        raise InvalidValue(
            f"image name {_shown(match.group('name'))} is longer than {MAX_IMAGE_NAME}", hint
        )
    return text


def repo_path(value: object, root: Path, reserved: Iterable[str | Path] = ()) -> Path:
    """A relative path that stays inside `root` and is not, and is not under, a reserved path.

    Returns the path as written (relative to `root`). `reserved` names imagebot's own inputs
    (imagebot.toml, the requirements directory, ...), relative to `root` or absolute.
    """
    hint = "write a path relative to the repository root, e.g. jupyter/Dockerfile"
    text = one_line(value, MAX_PATH) if isinstance(value, str) else _string(value, "path", 0, hint)
    if not text.strip():
        raise InvalidValue("path is empty", hint)
    if "\\" in text or PurePosixPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise InvalidValue(f"path {_shown(text)} is not relative to the repository", hint)
    base = root.resolve()
    target = (base / text).resolve()
    if target != base and base not in target.parents:
        raise InvalidValue(f"path {_shown(text)} leads outside the repository", hint)
    for name in reserved:
        kept = (base / name).resolve()
        if target == kept or kept in target.parents:
            raise InvalidValue(
                f"path {_shown(text)} is imagebot's own input {Path(name).as_posix()}",
                f"{hint}; never a set, a lock or imagebot.toml",
            )
    return Path(text)


# Bucket names: lower-case letters, digits, dots, dashes, underscores; 3-63 characters.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", re.ASCII)
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9._~+-]+", re.ASCII)
DESTINATION_HINT = 'write publish = "gs://BUCKET/PREFIX" or a directory path'


def publish_destination(value: object) -> str:
    """Where an index is published: `gs://bucket[/prefix]` or a directory path.

    Refused: userinfo or a port (credentials come from the environment; the value is then not
    repeated, it may hold a password), other schemes, `.`, `..` and empty segments,
    backslashes, anything but one line of printable text.
    """
    text = one_line(value, MAX_PATH)
    if not text or text != text.strip():
        raise InvalidValue(f"{_shown(text)} is empty or has outer spaces", DESTINATION_HINT)
    if "://" in text:
        scheme = text.split("://", 1)[0][:20]
        if scheme != "gs":
            raise InvalidValue(
                f"{scheme}:// is not a destination: only gs:// buckets and directories are",
                DESTINATION_HINT,
            )
        bucket, _, prefix = text[len("gs://") :].partition("/")
        if "@" in bucket or ":" in bucket:
            raise InvalidValue(
                "a gs:// destination holds no user:password@ or port",
                "credentials come from Application Default Credentials; " + DESTINATION_HINT,
            )
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise InvalidValue(f"{_shown(bucket)} is not a valid bucket name", DESTINATION_HINT)
        segments = prefix.rstrip("/").split("/") if prefix.rstrip("/") else []
        for segment in segments:
            if segment in (".", "..") or not _PREFIX_SEGMENT.fullmatch(segment):
                raise InvalidValue(
                    f"the bucket prefix's segment {_shown(segment)} is not allowed",
                    DESTINATION_HINT,
                )
        return text
    if "\\" in text or any(segment in (".", "..") for segment in text.split("/")):
        raise InvalidValue(
            f"{_shown(text)}: a directory path without . or .. segments is required",
            DESTINATION_HINT,
        )
    return text
