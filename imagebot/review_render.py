"""PURE: a `Review` (imagebot.review) as text, Markdown or JSON data.

Every string comes from a pull request or from an upstream index: the text and Markdown
renderers pass each one through `imagebot.review_escape`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imagebot.advisories import CRAN
from imagebot.review import (
    CONFIRMATION_FIELD,
    INDEX_ONLY,
    EntryChange,
    LeavingPackage,
    NewPackage,
    PackageFacts,
    RChanges,
    Review,
    RFacts,
    RVerified,
    VersionChange,
    Vulnerabilities,
)
from imagebot.review_config import (
    ACCEPT_OPTION,
    ACCEPT_VARIABLE,
    CONFIG_FILE,
    ConfigChanges,
    config_value_text,
    jsonable,
)
from imagebot.review_escape import md, md_url, plain

NO_METADATA = "summary, licence and URLs unknown: the index has no metadata file (PEP 658)"


def _versions_text(versions: Sequence[str]) -> str:
    return ", ".join(versions) or "none"


def _entry_versions(change: EntryChange) -> str:
    if change.kind == "added":
        return change.new_version or ""
    if change.kind == "removed":
        return change.old_version or ""
    if change.old_version != change.new_version:
        return f"{change.old_version} -> {change.new_version}"
    return change.new_version or ""


def _entry_place(change: EntryChange) -> str:
    def place(source: str | None) -> str:
        return "index-only" if source == INDEX_ONLY else f"set {source}"

    if change.old_source and change.new_source and change.old_source != change.new_source:
        return f"{place(change.old_source)} -> {place(change.new_source)}"
    return place(change.new_source or change.old_source)


def _entry_at(change: EntryChange) -> str:
    at = f"{change.file}:{change.line}"
    return f"{at} in the base" if change.kind == "removed" else at


def _where(places: Sequence[str]) -> str:
    return ", ".join("the index (index-only)" if p == INDEX_ONLY else f"{p}.lock" for p in places)


def _how(package: NewPackage) -> str:
    if package.direct and package.via:
        return f"asked for, and needed by {', '.join(package.via)}"
    if package.direct:
        return "asked for"
    return f"needed by {', '.join(package.via)}" if package.via else "dependency"


_KIND_TEXT = {
    "major": "MAJOR upgrade",
    "minor": "minor upgrade",
    "patch": "patch upgrade",
    "other": "upgrade",
    "downgrade": "DOWNGRADE",
}
_MARK = {"added": "+", "changed": "~", "edited": "*", "removed": "-"}


def _yanked_text(facts: PackageFacts) -> str:
    if not facts.yanked:
        return "not yanked"
    return f"YANKED ({facts.yanked_reason})" if facts.yanked_reason else "YANKED"


def render_text(review: Review) -> str:
    p = plain
    changes = review.changes
    out = [f"imagebot review: the working tree against {p(review.base)}", ""]
    out += _text_config(review.config)
    out += _text_entries(changes.entries)
    source = f"; facts from {p(review.facts_source)}" if review.facts_source else ""
    new_items = []
    for n in changes.new_packages:
        new_items.append(f"  {p(n.name)} {p(n.version)}  {p(_how(n))}; in {p(_where(n.where))}")
        new_items.extend(f"      {line}" for line in _facts_lines(n.facts, p))
    out += _text_section(
        f"Python packages new to the locks or the index ({len(changes.new_packages)}"
        f"{source}, {review.requests} requests)",
        len(changes.new_packages),
        new_items,
    )
    out += _text_section(
        f"Version changes ({len(changes.version_changes)})",
        len(changes.version_changes),
        [
            f"{_text_move(v.name, v.old, v.new, v.kind)}; in {p(_where(v.where))}"
            for v in changes.version_changes
        ],
    )
    out += _text_section(
        f"Packages that leave ({len(changes.leaving)})",
        len(changes.leaving),
        [
            f"  {p(gone.name)} {p(_versions_text(gone.old))}; was in {p(_where(gone.where))}"
            for gone in changes.leaving
        ],
    )
    out += _text_r(changes.r, review.r_verified)
    out.append("Known vulnerabilities")
    out.extend(f"  {line}" for line in _vulnerability_lines(review.vulnerabilities, p))
    out.append("")
    out.append("Who this may hurt")
    out.extend(  # imagebot.impact.render_text: a line per package, indented lines under it
        f"    {p(line)}" if line.startswith("  ") else f"  {p(line)}"
        for line in review.who_this_may_hurt.splitlines()
    )
    out.append("")
    out.append(_verdict(review))
    return "\n".join(out) + "\n"


def _text_entries(entries: Sequence[EntryChange]) -> list[str]:
    """The text report's section of set and index-only entries the pull request changes."""
    p = plain
    out = [f"Entries added, changed or removed ({len(entries)})"]
    for c in entries:
        out.append(
            f"  {_MARK[c.kind]} {c.kind} {c.ecosystem} {p(c.name)} {p(_entry_versions(c))}"
            f"  {p(_entry_place(c))}  {p(_entry_at(c))}"
        )
        out.append(f"      requested by {p(c.requested_by)}: {p(c.reason)}")
        if c.confirmed:
            out.append(f"      safe because: {p(c.safe_because or '')}")
        elif c.needs_confirmation:
            out.append(f"      safe because: MISSING ({CONFIRMATION_FIELD} is required)")
    if not entries:
        out.append("  none")
    return [*out, ""]


