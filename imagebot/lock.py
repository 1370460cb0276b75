"""Requirement sets -> layered, hash-pinned lock files (`requirements/<set>.lock`).

One lock per set, resolved cumulatively in the image's layer order: set N is resolved together
with sets 1..N-1, whose packages are *constrained* to the versions already locked for them.
`<set>.lock` then holds only the packages that earlier layers do not install, so a dependency
shared by two sets lands in the earliest layer that needs it, and changing the last set never
changes an earlier lock (or its Docker layer).

Each lock starts with a header that records a digest of its inputs: the Python pins of sets
1..N, the earlier locks, the target Python and platform, and LOCK_FORMAT. `lock --check` and
`imagebot check` recompute it offline, without resolving anything; a second header digest
covers the lock's whole text, so a hand edit is caught too (`imagebot.lockfile`).

A stale lock is re-resolved with its previous pins as uv's preferences (only when its text is
the one `imagebot lock` wrote), so a new entry moves only the pins it must; `lock --upgrade`
re-resolves every layer to the newest versions that fit.

Pure functions build plans, digests and lock text; uv (`imagebot.uv`, made by `uv_resolver`)
is the only side effect, and `resolve_locks` takes the resolver as an argument. `check` and
`lock --check` import this module, so it imports uv (subprocess, tempfile) only to resolve.

The R packages served from a CRAN-like repository have one lock of their own,
`requirements/cran.lock` (`imagebot.cranlock`), kept, checked and resolved the same way:
`cran_status` offline, `resolve_cran` with the upstream reader as an argument.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from imagebot.config import Config
from imagebot.errors import ConfigError, ResolutionError, StaleError
from imagebot.lockfile import (
    EMPTY_LAYER,
    LOCK_FORMAT,
    LOCK_SUFFIX,
    LockedPackage,
    LockFile,
    content_intact,
    dependency_edges,
    lock_path,
    lock_state,
    parse_lock,
    recorded_inputs,
    seal,
    split_blocks,
)
from imagebot.requirements import RequirementSet, normalize
from imagebot.validate import InvalidValue

if TYPE_CHECKING:
    from imagebot.cran import RRoot
    from imagebot.cranlock import CranLockStatus
    from imagebot.uv import Resolver

__all__ = [
    "EMPTY_LAYER",
    "LOCK_FORMAT",
    "LOCK_SUFFIX",
    "LockFile",
    "LockedPackage",
    "lock_path",
    "parse_lock",
    "split_blocks",
]


@dataclass(frozen=True)
class Layer:
    """One set of an image, with the sets below it in the image's layer order."""

    set: RequirementSet
    earlier: tuple[RequirementSet, ...]
    python: str
    platform: str

    @property
    def name(self) -> str:
        return self.set.name

    @property
    def all_sets(self) -> tuple[RequirementSet, ...]:
        return (*self.earlier, self.set)


# --- planning --------------------------------------------------------------------------------


def plan_layers(config: Config, sets: Mapping[str, RequirementSet]) -> list[Layer]:
    """Every set of every image built from sets (rendered or not), once, in layer order.

    A lock belongs to a set, so a set shared by two images must sit on the same earlier sets
    in both; otherwise one lock file cannot serve both images.
    """
    layers: dict[str, Layer] = {}
    for image in config.locked_images:
        for index, set_name in enumerate(image.sets):
            earlier = tuple(sets[name] for name in image.sets[:index])
            layer = Layer(sets[set_name], earlier, image.python, image.platform)
            known = layers.get(set_name)
            if known is None:
                layers[set_name] = layer
            elif (known.earlier, known.python, known.platform) != (
                earlier,
                image.python,
                image.platform,
            ):
                raise ConfigError(
                    f"{config.path}: set {set_name!r} sits on different layers in two images "
                    f"(after {[s.name for s in known.earlier]} and {list(image.sets[:index])})",
                    "give both images the same sets before it, or split the set in two",
                )
    return list(layers.values())


def inputs_digest(layer: Layer, earlier_locks: Sequence[str]) -> str:
    """Digest of everything a lock depends on; earlier locks are passed as their full text."""
    parts = [f"imagebot-lock {LOCK_FORMAT}", f"python {layer.python}", f"platform {layer.platform}"]
    for req_set in layer.all_sets:
        parts.append(f"set {req_set.name}")
        parts.extend(sorted(entry.pin for entry in req_set.python))
    parts.extend(f"lock {text}" for text in earlier_locks)
    return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


# --- lock text -------------------------------------------------------------------------------


