"""Command: audit, every version the image locks and the index serves against OSV advisories.

The work is imagebot.audit's; this module picks the source, prints the report (text on stderr,
`--json` on stdout) and fails with exit 15 on a finding that is not waived or an expired waiver.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
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
    deployed: list[str] = typer.Option(
        [],
        "--deployed",
        metavar="ENV",
        help="Audit what ENV runs now (the images its GitOps file holds, by their package "
        "manifests) instead of the working tree's locks; repeatable.",
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
    from imagebot.advisories import merge_packages
    from imagebot.audit import audit as run_audit
    from imagebot.audit import audit_failure, deployed_packages, packages_to_audit, unused_line
    from imagebot.index import load_manifest
    from imagebot.state import state
    from imagebot.waivers import load_waivers

    config = state(ctx).config
    waivers = load_waivers(config.requirements_dir)
    manifest = load_manifest(index) if index else None
    if deployed:
        for name in deployed:
            config.environment(name)  # an unknown name fails before any work
        packages = deployed_packages(config, deployed, os.environ)
        if manifest is not None:
            packages = merge_packages([*packages, *packages_to_audit(config, manifest)])
    else:
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
        raise audit_failure(result)


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