def _text_r(r: RChanges, verified: RVerified) -> list[str]:
    """The text report's R sections: packages new to, changed in and leaving the R lock."""
    p = plain
    preface = [f"  {p(_verified_text(verified))}"] if verified.packages else []
    if r.note:
        preface.append(f"  note: {p(r.note)}")
    new_items = []
    for n in r.new_packages:
        new_items.append(f"  {p(n.name)} {p(n.version)}  {p(_r_how(n.vetted_in, n.dependency_of))}")
        new_items.extend(f"      {line}" for line in _r_facts_lines(n.facts, p))
    return [
        *_text_section(
            f"R packages new to the R lock ({len(r.new_packages)}; {R_FACTS_SOURCE})",
            len(r.new_packages),
            new_items,
            preface,
        ),
        *_text_section(
            f"R version changes ({len(r.version_changes)})",
            len(r.version_changes),
            [
                f"{_text_move(v.name, v.old, v.new, v.kind)}; "
                f"{p(_r_how(v.vetted_in, v.dependency_of))}"
                for v in r.version_changes
            ],
        ),
        *_text_section(
            f"R packages that leave ({len(r.leaving)})",
            len(r.leaving),
            [
                f"  {p(gone.name)} {p(_versions_text(gone.old))}; was "
                f"{p(_r_how(gone.vetted_in, gone.dependency_of))}"
                for gone in r.leaving
            ],
        ),
    ]


def _text_section(
    heading: str, count: int, items: Sequence[str], preface: Sequence[str] = ()
) -> list[str]:
    """A text section: its heading line, preface lines, the items or "none", a blank line."""
    return [heading, *preface, *(items if count else ["  none"]), ""]


def _text_move(name: str, old: Sequence[str], new: Sequence[str], kind: str) -> str:
    """One version change as an indented text line."""
    p = plain
    return f"  {p(name)} {p(_versions_text(old))} -> {p(_versions_text(new))}  {_KIND_TEXT[kind]}"


R_FACTS_SOURCE = (
    "facts from requirements/cran.lock, the upstream's PACKAGES fields, which record no "
    "publication date"
)
NO_R_FACTS = "facts: not in requirements/cran.lock (imagebot lock writes them)"


def _verified_text(verified: RVerified) -> str:
    requests = f"{verified.requests} request{'s' if verified.requests != 1 else ''}"
    verb = "lists" if len(verified.upstreams) == 1 else "list"
    return (
        f"verified: the PACKAGES of {' and '.join(verified.upstreams)} {verb} the "
        f"{verified.packages} new or changed package versions of requirements/cran.lock exactly "
        f"as the lock says ({requests})" + _upstream_changed_text(verified)
    )


