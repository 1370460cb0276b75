"""PURE: the Python packages of an image as deterministic layers, and the plan that reuses them.

imagebot assembles an image at the registry (see docs/images.md, "Layers"): the `system` stage
of the Dockerfile is built by BuildKit, and every locked Python package is installed once, in a
container, and packed into a layer of its own (a big package) or into a group of small ones.
Each layer is a deterministic tar: entries sorted by path, mtime fixed, uid/gid 0, no user
names; its gzip has no name and no time. A layer records which packages it holds (a key per
package: name, version, wheel hashes and what they were installed on), so the next build reuses
every layer whose packages are all still wanted, and installs only the rest. A one-package
change therefore costs that package (plus its small group) in build time, push and pull.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagebot.render import SOURCE_DATE_EPOCH

EPOCH = SOURCE_DATE_EPOCH  # every entry's mtime; installs run with it (hash-checked .pyc)

if TYPE_CHECKING:
    import tarfile

FORMAT = "imagebot-package-layer-v1"
PACKAGES_ANNOTATION = "org.imagebot.packages"  # the keys of a layer's packages, space-separated
DIFF_ID_ANNOTATION = "org.imagebot.diff-id"  # the layer's uncompressed digest
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
BIG_PACKAGE = 4 << 20  # installed bytes from which a package gets a layer of its own
SMALL_GROUP = 4 << 20  # small packages share a layer up to this many installed bytes
MAX_LAYERS = 100  # the whole image; overlayfs stacks at most 128 layers
_GZIP_LEVEL = 6


@dataclass(frozen=True)
class WantedPackage:
    """One locked package the image must hold, in set order."""

    set_name: str
    name: str
    version: str
    hashes: frozenset[str]
    requirement: str  # the lock's block for it: `name==version --hash=...`
    # The pip that installs it, when an earlier set locks one ("pip==26.3"); "" for the venv's
    # own. pip writes the console scripts and RECORD, so another pip makes other bytes.
    installer: str = ""

    def key(self, installed_on: str) -> str:
        """Everything the installed files depend on: the wheel, the venv it went into and the
        pip that installed it."""
        installer = [f"installer {self.installer}"] if self.installer else []
        text = "\n".join(
            [FORMAT, installed_on, *installer, self.name, self.version, *sorted(self.hashes)]
        ).encode()
        return f"{self.name}=={self.version}@{hashlib.sha256(text).hexdigest()[:32]}"


@dataclass(frozen=True)
class Layer:
    """A layer blob in the registry and the package keys it holds."""

    digest: str  # sha256 of the gzip blob
    diff_id: str  # sha256 of the tar
    size: int  # compressed bytes
    keys: tuple[str, ...]

    def descriptor(self, media_type: str = LAYER_MEDIA_TYPE) -> dict[str, object]:
        return {
            "mediaType": media_type,
            "digest": self.digest,
            "size": self.size,
            "annotations": {
                PACKAGES_ANNOTATION: " ".join(self.keys),
                DIFF_ID_ANNOTATION: self.diff_id,
            },
        }


@dataclass(frozen=True)
class Plan:
    reused: tuple[Layer, ...]  # previous layers whose packages are all still wanted, in order
    install: tuple[WantedPackage, ...]  # what the installer container must install


def previous_layers(manifest: Mapping[str, object]) -> list[Layer]:
    """The package layers of a manifest imagebot assembled (layers without keys are skipped)."""
    layers = []
    for item in manifest.get("layers") or ():  # type: ignore[attr-defined]
        if not isinstance(item, dict):
            continue
        annotations = item.get("annotations")
        if not isinstance(annotations, dict):
            continue
        keys = str(annotations.get(PACKAGES_ANNOTATION, "")).split()
        diff_id = str(annotations.get(DIFF_ID_ANNOTATION, ""))
        digest, size = item.get("digest"), item.get("size")
        if keys and diff_id.startswith("sha256:") and isinstance(digest, str) and type(size) is int:
            layers.append(Layer(digest, diff_id, size, tuple(keys)))
    return layers


def plan(
    wanted: Sequence[WantedPackage], installed_on: str, previous: Sequence[Layer], frame: int
) -> Plan:
    """Reuse every previous layer whose packages are all wanted; install everything else.

    `frame` is the number of layers below the packages (base image and system stage). When the
    layers would exceed MAX_LAYERS, nothing is reused: the packages are packed afresh.
    """
    keys = {p.key(installed_on): p for p in wanted}
    reused: list[Layer] = []
    covered: set[str] = set()
    for layer in previous:
        if all(k in keys and k not in covered for k in layer.keys):
            reused.append(layer)
            covered.update(layer.keys)
    install = tuple(p for k, p in keys.items() if k not in covered)
    if frame + len(reused) + len(install) > MAX_LAYERS:
        reused, install = [], tuple(wanted)
    return Plan(tuple(reused), install)


def group(sizes: Sequence[tuple[str, int]]) -> list[list[str]]:
    """Package names in install order -> layers: big packages alone, small ones together.

    A small group closes when adding the next small package would pass SMALL_GROUP, so a
    change to a small package re-packs at most SMALL_GROUP installed bytes.
    """
    groups: list[list[str]] = []
    small: list[str] = []
    small_bytes = 0
    for name, size in sizes:
        if size >= BIG_PACKAGE:
            groups.append([name])
            continue
        if small and small_bytes + size > SMALL_GROUP:
            groups.append(small)
            small, small_bytes = [], 0
        small.append(name)
        small_bytes += size
    if small:
        groups.append(small)
    return groups


# --- deterministic layers -------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One tar entry of a layer: a path without leading '/', and what it is."""

    path: str
    kind: str  # "file" | "dir" | "symlink" | "whiteout"
    mode: int = 0o644
    data: bytes = b""
    target: str = ""  # symlink target

    def tarinfo(self) -> tarfile.TarInfo:
        import tarfile  # not at the top: render --check, a fast command, imports this module

        info = tarfile.TarInfo(self.path)
        info.mtime = EPOCH
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = self.mode & 0o7777
        if self.kind == "dir":
            info.type = tarfile.DIRTYPE
        elif self.kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, self.target
        else:
            info.type, info.size = tarfile.REGTYPE, len(self.data)
        return info


