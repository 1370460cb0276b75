"""PURE: set image references in YAML text, changing only the bytes of the target scalars.

ruamel.yaml is used only to *parse and locate*: every target scalar's span (character offsets)
and quote style come from the composed node graph. The new value is spliced into the ORIGINAL
text, so comments, indentation, quotes, `---`, CRLF, trailing whitespace and a missing final
newline survive untouched. The result is re-parsed and compared node by node with the original:
only the intended scalars may differ, and they must read back as exactly the intended strings.
Nothing is ever dumped.

Targets are addressed by a dotted path with list indices (`spec.values.singleuser.image`,
`spec.values.singleuser.profileList.1.kubespawner_override.image`) or by Flux
`# {"$imagepolicy": "ns:name[:tag|:name|:digest]"}` marker comments. An image target is either
a map with `name` (or `repository`), `tag` and optionally `digest`, or one `repo:tag[@digest]`
string.

Files that are not plain YAML because of templating (`{{ ... }}`, `${VAR}`) are parsed through a
same-length mask of the template spans; edits never touch a masked span.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from imagebot import validate
from imagebot.errors import ImagebotError, YamlEditError
from imagebot.tags import ImageRef

STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
POLICY_PREFIX = "policy:"
NAME_KEYS = ("name", "repository")

# --- YAML 1.1 as Go (yaml.v2, sigs.k8s.io/yaml, Helm) resolves plain scalars ----------------
# A new plain value matching any of these would not read back as a string: it gets quoted.
_YAML11_NON_STRINGS = re.compile(
    r"""^(?:
        y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF
      | ~|null|Null|NULL
      | [-+]?0b[01_]+ | [-+]?0o?[0-7_]+ | [-+]?0x[0-9a-fA-F_]+
      | [-+]?(?:0|[1-9][0-9_]*)
      | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?
      | [-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?
      | [-+]?[0-9][0-9_]*(?:[eE][-+]?[0-9]+)
      | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
      | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:(?:[Tt]|[\ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?
            (?:[\ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?
      | <<|=
    )$""",
    re.VERBOSE,
)
# Characters that are safe in a plain scalar anywhere, including inside flow collections.
_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_./+][A-Za-z0-9_./@:+=~-]*$")


def needs_quotes(value: str) -> bool:
    """True when `value` written plain would not read back as the same string (YAML 1.1/1.2)."""
    if not _PLAIN_SAFE.match(value) or value.endswith(":"):
        return True
    return bool(_YAML11_NON_STRINGS.match(value))


def _double_quoted(value: str) -> str:
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\t":
            out.append("\\t")
        elif char == "\n":
            out.append("\\n")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def render_scalar(value: str, style: str | None) -> str:
    """The source text for `value` in the given ruamel scalar style (None = plain)."""
    if style == "'":
        if any(ord(c) < 0x20 for c in value):
            return _double_quoted(value)
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or needs_quotes(value):
        return _double_quoted(value)
    return value


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalarChange:
    """One scalar that was (or would be) rewritten; `line` is 1-based."""

    path: str
    line: int
    old: str
    new: str


@dataclass(frozen=True)
class EditResult:
    text: str
    changes: tuple[ScalarChange, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


# --- parsing -----------------------------------------------------------------------------

_TEMPLATE_LINE = re.compile(r"^([ \t]*)(\{\{.*\}\}|\{%.*%\})[ \t]*$", re.MULTILINE)
# ruamel rejects a tab after a plain scalar at the end of a line; YAML 1.2 and Go allow it.
_TRAILING_TABS = re.compile(r"[ \t]*\t[ \t]*(?=\r?$)", re.MULTILINE)
_TEMPLATE_SPAN = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\$\{[^}\n]*\}")


def mask_templates(text: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Same-length text with template spans neutralised, and the masked spans.

    A line that is only a template directive becomes a comment; an inline `{{ x }}` or `${X}`
    becomes a run of `T`, which parses as a plain scalar; trailing tabs become spaces. Offsets, lines and columns are kept,
    so marks found in the masked text address the original text.
    """
    spans: list[tuple[int, int]] = []
    chars = list(text)

    def blank(start: int, end: int, first: str) -> None:
        spans.append((start, end))
        chars[start] = first
        for i in range(start + 1, end):
            chars[i] = " " if first == "#" else "T"

    for match in _TEMPLATE_LINE.finditer(text):
        blank(match.start(2), match.end(2), "#")
    for match in _TEMPLATE_SPAN.finditer(text):
        if not any(s <= match.start() < e for s, e in spans):
            blank(match.start(), match.end(), "T")
    for match in _TRAILING_TABS.finditer(text):
        spans.append((match.start(), match.end()))
        chars[match.start() : match.end()] = " " * (match.end() - match.start())
    return "".join(chars), tuple(sorted(spans))


@dataclass
class _Parsed:
    text: str  # what was parsed: the original, or its template mask
    masked: tuple[tuple[int, int], ...]
    docs: tuple[Any, ...]  # root nodes, one per document
    refs: dict[int, int]  # id(node) -> how many places refer to it


@functools.lru_cache(maxsize=16)
def _compose(text: str) -> tuple[Any, ...]:
    """The node graphs of every document. Cached: a promotion reads, edits and verifies the
    same texts several times, and nothing here mutates nodes."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt", pure=True)
    return tuple(doc for doc in yaml.compose_all(text) if doc is not None)


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def _parse(text: str, origin: str) -> _Parsed:
    from ruamel.yaml.error import YAMLError

    try:
        docs = _compose(text)
        return _Parsed(text, (), docs, _count_refs(docs))
    except YAMLError as first:
        masked, spans = mask_templates(text)
        if spans:
            try:
                docs = _compose(masked)
                return _Parsed(masked, spans, docs, _count_refs(docs))
            except YAMLError:
                pass
        raise YamlEditError(
            f"{origin}: not valid YAML ({_yaml_problem(first)})",
            "fix the YAML syntax there; the file was left untouched",
        ) from None


def _children(node: Any) -> Iterator[Any]:
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    if isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value
    elif isinstance(node, SequenceNode):
        yield from node.value


def _count_refs(docs: Sequence[Any]) -> dict[int, int]:
    counts: dict[int, int] = {}
    stack = list(docs)
    for doc in docs:
        counts[id(doc)] = 1
    while stack:
        node = stack.pop()
        for child in _children(node):
            counts[id(child)] = counts.get(id(child), 0) + 1
            if counts[id(child)] == 1:
                stack.append(child)
    return counts


# --- locating ----------------------------------------------------------------------------


def split_path(path: str) -> tuple[str, ...]:
    parts = tuple(path.split("."))
    if not path or any(part == "" for part in parts):
        raise YamlEditError(
            f"invalid YAML path {path!r}",
            "write it dotted with list indices, e.g. spec.values.singleuser.image",
        )
    return parts


def _is_merge_key(key: Any) -> bool:
    return bool(key.tag == MERGE_TAG or (key.value == "<<" and key.style is None))


class _DuplicateKey(Exception):
    """A map on the way to a target has the key twice: which one tools read is not defined."""

    def __init__(self, key: str, lines: Sequence[int]) -> None:
        super().__init__(key)
        self.key = key
        self.lines = tuple(lines)


def _refuse_duplicates(node: Any, part: str) -> None:
    lines = [
        key.start_mark.line + 1 for key, _ in node.value if getattr(key, "value", None) == part
    ]
    if len(lines) > 1:
        raise _DuplicateKey(part, lines)


def _step(node: Any, part: str) -> tuple[Any | None, bool]:
    """The child named `part` and whether it was reached through a `<<` merge."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    if isinstance(node, SequenceNode):
        if part.isdigit() and int(part) < len(node.value):
            return node.value[int(part)], False
        return None, False
    if not isinstance(node, MappingNode):
        return None, False
    _refuse_duplicates(node, part)
    merged: list[Any] = []
    for key, value in node.value:
        if _is_merge_key(key):
            merged.extend(value.value if isinstance(value, SequenceNode) else [value])
        elif getattr(key, "value", None) == part:
            return value, False
    for source in merged:
        child, _ = _step(source, part)
        if child is not None:
            return child, True
    return None, False


@dataclass(frozen=True)
class _Found:
    node: Any
    path: str
    shared: bool  # reached through an anchor/alias or `<<` that other places share


def _locate(parsed: _Parsed, path: str, origin: str) -> _Found:
    parts = split_path(path)
    hits: list[tuple[int, Any, list[Any], bool]] = []
    deepest = ("", 0)
    for index, doc in enumerate(parsed.docs):
        node, chain, merged = doc, [], False
        for depth, part in enumerate(parts):
            node, via_merge = _step(node, part)
            if node is None:
                if depth >= deepest[1]:
                    deepest = (".".join(parts[:depth]) or "<root>", depth)
                break
            merged = merged or via_merge
            chain.append(node)
        if node is not None:
            hits.append((index, node, chain, merged))
    if not hits:
        where, depth = deepest
        raise YamlEditError(
            f"{origin}: path {path!r} not found ({where} has no {parts[depth]!r})",
            "check the path in imagebot.toml targets or --path; indices count from 0",
        )
    if len(hits) > 1:
        docs = ", ".join(str(hit[0] + 1) for hit in hits)
        raise YamlEditError(
            f"{origin}: path {path!r} matches in documents {docs}",
            "imagebot edits exactly one place; split the file or make the path unique",
        )
    _, node, chain, merged = hits[0]
    shared = merged or any(parsed.refs.get(id(n), 0) > 1 for n in chain)
    return _Found(node, path, shared)


# --- image targets -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Slot:
    """One scalar to set: its node, its dotted path, the value wanted, and whether other places
    share it (then changing it is refused; leaving it as it is, is fine)."""

    node: Any
    path: str
    value: str
    shared: bool = False


def _scalar_child(found: _Found, key: str) -> Any | None:
    from ruamel.yaml.nodes import ScalarNode

    child, _ = _step(found.node, key)
    return child if isinstance(child, ScalarNode) else None


def _slot(parsed: _Parsed, found: _Found, key: str, value: str) -> _Slot:
    """A slot for `key` of the map at `found`; a value inherited through `<<` is shared."""
    child, via_merge = _step(found.node, key)
    shared = found.shared or via_merge or parsed.refs.get(id(child), 0) > 1
    return _Slot(child, f"{found.path}.{key}", value, shared)


def _image_slots(parsed: _Parsed, found: _Found, ref: ImageRef, origin: str) -> list[_Slot]:
    from ruamel.yaml.nodes import MappingNode, ScalarNode

    if isinstance(found.node, ScalarNode):
        return [_Slot(found.node, found.path, str(ref), found.shared)]
    if not isinstance(found.node, MappingNode):
        raise YamlEditError(
            f"{origin}: {found.path!r} is a list, not an image",
            "point the path at a `repo:tag` string or a map with name/tag",
        )
    name_key = next((k for k in NAME_KEYS if _scalar_child(found, k) is not None), None)
    tag = _scalar_child(found, "tag")
    digest = _scalar_child(found, "digest")
    if name_key is None or tag is None:
        raise YamlEditError(
            f"{origin}: {found.path!r} is a map without name/repository and tag scalars",
            "add `tag:` to the map (imagebot changes values, it never adds keys)",
        )
    slots = [_slot(parsed, found, name_key, ref.name)]
    if digest is not None:
        if ref.digest is None:
            raise YamlEditError(
                f"{origin}: {found.path}.digest needs a digest, {ref} has none",
                "promote a digest-pinned reference (name:tag@sha256:...)",
            )
        slots.append(_slot(parsed, found, "tag", ref.tag or ""))
        slots.append(_slot(parsed, found, "digest", ref.digest))
    else:
        tag_value = (ref.tag or "") + (f"@{ref.digest}" if ref.digest else "")
        slots.append(_slot(parsed, found, "tag", tag_value))
    return slots


def _raise_shared(origin: str, path: str) -> None:
    raise YamlEditError(
        f"{origin}: {path!r} goes through an anchor/alias that other places share",
        "editing it would change those places too; give this entry its own value",
    )


def _read_image(found: _Found, origin: str) -> ImageRef:
    from ruamel.yaml.nodes import ScalarNode

    if isinstance(found.node, ScalarNode):
        return _parse_ref(found.node.value, origin, found.path)
    name_key = next((k for k in NAME_KEYS if _scalar_child(found, k) is not None), None)
    tag = _scalar_child(found, "tag")
    digest = _scalar_child(found, "digest")
    if name_key is None:
        raise YamlEditError(
            f"{origin}: {found.path!r} is neither an image string nor a map with name/tag",
            "point the path at the image",
        )
    name = _scalar_child(found, name_key)
    text = str(name.value) if name is not None else ""
    if tag is not None and tag.value:
        text += f":{tag.value}"
    if digest is not None and digest.value:
        text += f"@{digest.value}"
    return _parse_ref(text, origin, found.path)


def _parse_ref(text: str, origin: str, where: str) -> ImageRef:
    try:
        return ImageRef.parse(text)
    except ImagebotError as exc:
        raise YamlEditError(f"{origin}: {where}: {exc.message}", exc.hint) from None


# --- Flux $imagepolicy markers -------------------------------------------------------------

_MARKER = re.compile(r'#\s*\{\s*"\$imagepolicy"\s*:\s*"([^"]*)"\s*\}')
POLICY_FIELDS = ("tag", "name", "digest")
# The line breaks YAML (and ruamel's marks) count; str.splitlines() knows more (\f, \v, ...).
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


@dataclass(frozen=True)
class PolicyMarker:
    policy: str  # "ns:name"
    field: str | None  # None = the whole image; else tag | name | digest
    line: int  # 0-based
    column: int


def find_policy_markers(text: str) -> list[PolicyMarker]:
    """Every `# {"$imagepolicy": "ns:name[:field]"}` comment, in file order."""
    markers = []
    for number, line in enumerate(_LINE_BREAK.split(text)):
        for match in _MARKER.finditer(line):
            parts = match.group(1).split(":")
            if len(parts) == 2 or (len(parts) == 3 and parts[2] in POLICY_FIELDS):
                field = parts[2] if len(parts) == 3 else None
                markers.append(PolicyMarker(":".join(parts[:2]), field, number, match.start()))
    return markers


def _value_scalars(parsed: _Parsed) -> Iterator[Any]:
    """Scalars in value position (map values, list items): the ones a marker can address."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    seen: set[int] = set()
    stack = list(parsed.docs)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            stack.extend(value for _, value in node.value)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, ScalarNode):
            yield node


def _marker_slots(parsed: _Parsed, policy: str, ref: ImageRef, origin: str) -> list[_Slot]:
    markers = [m for m in find_policy_markers(parsed.text) if m.policy == policy]
    if not markers:
        raise YamlEditError(
            f'{origin}: no {{"$imagepolicy": "{policy}"}} marker',
            "add the marker comment after the image value, or use --path",
        )
    scalars = list(_value_scalars(parsed))
    slots = []
    for marker in markers:
        node = _scalar_on_line(scalars, marker)
        if node is None:
            continue  # a marker inside a block scalar or on a line without a value
        value = _policy_value(ref, marker, origin)
        where = f"line {marker.line + 1} ($imagepolicy {policy}{':' + marker.field if marker.field else ''})"
        slots.append(_Slot(node, where, value, parsed.refs.get(id(node), 0) > 1))
    return slots


def _scalar_on_line(scalars: list[Any], marker: PolicyMarker) -> Any | None:
    best = None
    for node in scalars:
        end = node.end_mark
        if end.line == marker.line and end.column <= marker.column:
            if node.style in ("|", ">"):
                continue
            if best is None or end.column > best.end_mark.column:
                best = node
    return best


def _policy_value(ref: ImageRef, marker: PolicyMarker, origin: str) -> str:
    if marker.field is None:
        return str(ref)
    if marker.field == "name":
        return ref.name
    if marker.field == "tag":
        if not ref.tag:
            raise YamlEditError(f"{origin}: {ref} has no tag for a :tag marker", "give a tag")
        return ref.tag
    if not ref.digest:
        raise YamlEditError(
            f"{origin}: line {marker.line + 1} has a :digest marker but {ref} has no digest",
            "promote a digest-pinned reference (name:tag@sha256:...)",
        )
    return ref.digest


def _read_policy(parsed: _Parsed, policy: str, origin: str) -> ImageRef:
    scalars = list(_value_scalars(parsed))
    parts: dict[str | None, str] = {}
    for marker in find_policy_markers(parsed.text):
        node = _scalar_on_line(scalars, marker) if marker.policy == policy else None
        if node is not None:
            parts.setdefault(marker.field, str(node.value))
    if None in parts:
        return _parse_ref(parts[None], origin, f"$imagepolicy {policy}")
    if "name" not in parts:
        raise YamlEditError(
            f'{origin}: no {{"$imagepolicy": "{policy}"}} or {policy}:name marker',
            "mark the image value (or its name, tag and digest) with the policy",
        )
    text = parts["name"] + (f":{parts['tag']}" if parts.get("tag") else "")
    text += f"@{parts['digest']}" if parts.get("digest") else ""
    return _parse_ref(text, origin, f"$imagepolicy {policy}")


# --- splicing and verification -------------------------------------------------------------

_PROPERTIES = re.compile(r"(?:(?:&[^\s]+|![^\s]*)\s+)+")


def _content_span(text: str, node: Any) -> tuple[int, int]:
    """Offsets of the scalar itself, without a leading `&anchor` or `!tag`."""
    start, end = node.start_mark.index, node.end_mark.index
    props = _PROPERTIES.match(text, start, end)
    return (props.end() if props else start), end


def _splice(parsed: _Parsed, original: str, slots: Sequence[_Slot], origin: str) -> EditResult:
    edits: list[tuple[int, int, str, ScalarChange]] = []
    for slot in slots:
        node = slot.node
        if node.value == slot.value:
            continue
        if slot.shared:
            _raise_shared(origin, slot.path)
        if node.style in ("|", ">"):
            raise YamlEditError(
                f"{origin}: {slot.path} is a block scalar",
                "write the image on one line (plain or quoted) to let imagebot set it",
            )
        start, end = _content_span(parsed.text, node)
        if any(s < end and start < e for s, e in parsed.masked):
            raise YamlEditError(
                f"{origin}: {slot.path} is inside a template expression", "set it by hand"
            )
        new = render_scalar(slot.value, node.style)
        change = ScalarChange(slot.path, node.start_mark.line + 1, str(node.value), slot.value)
        edits.append((start, end, new, change))
    if not edits:
        return EditResult(original, ())
    starts = sorted(edits, key=lambda e: e[0])
    for before, after in itertools.pairwise(starts):
        if after[0] < before[1] or before[0] == after[0]:
            raise YamlEditError(
                f"{origin}: {before[3].path} and {after[3].path} are the same scalar",
                "set each field once",
            )
    text, parsed_text = original, parsed.text
    for start, end, new, _ in sorted(edits, key=lambda e: e[0], reverse=True):
        text = text[:start] + new + text[end:]
        parsed_text = parsed_text[:start] + new + parsed_text[end:]
    _verify(parsed, parsed_text, edits, origin)
    return EditResult(text, tuple(e[3] for e in starts))


def _walk_nodes(docs: Sequence[Any]) -> Iterator[Any]:
    """Every node in document order; aliases are visited once, where they are defined."""
    seen: set[int] = set()

    def walk(node: Any) -> Iterator[Any]:
        if id(node) in seen:
            return
        seen.add(id(node))
        yield node
        for child in _children(node):
            yield from walk(child)

    for doc in docs:
        yield from walk(doc)


def _verify(
    parsed: _Parsed,
    new_text: str,
    edits: Sequence[tuple[int, int, str, ScalarChange]],
    origin: str,
) -> None:
    """Re-parse and check that exactly the intended scalars changed, to the intended strings."""
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.nodes import ScalarNode

    try:
        new_docs = _compose(new_text)
    except YAMLError as exc:
        raise YamlEditError(
            f"{origin}: the edit would break the YAML ({_yaml_problem(exc)})",
            "this is a bug in imagebot; the file was left untouched",
        ) from None
    wanted = {start: change.new for start, _, _, change in edits}
    old_nodes, new_nodes = list(_walk_nodes(parsed.docs)), list(_walk_nodes(new_docs))
    if len(old_nodes) != len(new_nodes):
        _verify_failed(origin, "the document structure changed")
    for old, new in zip(old_nodes, new_nodes, strict=True):
        line = old.start_mark.line + 1
        if type(old) is not type(new):
            _verify_failed(origin, f"line {line} changed kind")
        if isinstance(old, ScalarNode) and _content_span(parsed.text, old)[0] in wanted:
            if new.value != wanted[_content_span(parsed.text, old)[0]] or new.tag != STR_TAG:
                _verify_failed(origin, f"line {line} does not read back as the new string")
        elif old.tag != new.tag or (isinstance(old, ScalarNode) and old.value != new.value):
            _verify_failed(origin, f"line {line} changed unexpectedly")


def _verify_failed(origin: str, what: str) -> None:
    raise YamlEditError(
        f"{origin}: verification after the edit failed: {what}",
        "this is a bug in imagebot; the file was left untouched",
    )


# --- public API ----------------------------------------------------------------------------


def set_image(text: str, target: str, ref: ImageRef, origin: str = "<yaml>") -> EditResult:
    """Set the image at `target`: a dotted path, or `policy:NS:NAME` for Flux markers.

    Only a valid image reference (the OCI grammar, `validate.image_reference`) is spliced.
    """
    try:
        validate.image_reference(str(ref))
    except validate.InvalidValue as exc:
        raise YamlEditError(f"{origin}: {target}: {exc.message}", exc.hint) from None
    parsed = _parse(text, origin)
    with _duplicates_refused(origin, target):
        if target.startswith(POLICY_PREFIX):
            slots = _marker_slots(parsed, target[len(POLICY_PREFIX) :], ref, origin)
        else:
            slots = _image_slots(parsed, _locate(parsed, target, origin), ref, origin)
    return _splice(parsed, text, slots, origin)


@contextlib.contextmanager
def _duplicates_refused(origin: str, target: str) -> Iterator[None]:
    try:
        yield
    except _DuplicateKey as exc:
        lines = " and ".join(str(line) for line in exc.lines)
        raise YamlEditError(
            f"{origin}:{exc.lines[0]}: key {exc.key!r} on the way to {target!r} appears twice "
            f"(lines {lines})",
            "remove the duplicate key; tools disagree about which one counts",
        ) from None


def read_image(text: str, target: str, origin: str = "<yaml>") -> ImageRef:
    """The image reference currently at `target` (a dotted path or `policy:NS:NAME`)."""
    parsed = _parse(text, origin)
    with _duplicates_refused(origin, target):
        if target.startswith(POLICY_PREFIX):
            return _read_policy(parsed, target[len(POLICY_PREFIX) :], origin)
        return _read_image(_locate(parsed, target, origin), origin)