def _upstream_changed_text(verified: RVerified) -> str:
    if not verified.changed_by_pull_request:
        return ""
    keys = ", ".join(verified.changed_by_pull_request)
    return (
        f"; BUT this pull request itself sets that upstream (it changes {CONFIG_FILE}'s {keys}), "
        f"so the upstream vouching for its lock is the pull request's own: see "
        f'"{CONFIG_SECTION}"'
    )


CONFIG_SECTION = "Where packages come from and go"
CONFIG_INTRO = (
    f"this pull request changes {CONFIG_FILE}: keys that decide what gets built, served and run "
    "and where packages come from and go (a package request needs none of them); values as the "
    "file writes them, before ${VAR:-default} expansion"
)


def _config_title(config: ConfigChanges) -> str:
    state = "accepted" if config.accepted else "NOT accepted" if config.changes else "not compared"
    return f"{CONFIG_SECTION}: {CONFIG_FILE} changes ({len(config.changes)}; {state})"


def _config_verdict(config: ConfigChanges) -> str:
    if config.accepted:
        return (
            f"accepted with {ACCEPT_OPTION} {config.fingerprint}: exactly these changes, as a "
            "reviewer confirmed"
        )
    refused = (
        f"the acceptance given ({config.refused}) is not for these changes; "
        if config.refused
        else ""
    )
    return (
        f"NOT accepted: {refused}the review fails (exit 4) until a platform maintainer who has "
        f"read these changes reruns it with {ACCEPT_OPTION} {config.fingerprint} (or "
        f"{ACCEPT_VARIABLE}={config.fingerprint})"
    )


def _text_config(config: ConfigChanges) -> list[str]:
    """The text report's first section, only when imagebot.toml changed (or was not read)."""
    if not config.shown:
        return []
    p = plain
    out = [f"!! {_config_title(config)}", f"  {p(CONFIG_INTRO)}"]
    if config.note:
        out.append(f"  note: {p(config.note)}")
    for c in config.changes:
        out.append(
            f"  {_MARK[c.kind]} {p(c.key)}: {p(config_value_text(c.old), 500)} -> "
            f"{p(config_value_text(c.new), 500)}"
        )
        out.append(
            f"      {p(c.meaning or 'not a key imagebot reads (imagebot check refuses it)')}"
        )
        if c.r_upstream:
            out.append("      it picks the upstream that vouches for requirements/cran.lock")
    if config.changes:
        out.append(f"  {p(_config_verdict(config))}")
    return [*out, ""]


def _md_config(config: ConfigChanges) -> list[str]:
    """The Markdown report's first section, only when imagebot.toml changed (or was not read)."""
    if not config.shown:
        return []
    m = md
    out = [
        f"### {m(_config_title(config))}",
        "",
        f"**{m(CONFIG_INTRO[0].upper() + CONFIG_INTRO[1:])}.**",
        "",
    ]
    if config.note:
        out += [f"**Note: {m(config.note)}.**", ""]
    if config.changes:
        out.append("| | key | before | after | what it decides |")
        out.append("|---|---|---|---|---|")
        for c in config.changes:
            meaning = m(c.meaning) or "not a key imagebot reads (imagebot check refuses it)"
            if c.r_upstream:
                meaning += "; **it picks the upstream that vouches for requirements/cran.lock**"
            out.append(
                f"| {c.kind} | {m(c.key)} | {m(config_value_text(c.old), 500)} | "
                f"{m(config_value_text(c.new), 500)} | {meaning} |"
            )
        out += [
            "",
            f"**{m(_config_verdict(config))}**"
            if not config.accepted
            else m(_config_verdict(config)),
            "",
        ]
    return out


def _config_json(config: ConfigChanges) -> dict[str, Any]:
    return {
        "file": CONFIG_FILE,
        "changes": [
            {**_asdict(c, exclude=("old", "new")), "old": jsonable(c.old), "new": jsonable(c.new)}
            for c in config.changes
        ],
        "note": config.note,
        "fingerprint": config.fingerprint,
        "accepted": config.accepted,
    }