def lock_header(layer: Layer, inputs: str) -> str:
    below = ", ".join(s.name for s in layer.earlier) or "nothing (first layer)"
    return (
        f"# Generated by `imagebot lock` from {layer.set.path.name}: do not edit.\n"
        "# Regenerate with `imagebot lock`; `imagebot lock --check` fails when it is stale.\n"
        f"# Layer {layer.name}, on top of: {below}. Holds only packages earlier layers lack.\n"
        f"# Python {layer.python}, platform {layer.platform}, binary wheels only.\n"
        f"# inputs: {inputs}\n"
    )


def format_lock(layer: Layer, inputs: str, packages: Sequence[LockedPackage]) -> str:
    body = "".join(p.text for p in sorted(packages, key=lambda p: p.name)) or EMPTY_LAYER
    return seal(lock_header(layer, inputs) + body)


# --- staleness (offline) ---------------------------------------------------------------------


@dataclass(frozen=True)
class LockStatus:
    layer: Layer
    path: Path
    expected: str  # digest the inputs have now
    found: str | None  # digest in the file; None when missing or headerless
    exists: bool = True
    intact: bool = True  # the text matches its `# content:` digest

    @property
    def state(self) -> str:
        return (
            lock_state(
                exists=self.exists, found=self.found, intact=self.intact, expected=self.expected
            )
            or "stale"
        )

    @property
    def fresh(self) -> bool:
        return self.found == self.expected and self.intact


def lock_statuses(layers: Sequence[Layer], read: Callable[[Path], str | None]) -> list[LockStatus]:
    """Compare each lock's recorded digest with its inputs; `read` returns None if absent."""
    statuses: list[LockStatus] = []
    texts: dict[str, str] = {}
    for layer in layers:
        path = lock_path(layer.set.path.parent, layer.name)
        text = read(path)
        texts[layer.name] = text or ""
        expected = inputs_digest(layer, [texts.get(s.name, "") for s in layer.earlier])
        found = recorded_inputs(text) if text is not None else None
        intact = text is not None and content_intact(text)
        statuses.append(LockStatus(layer, path, expected, found, text is not None, intact))
    return statuses


class Freshness(Protocol):
    """A lock's state against its inputs (LockStatus, cranlock.CranLockStatus)."""

    @property
    def path(self) -> Path: ...

    @property
    def state(self) -> str: ...

    @property
    def fresh(self) -> bool: ...


def stale_error(statuses: Sequence[Freshness]) -> StaleError | None:
    stale = [s for s in statuses if not s.fresh]
    if not stale:
        return None
    names = ", ".join(f"{s.path.name} ({s.state})" for s in stale)
    return StaleError(
        f"lock files out of date: {names}",
        "run `imagebot lock` and commit requirements/*.lock",
    )


# --- the R lock: requirements/cran.lock ------------------------------------------------------


# imagebot.cranlock.CRAN_LOCK_NAME: imagebot.cranlock (and imagebot.cran) are imported only
# where R is vetted, so that `check` and `lock --check` do not pay for them elsewhere.
CRAN_LOCK_NAME = "cran.lock"


@dataclass(frozen=True)
class CranLockInputs:
    """What requirements/cran.lock depends on: the R entries served from a CRAN-like
    repository, the upstreams (first: current) and the User-Agent the upstreams are asked with."""

    path: Path
    roots: tuple[RRoot, ...]
    upstreams: tuple[str, ...]
    user_agent: str


def cran_inputs(
    config: Config, sets: Iterable[RequirementSet], index_only: RequirementSet | None
) -> CranLockInputs:
    sets = list(sets)
    path = config.requirements_dir / CRAN_LOCK_NAME
    served = any(s.r_source == "cran" and s.r for s in sets) or bool(index_only and index_only.r)
    if not served:
        return CranLockInputs(path, (), (), config.index.r_user_agent)
    from imagebot.cranlock import cran_roots, cran_upstream_urls

    roots = tuple(cran_roots(sets, index_only))
    return CranLockInputs(path, roots, tuple(cran_upstream_urls(config)), config.index.r_user_agent)


def cran_status(
    inputs: CranLockInputs, read: Callable[[Path], str | None]
) -> CranLockStatus | None:
    """requirements/cran.lock against its inputs, offline ("left over" when no R package is
    served from a CRAN-like repository but the file exists); None when there is neither."""
    text = read(inputs.path)
    if not inputs.roots and text is None:
        return None
    from imagebot.cranlock import cran_lock_status

    return cran_lock_status(inputs.path, text, inputs.roots, inputs.upstreams, inputs.user_agent)


@dataclass(frozen=True)
class CranLockPlan:
    path: Path
    text: str | None  # the lock to keep or write; None: there is none (remove any file)
    changed: bool  # the file on disk must be written (or removed) to match `text`

    @property
    def packages(self) -> int:
        return sum(1 for line in (self.text or "").splitlines() if line.startswith("Package:"))


