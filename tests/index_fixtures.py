"""Small builders shared by the index unit tests (test_index, test_index_pages)."""

from __future__ import annotations

import hashlib

from imagebot.index_pages import DistFile, Target

TARGET = Target("3.11", "x86_64-manylinux_2_36")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dist(filename: str, data: bytes = b"", requires_python: str | None = None) -> DistFile:
    body = data or filename.encode()
    return DistFile(
        filename, f"https://files.example/{filename}", sha(body), len(body), requires_python
    )