def _r_how(vetted_in: Sequence[str], dependency_of: Sequence[str]) -> str:
    """Why an R package is in the lock: the entries that vet it, the vetted pins that need it."""
    parts = []
    if vetted_in:
        places = ", ".join("index-only" if s == INDEX_ONLY else f"set {s}" for s in vetted_in)
        parts.append(f"asked for in {places}")
    if dependency_of:
        parts.append(f"needed by {', '.join(dependency_of)}")
    return "; ".join(parts) or "in the lock"


def _r_facts_lines(facts: RFacts | None, p: Any) -> list[str]:
    if facts is None:
        return [NO_R_FACTS]
    return [
        f"licence: {p(facts.license) or 'not stated'}",
        f"compiles C/C++/Fortran code: {'yes' if facts.needs_compilation else 'no'}",
        f"from {p(facts.upstream) or 'an upstream the lock does not name'}",
    ]


def _facts_lines(facts: PackageFacts | None, p: Any) -> list[str]:
    if facts is None:
        return ["facts: not looked up"]
    if facts.problem:
        return [f"facts: unavailable ({p(facts.problem)})"]
    if facts.metadata:
        lines = [p(facts.summary) or "(no summary)"]
        lines.append(f"licence: {p(facts.license) or 'not stated'}")
        lines.append(f"project: {p(facts.project_url) or 'not stated'}")
        lines.append(f"source: {p(facts.source_url) or 'not stated'}")
    else:
        lines = [NO_METADATA]
    lines.append(
        f"uploaded {p(facts.uploaded) or 'unknown'}; first release of the project "
        f"{p(facts.first_release) or 'unknown'}; {p(_yanked_text(facts))}"
    )
    return lines


def _vulnerability_lines(vulns: Vulnerabilities, p: Any) -> list[str]:
    if not vulns.checked:
        return [p(vulns.note)]
    lines = [p(vulns.note)] if vulns.note else []
    if not vulns.found:
        return lines or ["none known"]
    for v in vulns.found:
        aliases = f" ({', '.join(v.aliases)})" if v.aliases else ""
        fixed = f"; fixed in {', '.join(v.fixed)}" if v.fixed else "; no fixed version"
        waived = f"; waived: {v.waived}" if v.waived else ""
        label = "R " if v.ecosystem == CRAN else ""
        lines.append(p(f"{label}{v.name} {v.version}: {v.id}{aliases}{fixed}{waived}"))
        if v.summary:
            lines.append(f"  {p(v.summary)}")
    return lines


def _verdict(review: Review) -> str:
    count = len(review.problems)
    unaccepted = bool(review.config.problems())
    if not count and not unaccepted:
        return "No problems: every added or changed entry carries its requester's confirmation."
    if not count:
        return (
            "Every added or changed entry carries its requester's confirmation, but "
            f"{CONFIG_FILE} changes that no reviewer has accepted fail the review; see below."
        )
    noun = "entry lacks" if count == 1 else "entries lack"
    also = (
        f" {CONFIG_FILE} changes that no reviewer has accepted fail it too." if unaccepted else ""
    )
    return f"{count} {noun} the requester's confirmation ({CONFIRMATION_FIELD}); see below.{also}"


def render_markdown(review: Review) -> str:
    m = md
    changes = review.changes
    out = ["## Package review", "", f"Compared with {m(review.base)}.", ""]
    out += _md_config(review.config)
    out += _md_entries(changes.entries)
    out += _md_new_packages(review)
    out += _md_version_changes(changes.version_changes)
    out += _md_leaving(changes.leaving)
    out += _md_r(changes.r, review.r_verified)
    out.append("### Known vulnerabilities")
    out.append("")
    out.extend(
        f"- {line}" if not line.startswith("  ") else f"  - {line.strip()}"
        for line in _vulnerability_lines(review.vulnerabilities, m)
    )
    out.append("")
    out.append("### Who this may hurt")
    out.append("")
    out.extend(
        f"  - {m(line)}" if line.startswith("  ") else f"- {m(line)}"
        for line in review.who_this_may_hurt.splitlines()
    )
    out.append("")
    verdict = _verdict(review)
    out.append(f"**{m(verdict)}**" if review.all_problems else m(verdict))
    for problem in review.all_problems:
        out.append(f"- {m(problem.render())}")
    return "\n".join(out) + "\n"


