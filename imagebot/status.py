"""What each environment runs: the refs in its GitOps file, and whether the registry has them.

    status(config) -> [EnvironmentStatus, ...]

An unreachable registry makes existence unknown (`exists=None`) with a warning; it never fails.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imagebot.errors import ImagebotError, RegistryAuthError, RegistryError
from imagebot.promote import DigestLookup, current_refs, open_registry
from imagebot.tags import ImageRef

if TYPE_CHECKING:
    from imagebot.config import Config


@dataclass(frozen=True)
class RefStatus:
    image: str
    ref: ImageRef | None
    exists: bool | None  # None: unknown (registry unreachable) or no ref
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {"image": self.image, "ref": str(self.ref), "exists": self.exists, "note": self.note}


@dataclass(frozen=True)
class EnvironmentStatus:
    environment: str
    file: str
    refs: tuple[RefStatus, ...]
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "environment": self.environment,
            "file": self.file,
            "images": [row.to_json() for row in self.refs],
            "warnings": list(self.warnings),
        }


def status(
    config: Config, *, env: Mapping[str, str] = os.environ, registry: DigestLookup | None = None
) -> list[EnvironmentStatus]:
    """Per environment: the refs it runs and whether the registry has them."""
    statuses = []
    lookup: DigestLookup | None = None
    registry_error: str | None = None
    for name, environment in config.environments.items():
        rows, warnings = [], []
        for image, ref in current_refs(config, name, env=env).items():
            if lookup is None and registry_error is None:
                try:
                    lookup = open_registry(config, registry, env)
                except ImagebotError as exc:
                    registry_error = exc.message
            row = _ref_status(image, ref, lookup)
            rows.append(row)
            if row.exists is None and lookup is not None:
                lookup, registry_error = None, row.note  # unreachable: stop asking
        if registry_error:
            warnings.append(f"registry unavailable: {registry_error}; existence unknown")
        else:
            warnings += [f"{row.image}: {row.note}" for row in rows if row.exists is None]
        statuses.append(EnvironmentStatus(name, environment.file, tuple(rows), tuple(warnings)))
    return statuses


def _ref_status(image: str, ref: ImageRef, registry: DigestLookup | None) -> RefStatus:
    """A lookup answers None for a ref the registry does not have; an error means unknown."""
    if registry is None:
        return RefStatus(image, ref, None, "registry unavailable")
    lookup = ImageRef(ref.name, None, ref.digest) if ref.digest else ref
    try:
        found = registry.digest(lookup)
    except (RegistryAuthError, RegistryError) as exc:
        return RefStatus(image, ref, None, f"unknown: {exc.message}")
    if found is None:
        return RefStatus(image, ref, False, "not in the registry")
    if ref.digest and found != ref.digest:
        return RefStatus(image, ref, False, f"registry has {found}")
    return RefStatus(image, ref, True, found)