def resolve_cran(
    inputs: CranLockInputs,
    read: Callable[[Path], str | None],
    resolve: Callable[[CranLockInputs], str],
    *,
    upgrade: bool = False,
) -> CranLockPlan:
    """New text for requirements/cran.lock; a fresh lock is kept (and `resolve`, which reads
    the upstreams, is not called) unless `upgrade`. Writes nothing."""
    current = read(inputs.path)
    if not inputs.roots:
        return CranLockPlan(inputs.path, None, current is not None)
    from imagebot.cranlock import cran_lock_status

    status = cran_lock_status(
        inputs.path, current, inputs.roots, inputs.upstreams, inputs.user_agent
    )
    if status.fresh and not upgrade and current is not None:
        return CranLockPlan(inputs.path, current, False)
    text = resolve(inputs)
    return CranLockPlan(inputs.path, text, text != current)


# --- resolving -------------------------------------------------------------------------------


def uv_resolver() -> Resolver:
    """The resolver `imagebot lock` runs: uv, isolated from the repository (`imagebot.uv`)."""
    from imagebot.uv import Uv

    return Uv()


def preference_lines(previous: LockFile | None) -> str:
    """The pins of a layer's previous lock as `name==version` lines, for uv to keep where they
    still fit; '' when there is none, or when it is not the text `imagebot lock` wrote (its
    content digest fails, as after a hand edit in a pull request) or holds a value that does
    not validate: such a lock must not steer the resolution."""
    from imagebot.uv import requirement_line

    if previous is None or not previous.intact:
        return ""
    try:
        return "".join(
            requirement_line(name, version) + "\n"
            for name, version in sorted(previous.pins().items())
        )
    except InvalidValue:
        return ""


def resolve_layer(
    layer: Layer,
    earlier: Mapping[str, LockFile],
    resolver: Resolver,
    previous: LockFile | None = None,
) -> list[LockedPackage]:
    """Resolve one layer on top of the earlier locks; return only the packages it adds.
    The pins of `previous`, the layer's last lock, are kept where they still fit
    (`preference_lines`)."""
    from imagebot.uv import ResolveFailed, requirement_line

    locked_below: dict[str, str] = {}
    for req_set in layer.earlier:
        locked_below.update(earlier[req_set.name].pins())
    if not layer.set.python:
        return []
    try:
        inputs = {
            f"{req_set.name}.in": "".join(
                requirement_line(entry.name, entry.version, entry.extras) + "\n"
                for entry in req_set.python
            )
            for req_set in layer.all_sets
            if req_set.python
        }
        constraints = "".join(
            requirement_line(name, version) + "\n" for name, version in sorted(locked_below.items())
        )
    except InvalidValue as exc:
        raise ResolutionError(f"cannot lock set {layer.name!r}: {exc.message}", exc.hint) from None
    try:
        compiled = resolver.compile(
            inputs,
            constraints,
            layer.python,
            layer.platform,
            preferences=preference_lines(previous),
        )
    except ResolveFailed as failed:
        raise distill_uv_error(failed.output, layer, earlier) from None
    resolved = split_blocks(compiled)
    requires = dependency_edges(resolved)  # across layers: `# via` stays within one lock
    return [
        p.with_requires(requires.get(p.name, ())) for p in resolved if p.name not in locked_below
    ]


@dataclass(frozen=True)
class LockPlanResult:
    texts: dict[Path, str]  # every lock, new or kept
    changed: tuple[Path, ...]  # the ones whose text differs from disk


def resolve_locks(
    layers: Sequence[Layer],
    read: Callable[[Path], str | None],
    resolver: Resolver,
    *,
    upgrade: bool = False,
) -> LockPlanResult:
    """New text for every lock; fresh locks are kept unless `upgrade`. A lock that is
    re-resolved keeps its previous pins where they still fit, so one new entry moves only what
    it must; `upgrade` re-resolves everything to the newest versions. Writes nothing."""
    texts: dict[Path, str] = {}
    locks: dict[str, LockFile] = {}
    changed: list[Path] = []
    for layer in layers:
        path = lock_path(layer.set.path.parent, layer.name)
        earlier_texts = [texts[lock_path(s.path.parent, s.name)] for s in layer.earlier]
        expected = inputs_digest(layer, earlier_texts)
        current = read(path)
        parsed = parse_lock(layer.name, current) if current is not None else None
        if parsed is not None and current is not None and parsed.inputs == expected:
            fresh = parsed.intact and not upgrade
        else:
            fresh = False
        if fresh and current is not None:
            text = current
        else:
            previous = None if upgrade else parsed
            packages = resolve_layer(layer, locks, resolver, previous)
            text = format_lock(layer, expected, packages)
        lock = parse_lock(layer.name, text)
        if lock is None:  # format_lock always writes the header
            raise ValueError(f"generated lock for {layer.name} has no header")
        texts[path], locks[layer.name] = text, lock
        if text != current:
            changed.append(path)
    return LockPlanResult(texts, tuple(changed))


