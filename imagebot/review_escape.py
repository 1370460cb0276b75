"""PURE: untrusted text made safe for the review's reports.

Every string in a report comes from a pull request or from an upstream index, so all of it is
treated as hostile: control characters go, Azure's command markers (`##vso[`, `##[`) are
neutralised in text, and Markdown's special characters are escaped.
"""

from __future__ import annotations

import re

_UNPRINTABLE = re.compile(r"[^\S ]|[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f]")


def clean(text: str, limit: int = 300) -> str:
    """One printable line: whitespace runs become one space, other invisibles go, cut to
    `limit` characters."""
    text = " ".join(_UNPRINTABLE.sub(" ", text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def plain(text: str, limit: int = 300) -> str:
    """`clean`, for a text report or log line: Azure's command markers neutralised too."""
    # Azure Pipelines reads `##vso[` and `##[` anywhere in a line of the log as a command.
    from imagebot.console import neutralise

    return neutralise(clean(text, limit))


# Characters that make emphasis, code, links, HTML, headings or table cells; everything the
# renderer writes puts untrusted text after a prefix, so line-start markers need no escape.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<|~#])")


def md(text: str, limit: int = 300) -> str:
    """`clean`, with Markdown's special characters escaped."""
    return _MD_SPECIAL.sub(r"\\\1", clean(text, limit))


def md_url(url: str) -> str:
    """A URL as a Markdown autolink when it is a plain http(s) URL, else as escaped text."""
    text = clean(url, 500)
    if re.fullmatch(r"https?://[A-Za-z0-9._~:/?#\[\]@!&*+,;=%-]+", text) and ")" not in text:
        return f"<{text}>"
    return md(text)