def _md_entries(entries: Sequence[EntryChange]) -> list[str]:
    """The Markdown table of the set and index-only entries the pull request changes."""
    m = md
    out = [f"### Entries added, changed or removed ({len(entries)})", ""]
    if not entries:
        return [*out, "None.", ""]
    out.append("| | package | version | where | requested by | reason | safe because |")
    out.append("|---|---|---|---|---|---|---|")
    for c in entries:
        if c.confirmed:
            safe = m(c.safe_because or "")
        elif c.needs_confirmation:
            safe = "**missing**"
        else:
            safe = ""
        out.append(
            f"| {c.kind} | {c.ecosystem} {m(c.name)} | {m(_entry_versions(c))} | "
            f"{m(_entry_place(c))} ({m(_entry_at(c))}) | {m(c.requested_by)} | "
            f"{m(c.reason)} | {safe} |"
        )
    return [*out, ""]


def _md_section(
    title: str, count: int, items: Sequence[str], preface: Sequence[str] = ()
) -> list[str]:
    """A Markdown section: `### title (count)`, its preface paragraphs, the list or "None."."""
    return [f"### {title} ({count})", "", *preface, *(items if count else ["None."]), ""]


def _md_move(name: str, old: Sequence[str], new: Sequence[str], kind: str) -> str:
    """One version change as a list item; a major upgrade or a downgrade in bold."""
    text = _KIND_TEXT[kind]
    shown = f"**{text}**" if kind in ("major", "downgrade") else text
    return f"- {md(name)} {md(_versions_text(old))} → {md(_versions_text(new))}: {shown}"


def _md_new_packages(review: Review) -> list[str]:
    """The Markdown list of Python packages new to the locks or the index, with their facts."""
    m = md
    new_packages = review.changes.new_packages
    preface = []
    if review.facts_source:
        preface = [f"Facts from {md_url(review.facts_source)}, {review.requests} requests.", ""]
    items = []
    for n in new_packages:
        items.append(f"- **{m(n.name)} {m(n.version)}**: {m(_how(n))}; in {m(_where(n.where))}")
        items.extend(f"  - {line}" for line in _facts_markdown(n.facts))
    title = "Python packages new to the locks or the index"
    return _md_section(title, len(new_packages), items, preface)


def _md_version_changes(version_changes: Sequence[VersionChange]) -> list[str]:
    """The Markdown list of version changes; a major upgrade or a downgrade in bold."""
    items = [
        f"{_md_move(v.name, v.old, v.new, v.kind)}; in {md(_where(v.where))}"
        for v in version_changes
    ]
    return _md_section("Version changes", len(version_changes), items)


def _md_leaving(leaving: Sequence[LeavingPackage]) -> list[str]:
    """The Markdown list of packages that leave the locks and the index."""
    m = md
    items = [
        f"- {m(gone.name)} {m(_versions_text(gone.old))}; was in {m(_where(gone.where))}"
        for gone in leaving
    ]
    return _md_section("Packages that leave", len(leaving), items)


