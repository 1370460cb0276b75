"""`imagebot manifest` and `imagebot diff`: what is installed in an image, and what changed.

One `docker run` of the in-container module `imagebot.incontainer.list_packages` lists pip
distributions, R packages and dpkg packages; `parse_package_list` reads its output here and for
the smoke test, which prints the same list. The diff is pure and tells the platform team who an
upgrade may hurt.
`package_diff(old_ref, new_ref)` is the best-effort text the GitOps commit message embeds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagebot.errors import EngineError, ImagebotError
from imagebot.incontainer.list_packages import ECOSYSTEMS, MARKER

if TYPE_CHECKING:
    from imagebot.config import Config
    from imagebot.tags import ImageRef

LIST_TIMEOUT = 120.0


@dataclass(frozen=True)
class ImagePackages:
    """An image's manifest: the packages installed in it, per ecosystem."""

    ref: str
    packages: Mapping[str, Mapping[str, str]]  # ecosystem -> name -> version

    @classmethod
    def from_listing(cls, ref: str, listing: Mapping[str, Mapping[str, str]]) -> ImagePackages:
        """From list_packages' JSON object (or the cache's copy of it); every ecosystem present."""
        return cls(ref, {eco: dict(listing.get(eco, {})) for eco in ECOSYSTEMS})

    def render(self) -> str:
        lines = [f"# {self.ref}"]
        for ecosystem in ECOSYSTEMS:
            found = self.packages.get(ecosystem, {})
            lines.append(f"## {ecosystem} ({len(found)})")
            lines.extend(f"{name} {found[name]}" for name in sorted(found, key=str.lower))
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """Printed with sorted keys (`console.print_json(..., sort_keys=True)`)."""
        return {"ref": self.ref, "packages": {eco: dict(p) for eco, p in self.packages.items()}}


@dataclass(frozen=True)
class Change:
    name: str
    old: str | None  # None: added
    new: str | None  # None: removed

    def render(self) -> str:
        if self.old is None:
            return f"  + {self.name} {self.new}"
        if self.new is None:
            return f"  - {self.name} {self.old}"
        return f"  ~ {self.name} {self.old} -> {self.new}"


@dataclass(frozen=True)
class ManifestDiff:
    old: str
    new: str
    changes: Mapping[str, tuple[Change, ...]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(self.changes.values())

    def render(self) -> str:
        lines = [f"packages: {self.old} -> {self.new}"]
        for ecosystem in ECOSYSTEMS:
            changes = self.changes.get(ecosystem, ())
            if not changes:
                lines.append(f"{ecosystem}: no changes")
                continue
            added = sum(1 for c in changes if c.old is None)
            removed = sum(1 for c in changes if c.new is None)
            changed = len(changes) - added - removed
            lines.append(f"{ecosystem}: {added} added, {removed} removed, {changed} changed")
            lines.extend(c.render() for c in changes)
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "changes": {
                eco: [{"name": c.name, "old": c.old, "new": c.new} for c in changes]
                for eco, changes in self.changes.items()
            },
        }


def diff_packages(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[Change, ...]:
    """PURE: added, removed and changed packages of one ecosystem, sorted by name."""
    names = sorted(set(old) | set(new), key=str.lower)
    return tuple(
        Change(name, old.get(name), new.get(name))
        for name in names
        if old.get(name) != new.get(name)
    )


def diff_manifests(old: ImagePackages, new: ImagePackages) -> ManifestDiff:
    """PURE: per-ecosystem changes between two manifests."""
    return ManifestDiff(
        old.ref,
        new.ref,
        {
            eco: diff_packages(old.packages.get(eco, {}), new.packages.get(eco, {}))
            for eco in ECOSYSTEMS
        },
    )


def parse_package_list(ref: str, output: str) -> ImagePackages | None:
    """PURE: the package list from list_packages' marker line, or None when it is absent."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            return ImagePackages.from_listing(ref, json.loads(line[len(MARKER) :]))
    return None


def manifest_cache_path(digest: str, env: Mapping[str, str]) -> Path:
    """Where the manifest of a digest-pinned image is kept: a digest names immutable content."""
    base = env.get("IMAGEBOT_CACHE_DIR") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "imagebot"
    )
    return Path(base) / "manifests" / f"{digest.replace(':', '-')}.json"


def _cached(path: Path, ref: str) -> ImagePackages | None:
    try:
        return ImagePackages.from_listing(ref, json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, AttributeError):
        return None  # an unreadable entry is a miss


def _store(path: Path, manifest: ImagePackages) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(manifest.packages), sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs a container run next time


def remember(digest: str, manifest: ImagePackages, env: Mapping[str, str]) -> None:
    """Cache the manifest of an image read by other means (the smoke test) under its digest."""
    _store(manifest_cache_path(digest, env), manifest)


def read_manifest(
    config: Config, image: str, *, env: Mapping[str, str] | None = None
) -> ImagePackages:
    """The installed packages of image (a config name or a ref), pulled if not local.

    Manifests of digest-pinned refs are cached on disk, so a promotion's package diff does not
    pull or run the image the environment ran before (it was read when that image was new).
    """
    from imagebot.tags import ImageRef

    environ = os.environ if env is None else env
    digest = ImageRef.parse(image).digest if "@sha256:" in image else None
    cache = manifest_cache_path(digest, environ) if digest else None
    if cache is not None and (hit := _cached(cache, image)) is not None:
        return hit
    manifest = _list_in_container(config, image, env)
    if cache is not None:
        _store(cache, manifest)
    return manifest


def _list_in_container(config: Config, image: str, env: Mapping[str, str] | None) -> ImagePackages:
    """One container of image runs list_packages; its marker line is the package list."""
    from imagebot.engine import local_image, run_container
    from imagebot.incontainer import ARCHIVE_PATH, probe_archive, probe_command

    target = local_image(config, image, env)
    result = run_container(
        target.client,
        target.engine_ref,
        probe_command("list_packages"),
        timeout=LIST_TIMEOUT,
        files={ARCHIVE_PATH: probe_archive()},
    )
    manifest = parse_package_list(str(target.ref), result.output)
    if manifest is None:
        tail = " | ".join(result.output.strip().splitlines()[-5:])
        raise EngineError(
            f"cannot list the packages of {target.ref} (exit {result.exit_code}): {tail}",
            "the image needs python3 on PATH",
        )
    return manifest


def package_diff(
    old_ref: ImageRef | str,
    new_ref: ImageRef | str,
    *,
    config: Config | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Best effort, plain text: the package diff, or one line saying why there is none."""
    try:
        if config is None:
            from imagebot.config import load_config

            environ = os.environ if env is None else env
            config = load_config("imagebot.toml", environ.get("IMAGEBOT_PROFILE") or None, environ)
        old = read_manifest(config, str(old_ref), env=env)
        new = read_manifest(config, str(new_ref), env=env)
    except ImagebotError as exc:
        reason = exc.message.splitlines()[0] if exc.message else type(exc).__name__
        if len(reason) > 160:
            reason = reason[:157] + "..."
        return f"package diff unavailable: {reason}\n"
    except Exception as exc:  # best effort by contract: never break a promotion
        return f"package diff unavailable: {type(exc).__name__}\n"
    return diff_manifests(old, new).render()
