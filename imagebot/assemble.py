"""Orchestration: lay an image's locked Python packages on its built `system` stage, at the registry.

`assemble(...)`: read the previous assembly's layers (the moving tag `packages`), plan what
to reuse (`imagebot.layers.plan`), install only the other packages in ONE container of the
system stage (`imagebot.incontainer.install_packages`), pack them into deterministic layers,
upload the layers the registry lacks, and put the manifest (system stage's layers, then the
package layers) by digest and under `packages`. The image is then pulled into the engine (only
the layers it lacks) and tagged with its content tag, so `imagebot test` and `push` treat it
like any other build. No content tag is written to the registry here: that is `push`'s job,
after the smoke test.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from imagebot import layers
from imagebot.errors import EngineError, RegistryError
from imagebot.incontainer.install_packages import MARKER
from imagebot.lockfile import lock_path, parse_lock
from imagebot.render import SYSTEM_STAGE, VENV
from imagebot.tags import ImageRef, dockerfile_instructions

if TYPE_CHECKING:
    from docker import DockerClient

    from imagebot.build import Reporter
    from imagebot.config import Config
    from imagebot.engine import RunResult
    from imagebot.registry import Credentials, RegistryClient

PACKAGES_TAG = "packages"  # the last assembly: the next one reuses its layers
SYSTEM_TAG = "system"  # the last built system stage
SPEC_PATH = "/tmp/imagebot_install_spec.json"
CA_PATH = "/tmp/imagebot_ca.crt"
INSTALL_TIMEOUT = 3600.0
DEFAULT_PIP_INDEX = "https://pypi.org/simple"
PACK_WORKERS = 2


@dataclass(frozen=True)
class AssemblyStats:
    layers: int  # package layers in the image
    reused: int  # of which came from the previous assembly
    installed: int  # packages installed by this build
    uploaded_bytes: int  # compressed bytes of new layers sent to the registry

    def line(self) -> str:
        return (
            f"packages: {self.layers} layers, {self.reused} reused; installed {self.installed} "
            f"packages, uploaded {self.uploaded_bytes / 1e6:.1f} MB"
        )


def is_assembled(dockerfile_text: str) -> bool:
    """PURE: the Dockerfile has a `system` stage with a stage built on it (render's shape)."""
    stages = [
        args.split() for name, args in dockerfile_instructions(dockerfile_text) if name == "FROM"
    ]
    named = any(len(w) == 3 and w[1].upper() == "AS" and w[2] == SYSTEM_STAGE for w in stages)
    return named and any(w and w[0] == SYSTEM_STAGE for w in stages)


def wanted_packages(config: Config, image_name: str) -> list[layers.WantedPackage]:
    """Every locked Python package of the image, in set and lock order. Each set is installed
    by the venv's pip as the sets before it left it: the last pip an earlier set locks."""
    from imagebot.errors import StaleError

    wanted = []
    installer = ""
    for set_name in config.image(image_name).sets:
        path = lock_path(config.requirements_dir, set_name)
        lock = parse_lock(set_name, path.read_text(encoding="utf-8")) if path.is_file() else None
        if lock is None:
            raise StaleError(f"{path} is missing or has no imagebot header", "run `imagebot lock`")
        for package in lock.packages:
            wanted.append(
                layers.WantedPackage(
                    set_name,
                    package.name,
                    package.version,
                    package.hashes,
                    package.text,
                    installer,
                )
            )
        installer = next((f"pip=={p.version}" for p in lock.packages if p.name == "pip"), installer)
    return wanted


def pip_index_url(dockerfile_text: str, build_args: Mapping[str, str]) -> str:
    """PURE: where the packages stage downloads wheels: the build arg, else the ARG default."""
    if url := build_args.get("PIP_INDEX_URL"):
        return url
    for name, args in dockerfile_instructions(dockerfile_text):
        if name == "ARG" and args.startswith("PIP_INDEX_URL="):
            return args.split("=", 1)[1].strip().strip("\"'")
    return DEFAULT_PIP_INDEX


def assemble(
    *,
    client: DockerClient,
    registry: RegistryClient,
    credentials: Credentials | None,
    config: Config,
    image_name: str,
    ref: ImageRef,
    system: ImageRef,
    installed_on: str,
    labels: Mapping[str, str],
    ca_bundle: Path | None,
    network: str | None,
    reporter: Reporter,
    reuse: bool = True,
) -> AssemblyStats:
    """See the module docstring. `system` is the pushed system stage; `ref` the content ref;
    without `reuse` (`build --no-cache`) every package is installed and packed afresh."""
    from imagebot.engine import pull_image, tag_image

    repository = ref.repository
    frame = _read_frame(registry, repository, system)
    wanted = wanted_packages(config, image_name)
    plan = _plan(registry, repository, frame, wanted, installed_on, reuse, reporter)
    image = config.image(image_name)
    dockerfile = (config.root / image.dockerfile).read_text(encoding="utf-8")
    new_layers, uploaded = _install_and_pack(
        client,
        registry,
        repository,
        system_image=f"{system.name}@{system.digest}",
        packages=plan.install,
        installed_on=installed_on,
        index_url=pip_index_url(dockerfile, image.build_args),
        ca_bundle=ca_bundle,
        network=network,
        reporter=reporter,
    )
    digest = _put_image(registry, repository, frame, [*plan.reused, *new_layers], labels)
    pinned = ref.with_tag(None).with_digest(digest)
    pull_image(client, pinned, credentials)
    tag_image(client, f"{ref.name}@{digest}", ref)
    stats = AssemblyStats(
        len(plan.reused) + len(new_layers), len(plan.reused), len(plan.install), uploaded
    )
    reporter.note(stats.line())
    return stats


def _plan(
    registry: RegistryClient,
    repository: str,
    frame: layers.Frame,
    wanted: Sequence[layers.WantedPackage],
    installed_on: str,
    reuse: bool,
    reporter: Reporter,
) -> layers.Plan:
    """Which layers of the previous :packages image to reuse, and which packages to install."""
    previous = registry.get_manifest(repository, PACKAGES_TAG) if reuse else None
    old = _previous_layers(previous[1], reporter) if previous else []
    frame_layers = len(frame.manifest.get("layers") or ())  # type: ignore[arg-type]
    plan = layers.plan(wanted, installed_on, old, frame_layers)
    reporter.note(
        f"packages: {len(wanted)} locked; {len(plan.reused)} layers reused, "
        f"{len(plan.install)} packages to install"
    )
    return plan


def _put_image(
    registry: RegistryClient,
    repository: str,
    frame: layers.Frame,
    image_layers: Sequence[layers.Layer],
    labels: Mapping[str, str],
) -> str:
    """Upload the assembled image's config and manifest, by digest and as the :packages tag
    the next build reuses layers from; the manifest's digest."""
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = layers.assemble(frame, image_layers, labels, created)
    registry.upload_blob(repository, result.config_digest, result.config)
    digest = registry.put_manifest(
        repository, _digest_of(result.manifest), result.manifest, result.media_type
    )
    registry.put_manifest(repository, PACKAGES_TAG, result.manifest, result.media_type)
    return digest


def _previous_layers(body: bytes, reporter: Reporter) -> list[layers.Layer]:
    """The last assembly's layers; a manifest imagebot cannot read is ignored, with a note."""
    try:
        manifest = json.loads(body)
        return layers.previous_layers(manifest if isinstance(manifest, dict) else {})
    except (ValueError, KeyError, TypeError):
        reporter.note(
            f"the registry's :{PACKAGES_TAG} manifest is not one imagebot wrote; not reusing it"
        )
        return []


def _image_entry(entries: Sequence[Mapping[str, object]]) -> str | None:
    """PURE: the digest of an index's linux/amd64 image (attestation entries skipped)."""
    for entry in entries:
        platform = entry.get("platform")
        annotations = entry.get("annotations")
        attestation = isinstance(annotations, dict) and annotations.get("vnd.docker.reference.type")
        if (
            isinstance(platform, dict)
            and platform.get("os") == "linux"
            and platform.get("architecture") == "amd64"
            and not attestation
        ):
            return str(entry["digest"])
    return None


def _digest_of(body: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(body).hexdigest()


def _read_frame(registry: RegistryClient, repository: str, system: ImageRef) -> layers.Frame:
    found = registry.get_manifest(repository, system.digest or system.tag or "")
    if found is None:
        raise RegistryError(f"{system} is not in the registry", "push the system stage first")
    try:
        manifest = json.loads(found[1])
        if "manifests" in manifest:  # an index (a containerd image store pushes one)
            chosen = _image_entry(manifest["manifests"])
            found = registry.get_manifest(repository, chosen) if chosen else None
            manifest = json.loads(found[1]) if found else {}
        media_type = str(manifest.get("mediaType") or layers.MANIFEST_MEDIA_TYPE)
        config = json.loads(registry.get_blob(repository, manifest["config"]["digest"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RegistryError(
            f"{system} in the registry is not an image manifest imagebot can read",
            "build again with --force; check what else writes to this repository",
        ) from None
    if "layers" not in manifest or not isinstance(config, dict):
        raise RegistryError(
            f"{system} is a {media_type}, not a single-platform image manifest",
            "build the system stage for one platform",
        )
    return layers.Frame(manifest, config, media_type)


def _install_and_pack(
    client: DockerClient,
    registry: RegistryClient,
    repository: str,
    *,
    system_image: str,
    packages: Sequence[layers.WantedPackage],
    installed_on: str,
    index_url: str,
    ca_bundle: Path | None,
    network: str | None,
    reporter: Reporter,
) -> tuple[list[layers.Layer], int]:
    """Install the packages in one container, pack them into layers, upload them."""
    from imagebot.engine import run_and_collect
    from imagebot.incontainer import probe_command

    if not packages:
        return [], 0
    environment, files = _install_inputs(packages, index_url, ca_bundle)
    result, archive = run_and_collect(
        client,
        system_image,
        probe_command("install_packages", SPEC_PATH),
        VENV,
        timeout=INSTALL_TIMEOUT,
        environment=environment,
        files=files,
        network=network or "bridge",
        user="0",
    )
    _report_install(result, system_image, reporter)
    installed = _installed(result.output)
    payloads, dir_modes = split_archive(archive, installed.owners, VENV)
    missing = [p.name for p in packages if p.name not in payloads]
    if missing:
        raise EngineError(
            f"pip installed no files for {', '.join(missing)}", "check the lock's package names"
        )
    removed = {
        name: [layers.whiteout(p) for p in paths] for name, paths in installed.removed.items()
    }
    return _upload_layers(
        registry, repository, packages, installed_on, payloads, dir_modes, removed
    )


def _install_inputs(
    packages: Sequence[layers.WantedPackage], index_url: str, ca_bundle: Path | None
) -> tuple[dict[str, str], dict[str, bytes]]:
    """The install container's environment and files: the probe, the spec, the CA bundle."""
    from imagebot.incontainer import ARCHIVE_PATH, probe_archive

    by_set: dict[str, list[str]] = {}
    for package in packages:
        by_set.setdefault(package.set_name, []).append(package.requirement)
    spec = {
        "venv": VENV,
        "epoch": layers.EPOCH,
        "names": [p.name for p in packages],
        "sets": [[name, "".join(blocks)] for name, blocks in by_set.items()],
    }
    environment = {"PIP_INDEX_URL": index_url, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    files = {ARCHIVE_PATH: probe_archive(), SPEC_PATH: json.dumps(spec).encode()}
    if ca_bundle is not None:
        files[CA_PATH] = ca_bundle.read_bytes()
        environment.update(PIP_CERT=CA_PATH, SSL_CERT_FILE=CA_PATH, REQUESTS_CA_BUNDLE=CA_PATH)
    return environment, files


def _report_install(result: RunResult, system_image: str, reporter: Reporter) -> None:
    """Pass pip's output on (not the probe's marker lines); a failed install is an engine error."""
    for line in result.output.splitlines():
        if not line.startswith(MARKER):
            reporter.line(line)
    if result.exit_code != 0:
        tail = " | ".join(result.output.strip().splitlines()[-6:])
        raise EngineError(
            f"installing the locked packages in {system_image} failed (exit {result.exit_code}): {tail}",
            "read pip's message above; fix the lock or the package index",
        )


def _upload_layers(
    registry: RegistryClient,
    repository: str,
    packages: Sequence[layers.WantedPackage],
    installed_on: str,
    payloads: Mapping[str, Sequence[layers.Entry]],
    dir_modes: Mapping[str, int],
    removed: Mapping[str, Sequence[layers.Entry]],
) -> tuple[list[layers.Layer], int]:
    """The packages' files grouped into layers, each compressed and uploaded; the layers and the
    bytes sent. A package's layer also keeps out of the venv what its install removed (its
    earlier version's files: `removed[name]`), so the whiteouts last as long as that layer is
    reused; the first layer takes the removals of no package (`removed[""]`)."""
    order = [p.name for p in packages]
    sizes = [(name, sum(len(e.data) for e in payloads[name])) for name in order]
    keys = {p.name: p.key(installed_on) for p in packages}
    groups = layers.group(sizes)

    def pack(index: int) -> tuple[layers.Layer, int]:
        names = groups[index]
        entries = [e for name in names for e in [*payloads[name], *removed.get(name, ())]]
        if index == 0:
            entries += removed.get("", ())
        blob = layers.layer_blob(layers.with_parents(entries, dir_modes))
        sent = len(blob.data) if registry.upload_blob(repository, blob.digest, blob.data) else 0
        layer = layers.Layer(
            blob.digest, blob.diff_id, len(blob.data), tuple(keys[n] for n in names)
        )
        return layer, sent

    # gzip releases the GIL: compress and upload two layers at a time (the machines have 2+ cores).
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=PACK_WORKERS) as pool:
        packed = list(pool.map(pack, range(len(groups))))
    new_layers = [layer for layer, _ in packed]
    uploaded = sum(sent for _, sent in packed)
    return new_layers, uploaded


@dataclass(frozen=True)
class _Installed:
    owners: Mapping[str, Sequence[str]]  # package -> absolute paths of its files
    removed: Mapping[str, Sequence[str]]  # package ('' for none) -> venv paths its install deleted


def _installed(output: str) -> _Installed:
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            try:
                data = json.loads(line[len(MARKER) :])
                owners = {str(k): [str(p) for p in v] for k, v in data["owners"].items()}
                removed = {str(k): [str(p) for p in v] for k, v in data["removed"].items()}
                return _Installed(owners, removed)
            except (ValueError, KeyError, TypeError, AttributeError):
                break
    raise EngineError("the package installer printed no result", "read its output above")


def split_archive(
    archive: bytes, owners: Mapping[str, Sequence[str]], root: str
) -> tuple[dict[str, list[layers.Entry]], dict[str, int]]:
    """PURE: the files of `docker cp`'s archive of `root`, per owning package; directory modes.

    The archive names entries after root's last component (`venv/...` for /opt/venv).
    """
    parent = root.strip("/").rsplit("/", 1)[0] if "/" in root.strip("/") else ""
    owner_of = {path.lstrip("/"): name for name, paths in owners.items() for path in paths}
    payloads: dict[str, list[layers.Entry]] = {}
    dir_modes: dict[str, int] = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        for member in tar:
            if member.name.startswith("/") or ".." in member.name.split("/"):
                raise EngineError(
                    f"the archive of {root} names {member.name!r}, outside {root}",
                    "this image's engine sent a malformed archive; rebuild on a clean engine",
                )
            path = f"{parent}/{member.name}".strip("/") if parent else member.name.strip("/")
            if member.isdir():
                dir_modes[path] = member.mode
                continue
            name = owner_of.get(path)
            if name is None:
                continue
            if member.issym():
                entry = layers.Entry(path, "symlink", member.mode, target=member.linkname)
            elif member.isfile() or member.islnk():
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                entry = layers.Entry(path, "file", member.mode, data)
            else:
                continue
            payloads.setdefault(name, []).append(entry)
    return payloads, dir_modes