def _md_r(r: RChanges, verified: RVerified) -> list[str]:
    """The Markdown R sections: packages new to, changed in and leaving the R lock."""
    m = md
    preface = [f"{m(R_FACTS_SOURCE[0].upper() + R_FACTS_SOURCE[1:])}.", ""]
    if verified.packages:
        text = _verified_text(verified)
        preface += [f"{m(text[0].upper() + text[1:])}.", ""]
    if r.note:
        preface += [f"**Note: {m(r.note)}.**", ""]
    new_items = []
    for n in r.new_packages:
        new_items.append(
            f"- **{m(n.name)} {m(n.version)}**: {m(_r_how(n.vetted_in, n.dependency_of))}"
        )
        if n.facts is None:
            new_items.append(f"  - {m(NO_R_FACTS)}")
            continue
        compiles = "yes" if n.facts.needs_compilation else "no"
        upstream = md_url(n.facts.upstream) if n.facts.upstream else "not named"
        new_items.append(f"  - licence: {m(n.facts.license) or 'not stated'}")
        new_items.append(f"  - compiles C/C++/Fortran code: {compiles}; from {upstream}")
    changes = [
        f"{_md_move(v.name, v.old, v.new, v.kind)}; {m(_r_how(v.vetted_in, v.dependency_of))}"
        for v in r.version_changes
    ]
    leaving = [
        f"- {m(gone.name)} {m(_versions_text(gone.old))}; was "
        f"{m(_r_how(gone.vetted_in, gone.dependency_of))}"
        for gone in r.leaving
    ]
    return [
        *_md_section("R packages new to the R lock", len(r.new_packages), new_items, preface),
        *_md_section("R version changes", len(r.version_changes), changes),
        *_md_section("R packages that leave", len(r.leaving), leaving),
    ]


def _facts_markdown(facts: PackageFacts | None) -> list[str]:
    m = md
    if facts is None:
        return ["facts: not looked up"]
    if facts.problem:
        return [f"facts unavailable: {m(facts.problem)}"]
    urls = ", ".join(
        f"{label} {md_url(url)}"
        for label, url in (("project", facts.project_url), ("source", facts.source_url))
        if url
    )
    yanked = f"**{m(_yanked_text(facts))}**" if facts.yanked else "not yanked"
    described = [
        m(facts.summary) or "(no summary)",
        f"licence: {m(facts.license) or 'not stated'}; {urls or 'no project or source URL'}",
    ]
    return [
        *(described if facts.metadata else [m(NO_METADATA)]),
        f"uploaded {m(facts.uploaded) or 'unknown'}, first release of the project "
        f"{m(facts.first_release) or 'unknown'}; {yanked}",
    ]


def review_json(review: Review) -> dict[str, Any]:
    """The review as plain JSON data (values as they are; JSON escapes them)."""
    changes = review.changes
    return {
        "base": review.base,
        "config": _config_json(review.config),
        "entries": [_asdict(c) for c in changes.entries],
        "new_packages": [
            {**_asdict(n, exclude=("facts",)), "facts": _asdict(n.facts) if n.facts else None}
            for n in changes.new_packages
        ],
        "version_changes": [_asdict(v) for v in changes.version_changes],
        "leaving": [_asdict(gone) for gone in changes.leaving],
        "r": {
            "new_packages": [
                {
                    **_asdict(n, exclude=("facts",)),
                    "facts": _asdict(n.facts) if n.facts else None,
                }
                for n in changes.r.new_packages
            ],
            "version_changes": [_asdict(v) for v in changes.r.version_changes],
            "leaving": [_asdict(gone) for gone in changes.r.leaving],
            "note": changes.r.note,
            "verified": _asdict(review.r_verified),
        },
        "facts_source": review.facts_source,
        "requests": review.requests,
        "vulnerabilities": {
            "checked": review.vulnerabilities.checked,
            "note": review.vulnerabilities.note,
            "found": [_asdict(v) for v in review.vulnerabilities.found],
        },
        "who_this_may_hurt": review.who_this_may_hurt,
        "problems": [
            {"file": p.file, "line": p.line, "message": p.message, "hint": p.hint}
            for p in review.all_problems
        ],
    }


def _asdict(obj: Any, exclude: Sequence[str] = ()) -> dict[str, Any]:
    from dataclasses import fields

    return {
        f.name: list(value) if isinstance(value := getattr(obj, f.name), tuple) else value
        for f in fields(obj)
        if f.name not in exclude
    }
