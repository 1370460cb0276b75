"""PURE: the imagebot.toml changes of a pull request, for its review: every key whose raw value
the pull request adds, changes or removes (profiles included), what each key decides, and the
acceptance that a reviewer gives by passing the fingerprint of exactly these changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from imagebot.errors import Problem
from imagebot.review_escape import clean, plain

CONFIG_FILE = "imagebot.toml"
ACCEPT_OPTION = "--accept-config"
ACCEPT_VARIABLE = "IMAGEBOT_REVIEW_ACCEPT_CONFIG"
# The keys that choose the CRAN-like upstream which vouches for the R lock
# (imagebot.cranlock.cran_upstream_urls, and the User-Agent it is asked with).
_R_UPSTREAM_KEYS = (
    ("index", "cran_upstream"),
    ("index", "cran_snapshots"),
    ("index", "r_user_agent"),
)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


@dataclass(frozen=True)
class ConfigChange:
    """One key of imagebot.toml whose value the pull request adds, changes or removes: the
    file's own TOML value (before `${VAR:-default}` expansion, profiles included), as the diff
    shows it."""

    key: str  # dotted, with TOML quoting where a part is not a bare key
    kind: str  # "added" | "changed" | "removed"
    old: Any  # the base's value; None when the base does not set the key
    new: Any  # the working tree's value; None when it no longer sets the key
    meaning: str  # what the key decides (imagebot.config's key metadata); "" for no known key
    r_upstream: bool = False  # it picks the upstream that vouches for the R lock


@dataclass(frozen=True)
class ConfigChanges:
    """What the pull request changes in imagebot.toml. Any change fails the review (exit 4)
    until it is accepted: a reviewer passes the `fingerprint` of exactly these changes."""

    changes: tuple[ConfigChange, ...] = ()
    note: str = ""  # why the base's (or the working tree's) file could not be compared
    accepted_with: str = ""  # the acceptance given, when it matches the fingerprint
    refused: str = ""  # an acceptance given that is not for these changes

    @property
    def shown(self) -> bool:
        return bool(self.changes or self.note)

    @property
    def fingerprint(self) -> str:
        """16 hex digits of sha256 over every changed key with both values: an acceptance is
        for these exact changes, and a later push that changes a value again needs a new one."""
        if not self.changes:
            return ""
        import hashlib
        import json

        data = [[c.key, c.kind, jsonable(c.old), jsonable(c.new)] for c in self.changes]
        text = json.dumps(data, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]

    @property
    def accepted(self) -> bool:
        return bool(self.changes) and self.accepted_with == self.fingerprint

    @property
    def r_upstream_keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.changes if c.r_upstream)

    def problems(self) -> list[Problem]:
        """One problem when a change is not accepted (the review fails with exit 4)."""
        if not self.changes or self.accepted:
            return []
        keys = plain(", ".join(c.key for c in self.changes[:5]))  # printed outside the report
        more = f" and {len(self.changes) - 5} more" if len(self.changes) > 5 else ""
        return [
            Problem(
                CONFIG_FILE,
                0,
                f"this pull request changes {len(self.changes)} key(s) that decide what gets "
                f"built, served or run and where packages come from and go ({keys}{more}), and "
                "no reviewer has accepted these changes",
                f"a platform maintainer who has read them reruns the review with "
                f"{ACCEPT_OPTION} {self.fingerprint} (or {ACCEPT_VARIABLE}={self.fingerprint})",
            )
        ]


def config_changes(
    base_text: str | None,
    head_text: str,
    *,
    profile: str | None = None,
    base_unreadable: str = "",
) -> ConfigChanges:
    """Every key whose value differs between the base's imagebot.toml (`base_text`; None when
    the base has none, `base_unreadable` says why when it could not be read) and the working
    tree's, compared as the files say (raw TOML, `[profiles.*]` included). A base that is
    absent or does not parse lends no keys: every key of the working tree's is then added, and
    the note says why. `profile` is the one the review runs with: a change under
    `[profiles.PROFILE]` can pick the R upstream as a top-level one can."""
    head, head_problem = _toml(head_text)
    if head is None:
        return ConfigChanges(note=f"the working tree's {CONFIG_FILE} {head_problem}")
    note = ""
    if base_unreadable or base_text is None:
        why = base_unreadable or "does not exist"
        note = f"the base's {CONFIG_FILE} {why}: every key of the working tree's is new"
        base: dict[str, Any] = {}
    else:
        parsed, problem = _toml(base_text)
        if parsed is None:
            note = f"the base's {CONFIG_FILE} {problem}: every key of the working tree's is new"
        base = parsed or {}
    old, new = _flatten(base), _flatten(head)
    changes = []
    for path in sorted(set(old) | set(new), key=lambda p: tuple(map(str, p))):
        before, after = old.get(path), new.get(path)
        if before == after and type(before) is type(after):
            continue
        kind = "added" if path not in old else "removed" if path not in new else "changed"
        changes.append(
            ConfigChange(
                ".".join(_key_part(part) for part in path),
                kind,
                before,
                after,
                config_key_meaning(path),
                _picks_r_upstream(path, profile),
            )
        )
    return ConfigChanges(tuple(changes), note)


def accept_config_changes(changes: ConfigChanges, given: str | None) -> ConfigChanges:
    """`changes`, accepted when `given` is their fingerprint (else `refused` shows it)."""
    if not given:
        return changes
    if changes.changes and given.strip() == changes.fingerprint:
        return replace(changes, accepted_with=changes.fingerprint)
    return replace(changes, refused=given)


def config_key_meaning(path: Sequence[str]) -> str:
    """What the key at `path` decides, from imagebot.config's key metadata (written once
    there); "" when imagebot reads no such key."""
    import dataclasses

    from imagebot import config

    parts = list(path)
    if len(parts) > 2 and parts[0] == "profiles":
        parts = parts[2:]
    tables: dict[str, tuple[type, int]] = {
        "project": (config.ProjectConfig, 1),
        "registry": (config.RegistryConfig, 1),
        "index": (config.IndexConfig, 1),
        "advisories": (config.AdvisoriesConfig, 1),
        "images": (config.ImageConfig, 2),
        "environments": (config.EnvironmentConfig, 2),
    }
    if not parts or parts[0] not in tables:
        return ""
    cls, at = tables[parts[0]]
    if len(parts) <= at:
        return ""
    for spec in dataclasses.fields(cls):
        if spec.name == parts[at] and "meaning" in spec.metadata:
            return str(spec.metadata["meaning"])
    return ""


def _picks_r_upstream(path: Sequence[str], profile: str | None) -> bool:
    parts = tuple(path)
    if len(parts) > 2 and parts[0] == "profiles":
        if parts[1] != profile:
            return False
        parts = parts[2:]
    if parts[:2] in _R_UPSTREAM_KEYS:
        return True
    return len(parts) == 3 and parts[0] == "images" and parts[2] == "r_repo"


def _toml(text: str) -> tuple[dict[str, Any] | None, str]:
    import tomllib

    try:
        return tomllib.loads(text), ""
    except tomllib.TOMLDecodeError as exc:
        return None, f"is not valid TOML ({clean(str(exc), 120)})"
    except RecursionError:
        return None, "is not valid TOML (nested too deeply)"


def _flatten(table: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """`{key path: value}` of every leaf; a table with keys is not a leaf, an empty one is."""
    leaves: dict[tuple[str, ...], Any] = {}
    for name, value in table.items():
        path = (*prefix, name)
        if isinstance(value, Mapping) and value:
            leaves.update(_flatten(value, path))
        else:
            leaves[path] = value
    return leaves


def _key_part(name: str) -> str:
    import json

    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=True)


def jsonable(value: Any) -> Any:
    """A TOML value as JSON data: dates and times as ISO 8601 text, a float JSON cannot hold
    (inf, nan) as text."""
    import math

    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def config_value_text(value: Any) -> str:
    """A value as the report shows it: JSON with every non-ASCII character escaped, so a
    look-alike letter in a host name, a newline or a bidirectional control is seen, not acted
    on; "(not set)" for a key the file does not set."""
    import json

    if value is None:
        return "(not set)"
    return json.dumps(jsonable(value), ensure_ascii=True)
