"""`imagebot manifest` and `imagebot diff`: what is installed in an image, and what changed.

One `docker run` of a small stdlib script lists pip distributions, R packages and dpkg
packages. The diff is pure and tells the platform team who an upgrade may hurt.
`package_diff(old_ref, new_ref)` is the best-effort text the GitOps commit message embeds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imagebot.errors import EngineError, ImagebotError

if TYPE_CHECKING:
    from imagebot.config import Config
    from imagebot.tags import ImageRef

ECOSYSTEMS = ("python", "r", "dpkg")
MARKER = "IMAGEBOT-MANIFEST "
SCRIPT_PATH = "/tmp/imagebot_manifest.py"


@dataclass(frozen=True)
class Manifest:
    ref: str
    packages: Mapping[str, Mapping[str, str]]  # ecosystem -> name -> version

    def render(self) -> str:
        lines = [f"# {self.ref}"]
        for ecosystem in ECOSYSTEMS:
            found = self.packages.get(ecosystem, {})
            lines.append(f"## {ecosystem} ({len(found)})")
            lines.extend(f"{name} {found[name]}" for name in sorted(found, key=str.lower))
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return (
            json.dumps({"ref": self.ref, "packages": self.packages}, indent=2, sort_keys=True)
            + "\n"
        )


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

    def to_json(self) -> str:
        data = {
            "old": self.old,
            "new": self.new,
            "changes": {
                eco: [{"name": c.name, "old": c.old, "new": c.new} for c in changes]
                for eco, changes in self.changes.items()
            },
        }
        return json.dumps(data, indent=2) + "\n"


def diff_packages(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[Change, ...]:
    """PURE: added, removed and changed packages of one ecosystem, sorted by name."""
    names = sorted(set(old) | set(new), key=str.lower)
    return tuple(
        Change(name, old.get(name), new.get(name))
        for name in names
        if old.get(name) != new.get(name)
    )


def diff_manifests(old: Manifest, new: Manifest) -> ManifestDiff:
    """PURE: per-ecosystem changes between two manifests."""
    return ManifestDiff(
        old.ref,
        new.ref,
        {
            eco: diff_packages(old.packages.get(eco, {}), new.packages.get(eco, {}))
            for eco in ECOSYSTEMS
        },
    )


def parse_manifest_output(ref: str, output: str) -> Manifest | None:
    """PURE: the manifest from the script's marker line, or None when it is absent."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            raw = json.loads(line[len(MARKER) :])
            return Manifest(ref, {eco: dict(raw.get(eco, {})) for eco in ECOSYSTEMS})
    return None


def manifest_cache_path(digest: str, env: Mapping[str, str]) -> Path:
    """Where the manifest of a digest-pinned image is kept: a digest names immutable content."""
    base = env.get("IMAGEBOT_CACHE_DIR") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "imagebot"
    )
    return Path(base) / "manifests" / f"{digest.replace(':', '-')}.json"


def _cached(path: Path, ref: str) -> Manifest | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Manifest(ref, {eco: dict(raw.get(eco, {})) for eco in ECOSYSTEMS})


def _store(path: Path, manifest: Manifest) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(manifest.packages), sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs a container run next time


def remember(digest: str, manifest: Manifest, env: Mapping[str, str]) -> None:
    """Cache the manifest of an image read by other means (the smoke test) under its digest."""
    _store(manifest_cache_path(digest, env), manifest)


def read_manifest(config: Config, image: str, *, env: Mapping[str, str] | None = None) -> Manifest:
    """The installed packages of image (a config name or a ref), pulled if not local.

    Manifests of digest-pinned refs are cached on disk, so a promotion's package diff does not
    pull or run the image the environment ran before (it was read when that image was new).
    """
    from imagebot.build import local_image
    from imagebot.engine import run_container
    from imagebot.tags import ImageRef

    environ = os.environ if env is None else env
    digest = ImageRef.parse(image).digest if "@sha256:" in image else None
    cache = manifest_cache_path(digest, environ) if digest else None
    if cache is not None and (hit := _cached(cache, image)) is not None:
        return hit
    target = local_image(config, image, env)
    result = run_container(
        target.client,
        target.engine_ref,
        ["python3", SCRIPT_PATH],
        timeout=120,
        files={SCRIPT_PATH: _SCRIPT.replace("@MARKER@", MARKER).encode()},
    )
    manifest = parse_manifest_output(str(target.ref), result.output)
    if manifest is None:
        tail = " | ".join(result.output.strip().splitlines()[-5:])
        raise EngineError(
            f"cannot list the packages of {target.ref} (exit {result.exit_code}): {tail}",
            "the image needs python3 on PATH",
        )
    if cache is not None:
        _store(cache, manifest)
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


# Runs inside the image with its own python3: stdlib only. The smoke test embeds the same
# function, so a release lists the packages of the image it tests without a container run of
# its own (see remember).
PACKAGE_LISTER = r"""
def list_packages():
    import importlib.metadata as md, shutil, subprocess

    packages = {"python": {}, "r": {}, "dpkg": {}}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            packages["python"].setdefault(name, dist.version)
    if shutil.which("Rscript"):
        code = 'ip <- installed.packages()[, c("Package", "Version")]; writeLines(paste(ip[, 1], ip[, 2], sep = "\\t"))'
        out = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            name, _, version = line.partition("\t")
            if name and version:
                packages["r"].setdefault(name, version)
    if shutil.which("dpkg-query"):
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            name, _, version = line.partition("\t")
            if name and version:
                packages["dpkg"][name] = version
    return packages
"""

_SCRIPT = (
    "import json\n"
    + PACKAGE_LISTER
    + 'print("\\n@MARKER@" + json.dumps(list_packages()), flush=True)\n'
)