def whiteout(path: str) -> Entry:
    """The OCI whiteout that deletes `path` from the layers below."""
    head, tail = posixpath.split(path.strip("/"))
    return Entry(posixpath.join(head, f".wh.{tail}"), "whiteout", 0o644)


def with_parents(entries: Iterable[Entry], dir_modes: Mapping[str, int]) -> list[Entry]:
    """entries plus every parent directory (mode from dir_modes, else 0755), sorted by path."""
    chosen = {e.path: e for e in entries}
    for path in list(chosen):
        parent = posixpath.dirname(path)
        while parent and parent not in chosen:
            chosen[parent] = Entry(parent, "dir", dir_modes.get(parent, 0o755))
            parent = posixpath.dirname(parent)
    return [chosen[p] for p in sorted(chosen)]


@dataclass(frozen=True)
class Blob:
    data: bytes  # gzip
    digest: str
    diff_id: str


def layer_blob(entries: Sequence[Entry]) -> Blob:
    """The same entries always give the same bytes: sorted, fixed times and owners, no names."""
    import gzip
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in sorted(entries, key=lambda e: e.path):
            info = entry.tarinfo()
            archive.addfile(info, io.BytesIO(entry.data) if info.isreg() else None)
    tar = raw.getvalue()
    data = gzip.compress(tar, compresslevel=_GZIP_LEVEL, mtime=0)
    return Blob(data, _sha256(data), _sha256(tar))


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- the assembled image ----------------------------------------------------------------------


@dataclass(frozen=True)
class Assembled:
    manifest: bytes
    config: bytes
    config_digest: str
    media_type: str


@dataclass(frozen=True)
class Frame:
    """The image the package layers go on: its manifest and config, as the registry has them."""

    manifest: Mapping[str, object]
    config: Mapping[str, object]
    media_type: str = field(default=MANIFEST_MEDIA_TYPE)


def assemble(
    frame: Frame, layers: Sequence[Layer], labels: Mapping[str, str], created: str
) -> Assembled:
    """The frame's config with the package layers' diff_ids and history appended, and a
    manifest listing the frame's layers, then the package layers with their keys."""
    config = json.loads(json.dumps(frame.config))
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    config["rootfs"]["diff_ids"] = [*config["rootfs"]["diff_ids"], *(x.diff_id for x in layers)]
    history = list(config.get("history") or [])
    for layer in layers:
        history.append(
            {"created": created, "created_by": f"imagebot: python packages {' '.join(layer.keys)}"}
        )
    config["history"] = history
    image_config = config.setdefault("config", {})
    image_config["Labels"] = {**(image_config.get("Labels") or {}), **labels}
    config["created"] = created
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    docker = frame.media_type == DOCKER_MANIFEST_MEDIA_TYPE
    layer_type = DOCKER_LAYER_MEDIA_TYPE if docker else LAYER_MEDIA_TYPE
    config_type = "application/vnd.docker.container.image.v1+json" if docker else CONFIG_MEDIA_TYPE
    manifest = {
        "schemaVersion": 2,
        "mediaType": frame.media_type,
        "config": {
            "mediaType": config_type,
            "digest": _sha256(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            *(frame.manifest.get("layers") or ()),  # type: ignore[misc]
            *(layer.descriptor(layer_type) for layer in layers),
        ],
    }
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return Assembled(body, config_bytes, _sha256(config_bytes), frame.media_type)
