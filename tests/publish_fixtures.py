"""Builders shared by the publish tests: indexes on disk as `imagebot index build` writes them,
and the check a reader makes: every page links only objects that are there."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from imagebot.index_pages import (
    MANIFEST_NAME,
    DistFile,
    IndexedPackage,
    IndexManifest,
    Target,
    manifest_to_json,
    render_pages,
)

TARGET = Target("3.11", "x86_64-manylinux_2_36")
_HREF = re.compile(r'href="([^"#]+)')


def wheel_name(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


def wheel_body(name: str, version: str, size: int = 0) -> bytes:
    head = f"wheel {name} {version}\n".encode()
    return head + b"x" * max(0, size - len(head))


def write_index(
    out: Path, packages: Mapping[str, Sequence[str]], wheel_size: int = 0
) -> IndexManifest:
    """Write OUT (replacing it) with one wheel per name==version, its pages and manifest."""
    indexed = []
    for name, versions in sorted(packages.items()):
        for version in versions:
            filename = wheel_name(name, version)
            body = wheel_body(name, version, wheel_size)
            dist = DistFile(
                filename,
                f"https://files.example/{filename}",
                hashlib.sha256(body).hexdigest(),
                len(body),
            )
            indexed.append(IndexedPackage(name, version, dist, ("index-only",), ()))
    manifest = IndexManifest(TARGET, (), {}, tuple(indexed))
    if out.exists():
        shutil.rmtree(out)
    (out / "files").mkdir(parents=True)
    for package in indexed:
        body = wheel_body(package.name, package.version, wheel_size)
        (out / "files" / package.file.filename).write_bytes(body)
    for relative, text in render_pages(indexed).items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (out / MANIFEST_NAME).write_text(manifest_to_json(manifest), encoding="utf-8")
    return manifest


def broken_links(read: Callable[[str], bytes | None], keys: Sequence[str]) -> list[str]:
    """Links of the HTML pages among `keys` whose target `read` cannot find: what a pip
    reading the index at that moment would fail on."""
    broken = []
    for key in keys:
        if not key.endswith("index.html"):
            continue
        page = read(key)
        if page is None:
            continue
        base = key.rsplit("/", 1)[0]
        for href in _HREF.findall(page.decode()):
            target = _join(base, href)
            if target.endswith("/"):
                target += "index.html"
            if read(target) is None:
                broken.append(f"{key} -> {target}")
    return broken


def _join(base: str, href: str) -> str:
    parts = base.split("/") if base else []
    for segment in href.split("/"):
        if segment == "..":
            parts.pop()
        elif segment not in (".", ""):
            parts.append(segment)
    return "/".join(parts) + ("/" if href.endswith("/") else "")
