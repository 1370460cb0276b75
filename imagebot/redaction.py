"""PURE: hide secrets in text that leaves imagebot (messages, build output, logs).

The one redaction rule for every credential imagebot holds (registry and git): each known
secret becomes `***`, and so does the userinfo of every URL (`scheme://user:secret@host`),
up to the last `@` of the URL's word, so that a password holding `@` is hidden whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Shorter secrets would blank out ordinary words of a message.
MIN_SECRET_LENGTH = 4
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s'\"<>]*@")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every secret and every URL userinfo in text by ***."""
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, "***")
    return _USERINFO.sub(r"\g<scheme>***@", text)
