"""PURE: image references. (Content tags from build inputs live here too; see content_tag.)"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from imagebot.errors import UsageError

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ImageRef:
    """`name[:tag][@digest]`, where name includes the registry host and path.

    `name` is everything before the tag, e.g. `europe-north1-docker.pkg.dev/p/jupyter/jupyterlab`
    or `127.0.0.1:5555/jupyter/jupyterlab`.
    """

    name: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        original = text
        text = text.strip()
        digest = None
        if "@" in text:
            text, digest = text.split("@", 1)
            if not _DIGEST.match(digest):
                raise UsageError(
                    f"image reference {original!r} has a malformed digest {digest!r}",
                    "a digest is sha256: followed by 64 lowercase hex characters",
                )
        tag = None
        last = text.rsplit("/", 1)[-1]
        if ":" in last:
            text, tag = text.rsplit(":", 1)
            if not _TAG.match(tag):
                raise UsageError(
                    f"image reference {original!r} has an invalid tag {tag!r}",
                    "tags are up to 128 of A-Z a-z 0-9 _ . - and do not start with . or -",
                )
        if not text or text != text.strip() or " " in text:
            raise UsageError(
                f"invalid image reference {original!r}", "write it as registry/path/name:tag"
            )
        return cls(text, tag, digest)

    @property
    def registry(self) -> str:
        """The registry host, or docker.io for short names."""
        first = self.name.split("/", 1)[0]
        if "/" in self.name and ("." in first or ":" in first or first == "localhost"):
            return first
        return "docker.io"

    @property
    def repository(self) -> str:
        """The path inside the registry (no host)."""
        if self.registry == "docker.io" and not self.name.startswith("docker.io/"):
            path = self.name
            return path if "/" in path else f"library/{path}"
        return self.name.split("/", 1)[1]

    def with_tag(self, tag: str | None) -> ImageRef:
        return replace(self, tag=tag)

    def with_digest(self, digest: str | None) -> ImageRef:
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text
