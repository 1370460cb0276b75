"""Command: audit, every version the image locks and the index serves against OSV advisories.

The work is imagebot.audit's; this module picks the source, prints the report (text on stderr,
`--json` on stdout) and fails with exit 15 on a finding that is not waived or an expired waiver.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from imagebot.audit import AuditResult
    from imagebot.config import Config
    from imagebot.osv import AdvisorySource


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


def audit(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    index: str | None = typer.Option(
        None,
        "--index",
        help="Also audit every package of this vetted index: a built OUT directory or its URL.",
    ),
    source: str | None = typer.Option(
        None,
        "--source",
        help="Advisory source: an OSV API URL or a directory of OSV records "
        "(default: [advisories] source in imagebot.toml).",
    ),
) -> None:
    """Check every locked and indexed version against OSV advisories; exit 15 on a known
    vulnerability that is not waived (requirements/waivers.toml) or on an expired waiver."""
    from imagebot import console
    from imagebot.audit import audit as run_audit
    from imagebot.audit import packages_to_audit, unused_line
    from imagebot.index import load_manifest
    from imagebot.state import state
    from imagebot.waivers import load_waivers

    config = state(ctx).config
    waivers = load_waivers(config.requirements_dir)
    manifest = load_manifest(index) if index else None
    packages = packages_to_audit(config, manifest)
    advisory_source = _source(config, source)
    result = run_audit(packages, advisory_source, waivers, datetime.now(UTC).date())
    for line in result.report_lines():
        console.info(line)
    for waiver in result.unused:
        console.warning(unused_line(waiver))
    if as_json:
        console.print_json(result.to_json())
    if not result.passed:
        raise _failure(result)


def _source(config: Config, option: str | None) -> AdvisorySource:
    """--source (relative to the working directory), else imagebot.toml's (relative to it)."""
    from imagebot import console
    from imagebot.errors import AdvisorySourceError, UsageError
    from imagebot.osv import source_for

    on_retry = console.info
    if option:
        try:
            return source_for(option, Path.cwd(), on_retry=on_retry)
        except AdvisorySourceError as exc:
            raise UsageError(f"--source: {exc.message}", exc.hint) from None
    return source_for(config.advisories.source, config.root, on_retry=on_retry)


def _failure(result: AuditResult) -> Exception:
    from imagebot.audit import counted, expired_line
    from imagebot.errors import VulnerabilityError

    waivers = "requirements/waivers.toml"
    if not result.findings and len(result.expired) == 1:
        return VulnerabilityError(
            expired_line(result.expired[0]),
            "renew it (a new expires date, approved again) or remove it and upgrade the package",
        )
    parts, hints = [], []
    if result.findings:
        count = counted(len(result.findings), "known vulnerability", "known vulnerabilities")
        parts.append(f"{count} not waived")
        hints.append(
            "upgrade to a fixed version (edit the set, or imagebot lock --upgrade for a "
            f"dependency), or waive it for a while in {waivers} with reason, approved_by and expires"
        )
    if result.expired:
        parts.append(counted(len(result.expired), "waiver") + " expired")
        hints.append("renew each expired waiver (a new expires date, approved again) or remove it")
    return VulnerabilityError(", ".join(parts), "; ".join(hints))