# --- distilling uv's explanation into one error ----------------------------------------------
# Pattern strings, compiled (and cached by `re`) only when a resolution fails: `check` and
# `lock --check` import this module and should not pay for them.

_SPEC = r"(?<![\w.-])([A-Za-z0-9][A-Za-z0-9._-]*?)((?:===?|>=|<=|!=|~=|<|>)[A-Za-z0-9.*+!-]*[A-Za-z0-9*])"
_NO_VERSION = (
    r"there (?:is|are) no versions? of ([A-Za-z0-9._-]+?)((?:==|>=|<=|<|>|!=|~=)\S+?)(?=[ ,])"
)
_NOT_FOUND = r"([A-Za-z0-9][A-Za-z0-9._-]*) was not found in the package registry"
_DEPENDS = r"(\S+) depends on (\S+?)(?=[ ,])"
_NO_WHEEL = r"([A-Za-z0-9._-]+==\S+) has no (?:usable )?wheels?"


def _where(layer: Layer, earlier: Mapping[str, LockFile], name: str, spec: str) -> str | None:
    """Where a pin mentioned by uv comes from: a set entry, or an earlier layer's lock."""
    key = normalize(name)
    for req_set in layer.all_sets:
        for entry in req_set.python:
            if entry.key == key and spec in ("", f"=={entry.version}"):
                return f"{entry.name}=={entry.version} ({req_set.path.parent.name}/{req_set.path.name}:{entry.line})"
    for req_set in layer.earlier:
        lock = earlier.get(req_set.name)
        version = lock.pins().get(key) if lock else None
        if lock is not None and version is not None and spec in ("", f"=={version}"):
            needed_by = _needed_by(lock, key)
            via = f", needed by {', '.join(needed_by)}" if needed_by else ""
            return (
                f"{key}=={version} (locked by earlier layer {req_set.name!r} "
                f"in {req_set.name}{LOCK_SUFFIX}{via})"
            )
    return None


def _needed_by(lock: LockFile, name: str) -> list[str]:
    """The packages a lock's `# via` comments name for `name` (input files left out)."""
    block = next((p for p in lock.packages if p.name == name), None)
    return [n for n in block.via if not n.startswith("-")] if block else []


def distill_uv_error(output: str, layer: Layer, earlier: Mapping[str, LockFile]) -> ResolutionError:
    """One ResolutionError naming the clashing pins and where they are written."""
    from imagebot.uv import explain, summarize

    explanation = explain(output)
    set_file = f"{layer.set.path.parent.name}/{layer.set.path.name}"
    what = f"cannot lock set {layer.name!r}"

    if missing := re.search(_NOT_FOUND, explanation):
        name = missing.group(1)
        where = _where(layer, earlier, name, "") or name
        return ResolutionError(
            f"{what}: package {name!r} does not exist on the index: {where}",
            "check the spelling on https://pypi.org (names are PEP 503 normalised)",
        )
    if no_version := re.search(_NO_VERSION, explanation):
        name, spec = no_version.group(1), no_version.group(2)
        where = _where(layer, earlier, name, spec) or f"{name}{spec}"
        return ResolutionError(
            f"{what}: no version {name}{spec} exists (for Python {layer.python} on {layer.platform}): {where}",
            f"pick an existing version: `pip index versions {name}`",
        )
    if no_wheel := re.search(_NO_WHEEL, explanation):
        return ResolutionError(
            f"{what}: {no_wheel.group(1)} has no wheel for Python {layer.python} on {layer.platform}",
            "images install binary wheels only; pick a version that ships one",
        )

    ours: list[str] = []
    for match in re.finditer(_SPEC, explanation):
        where = _where(layer, earlier, match.group(1), match.group(2))
        if where is not None and where not in ours:
            ours.append(where)
    because = list(
        dict.fromkeys(f"{a} depends on {b}" for a, b in re.findall(_DEPENDS, explanation))
    )
    if not ours:
        first = explanation.split(". ", 1)[0][:300] or summarize(output, 300)
        return ResolutionError(
            f"{what}: the resolver failed: {first}",
            f"check the pins in {set_file}; run `imagebot -v lock` for details",
        )
    clash = ours[0] if len(ours) == 1 else f"{', '.join(ours[:-1])} and {ours[-1]}"
    verb = "cannot be satisfied" if len(ours) == 1 else "clash"
    reason = f" ({'; '.join(because[:2])})" if because else ""
    hint = "change one of these pins to a compatible version"
    if any("earlier layer" in w for w in ours):
        hint += "; later sets cannot change what earlier layers locked, so pin that version or move the entry into the earlier set"
    return ResolutionError(f"{what}: {clash} {verb}{reason}", hint)
