"""PURE: what a promotion changes: targets, byte-exact edits, the diff and the commit message.

    plan(text, environment, {"jupyterlab": ref}, origin)  -> Plan (new text, changes, diff)
    commit_message("promote", "staging", changes, diffs, revision) -> str
    with_impact(package_diff, impact)                     -> a diff and who it may hurt
    read_refs(text, environment, origin)                  -> {"jupyterlab": ImageRef, ...}

The dry run and the real run both print or commit what `plan` and `commit_message` return.
Every value that reaches the commit message is one line of printable text (anything else is
escaped), so no ref, path, package diff or revision can add lines or trailers.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imagebot import validate, yamledit
from imagebot.errors import ConfigError, ImagebotError, UsageError
from imagebot.tags import ImageRef

if TYPE_CHECKING:
    from imagebot.config import EnvironmentConfig

SKIP_CI = "[skip ci]"
NO_PACKAGE_DIFF = "package diff unavailable"
IMPACT_HEADING = "Who this may hurt:"


@dataclass(frozen=True)
class ImageChange:
    """One target set to a new reference. `old` is None when the file had no readable ref."""

    image: str
    target: str  # dotted YAML path or policy:NS:NAME
    old: ImageRef | None
    new: ImageRef

    def to_json(self) -> dict[str, object]:
        old = None if self.old is None else str(self.old)
        return {"image": self.image, "target": self.target, "old": old, "new": str(self.new)}


@dataclass(frozen=True)
class Plan:
    """The edit of one file: its text before and after, and each target that changed."""

    file: str
    text: str
    new_text: str
    changes: tuple[ImageChange, ...]

    @property
    def diff(self) -> str:
        return unified_diff(self.text, self.new_text, self.file) if self.changes else ""


def plan(
    text: str, environment: EnvironmentConfig, new_refs: Mapping[str, ImageRef], origin: str
) -> Plan:
    """Set every target of every image in `new_refs`; unchanged targets are not listed."""
    new_text, changes = plan_edit(text, environment, new_refs, origin)
    return Plan(origin, text, new_text, changes)


def plan_edit(
    text: str,
    environment: EnvironmentConfig,
    new_refs: Mapping[str, ImageRef],
    origin: str,
) -> tuple[str, tuple[ImageChange, ...]]:
    """Apply every target of every image in `new_refs`; the new text and what changed."""
    changes: list[ImageChange] = []
    for image, ref in new_refs.items():
        for target in targets_of(environment, image):
            old = _read_or_none(text, target, origin)
            result = yamledit.set_image(text, target, ref, origin)
            if result.changed:
                text = result.text
                changes.append(ImageChange(image, target, old, ref))
    return text, tuple(changes)


def targets_of(environment: EnvironmentConfig, image: str) -> tuple[str, ...]:
    try:
        return environment.targets[image]
    except KeyError:
        known = ", ".join(environment.targets) or "none"
        raise ConfigError(
            f"environment {environment.name!r} has no target for image {image!r}",
            f"images it deploys: {known}; add it to environments.{environment.name}.targets",
        ) from None


def _read_or_none(text: str, target: str, origin: str) -> ImageRef | None:
    try:
        return yamledit.read_image(text, target, origin)
    except ImagebotError:
        return None


def read_refs(text: str, environment: EnvironmentConfig, origin: str) -> dict[str, ImageRef]:
    """The ref each image's first target holds in `text`."""
    return {
        image: yamledit.read_image(text, targets[0], origin)
        for image, targets in environment.targets.items()
        if targets
    }


def unified_diff(old: str, new: str, path: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def one_line(value: object) -> str:
    """`value` as one line of printable text: characters that are not are shown escaped."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def commit_message(
    verb: str,
    environment: str,
    changes: Sequence[ImageChange],
    package_diffs: Mapping[tuple[str, str], str],
    source_revision: str,
) -> str:
    """Subject names images and environment; body: old -> new per target, package diffs, source.

    Each interpolated value is one line; package diffs keep their "\n" lines, each escaped
    (str.splitlines would also break at U+2028 and the like, which git does not).
    """
    images = list(dict.fromkeys(one_line(change.image) for change in changes))
    subject = f"imagebot: {verb} {', '.join(images)} in {one_line(environment)} {SKIP_CI}"
    body = []
    for change in changes:
        body.append(f"{one_line(change.image)} ({one_line(change.target)}):")
        body.append(f"  {one_line(change.old or '(unset)')}")
        body.append(f"  -> {one_line(change.new)}")
    seen: set[tuple[str, str]] = set()
    for change in changes:
        key = (str(change.old), str(change.new))
        if key in seen or change.old is None:
            continue
        seen.add(key)
        diff = package_diffs.get(key, NO_PACKAGE_DIFF)
        body += ["", f"Package diff for {one_line(change.image)}:"]
        body += [one_line(line) for line in diff.rstrip("\n").split("\n")]
    body += ["", f"Source revision: {one_line(source_revision)}"]
    return subject + "\n\n" + "\n".join(body).rstrip() + "\n"


def with_impact(package_diff: str, impact: str) -> str:
    """A package diff followed by its impact section (`imagebot.impact.render_text`): what
    each promotion commit says under "Package diff for IMAGE:"."""
    return f"{package_diff.rstrip(chr(10))}\n\n{IMPACT_HEADING}\n{impact.rstrip(chr(10))}"


def parse_ref(text: str) -> ImageRef:
    """An image reference from the command line: the OCI grammar, lower-case repository."""
    try:
        validate.image_reference(text)
    except validate.InvalidValue as exc:
        raise UsageError(exc.message, exc.hint) from None
    return ImageRef.parse(text)


def parse_image_args(args: Sequence[str]) -> dict[str, ImageRef | None]:
    """`IMAGE` or `IMAGE=REF` command-line arguments; None means "the current build's ref"."""
    refs: dict[str, ImageRef | None] = {}
    for arg in args:
        image, sep, ref = arg.partition("=")
        if not image or (sep and not ref) or not image.isprintable():
            raise UsageError(f"invalid image argument {arg[:80]!r}", "write IMAGE or IMAGE=REF")
        refs[image] = parse_ref(ref) if sep else None
    return refs
