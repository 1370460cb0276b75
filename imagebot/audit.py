"""The vulnerability gate: every version the image locks and the index serves, against OSV.

`packages_to_audit` collects what is audited: the pins of every locked image's sets
(`requirements/<set>.lock`), the entries of `requirements/index-only.toml`, the sets' and
index-only R entries and every R package of the R lock (`requirements/cran.lock`, dependencies
included; OSV ecosystem CRAN), and, given an index manifest, every Python and R package the
vetted index serves. `deployed_packages` collects instead what environments run now, from their
images' package manifests. `audit` asks an advisory source
(`imagebot.osv`) for their records, keeps the findings whose version an advisory in force
affects (`imagebot.advisories`), and splits them by the waivers (`imagebot.waivers`). It
returns an `AuditResult` and prints nothing: `imagebot.commands.audit` prints it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from imagebot.advisories import CRAN, PYPI, Finding, Package, find_affected, merge_packages
from imagebot.waivers import Waiver, apply_waivers

if TYPE_CHECKING:
    from collections.abc import Mapping

    from imagebot.config import Config
    from imagebot.errors import VulnerabilityError
    from imagebot.index_pages import IndexManifest
    from imagebot.osv import AdvisorySource

INDEX_ORIGIN = "index"


@dataclass(frozen=True)
class AuditResult:
    source: str
    packages: tuple[Package, ...]
    findings: tuple[Finding, ...]  # not waived: each fails the audit
    waived: tuple[tuple[Finding, Waiver], ...]
    expired: tuple[Waiver, ...]  # each fails the audit
    unused: tuple[Waiver, ...]  # waivers in force that matched nothing (a warning)
    requests: int
    files_read: int
    seconds: float
    today: date

    @property
    def passed(self) -> bool:
        return not self.findings and not self.expired

    def summary_line(self) -> str:
        cost = []
        if self.requests:
            cost.append(counted(self.requests, "request"))
        if self.files_read:
            cost.append(f"{counted(self.files_read, 'record')} read")
        spent = f" ({', '.join(cost)})" if cost else ""
        return (
            f"audit: {counted(len(self.packages), 'package')} against {self.source}{spent} "
            f"in {self.seconds:.1f}s: "
            f"{counted(len(self.findings), 'known vulnerability', 'known vulnerabilities')} "
            f"not waived, {len(self.waived)} waived, "
            f"{counted(len(self.expired), 'expired waiver')}"
        )

    def report_lines(self) -> list[str]:
        """The text report: every open finding, then waived ones, expired and unused waivers."""
        lines = [self.summary_line()]
        for finding in self.findings:
            lines.extend(_finding_lines(finding))
        for finding, waiver in self.waived:
            lines.extend(_finding_lines(finding, "waived "))
            lines.append(
                f"    waived until {waiver.expires} by {waiver.approved_by}: {waiver.reason} "
                f"({waiver.where})"
            )
        for waiver in self.expired:
            lines.append(expired_line(waiver))
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "source": self.source,
            "date": self.today.isoformat(),
            "packages": len(self.packages),
            "requests": self.requests,
            "files_read": self.files_read,
            "seconds": round(self.seconds, 3),
            "findings": [_finding_json(f) for f in self.findings],
            "waived": [{**_finding_json(f), "waiver": _waiver_json(w)} for f, w in self.waived],
            "expired_waivers": [_waiver_json(w) for w in self.expired],
            "unused_waivers": [_waiver_json(w) for w in self.unused],
        }


def counted(count: int, noun: str, plural: str = "") -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def expired_line(waiver: Waiver) -> str:
    return (
        f"{waiver.where}: waiver {waiver.describe()} expired on {waiver.expires} "
        f"(approved by {waiver.approved_by})"
    )


def unused_line(waiver: Waiver) -> str:
    return f"{waiver.where}: waiver {waiver.describe()} matches no finding; remove it"


def _finding_lines(finding: Finding, prefix: str = "") -> list[str]:
    advisory = finding.advisory
    aliases = f" ({', '.join(advisory.aliases)})" if advisory.aliases else ""
    label = f" [{advisory.severity_label}]" if advisory.severity_label else ""
    return [
        f"{prefix}{finding.package} ({', '.join(finding.package.origins)}): "
        f"{advisory.id}{aliases}{label}, {finding.fix_text}",
        f"    {advisory.summary}",
    ]


def _finding_json(finding: Finding) -> dict[str, Any]:
    advisory = finding.advisory
    return {
        "ecosystem": finding.package.ecosystem,
        "name": finding.package.name,
        "version": finding.package.version,
        "origins": list(finding.package.origins),
        "id": advisory.id,
        "aliases": list(advisory.aliases),
        "summary": advisory.summary,
        "severity": [{"type": s.type, "score": s.score} for s in advisory.severity],
        "severity_label": advisory.severity_label,
        "fixed": list(finding.fixed),
        "modified": advisory.modified,
    }


def _waiver_json(waiver: Waiver) -> dict[str, Any]:
    return {
        "advisory": waiver.advisory,
        "ecosystem": waiver.ecosystem,
        "package": waiver.package,
        "reason": waiver.reason,
        "approved_by": waiver.approved_by,
        "expires": waiver.expires.isoformat(),
        "where": waiver.where,
    }


def audit(
    packages: Sequence[Package],
    source: AdvisorySource,
    waivers: Sequence[Waiver],
    today: date,
) -> AuditResult:
    """Audit `packages` against `source`; split the findings by `waivers` in force `today`."""
    start = time.monotonic()
    merged = merge_packages(packages)
    records = source.records(merged)
    findings = find_affected(merged, records.by_package)
    split = apply_waivers(findings, waivers, today)
    return AuditResult(
        source=source.description,
        packages=tuple(merged),
        findings=split.open,
        waived=split.waived,
        expired=split.expired,
        unused=split.unused,
        requests=records.requests,
        files_read=records.files_read,
        seconds=time.monotonic() - start,
        today=today,
    )


def packages_to_audit(config: Config, manifest: IndexManifest | None = None) -> list[Package]:
    """The image's locked pins, the index-only entries, the R lock and, given a manifest, the
    whole index. A missing R lock is `lock --check`'s to report: the R entries are audited."""
    from imagebot.cranlock import CRAN_LOCK_NAME, cran_lock_path, parse_cran_lock
    from imagebot.errors import StaleError
    from imagebot.index import load_roots
    from imagebot.index_pages import INDEX_ONLY_SET
    from imagebot.lockfile import lock_path, pins
    from imagebot.requirements import load_index_only, load_sets

    packages: list[Package] = []
    sets = load_sets(config.requirements_dir)
    for requirement_set in sets:
        origin = f"{requirement_set.name}.toml"
        packages.extend(
            Package(CRAN, entry.name, entry.version, (origin,))
            for entry in requirement_set.entries("r")
        )
    index_only = load_index_only(config.requirements_dir, sets)
    if index_only is not None:
        packages.extend(
            Package(CRAN, entry.name, entry.version, (f"{INDEX_ONLY_SET}.toml",))
            for entry in index_only.entries("r")
        )
    set_names = dict.fromkeys(name for image in config.locked_images for name in image.sets)
    for set_name in set_names:
        path = lock_path(config.requirements_dir, set_name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise StaleError(
                f"{path} does not exist, so the image's versions are unknown",
                "run imagebot lock, then imagebot audit",
            ) from None
        origin = f"{set_name}.lock"
        packages.extend(Package(PYPI, pin.name, pin.version, (origin,)) for pin in pins(text))
    r_lock = cran_lock_path(config.requirements_dir)
    try:
        r_text = r_lock.read_text(encoding="utf-8")
    except FileNotFoundError:
        r_text = None
    if r_text is not None:
        packages.extend(
            Package(CRAN, p.name, p.version, (CRAN_LOCK_NAME,))
            for p in parse_cran_lock(r_text, str(r_lock)).packages
        )
    for root in load_roots(config.requirements_dir):
        if root.source == INDEX_ONLY_SET:
            packages.append(Package(PYPI, root.key, root.version, (f"{INDEX_ONLY_SET}.toml",)))
    if manifest is not None:
        packages.extend(
            Package(PYPI, p.pin.name, p.version, (INDEX_ORIGIN,)) for p in manifest.packages
        )
        packages.extend(
            Package(CRAN, p.package.name, p.package.version, (INDEX_ORIGIN,))
            for p in manifest.r.packages
        )
    return merge_packages(packages)


def audit_failure(result: AuditResult) -> VulnerabilityError:
    """The one error (exit 15) of a failed audit, for `imagebot audit` and `imagebot release`."""
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


def deployed_packages(
    config: Config, env_names: Sequence[str], env: Mapping[str, str]
) -> list[Package]:
    """What the environments run now: each image ref their GitOps file holds, by its package
    manifest (the manifest cache when the digest was listed before, else one container run)."""
    from imagebot.manifest import read_manifest
    from imagebot.promote import current_refs

    ecosystems = {"python": PYPI, "r": CRAN}
    packages: list[Package] = []
    for env_name in env_names:
        for image, ref in current_refs(config, env_name, env=env).items():
            manifest = read_manifest(config, str(ref), env=env)
            origin = f"{env_name}:{image}"
            for ecosystem, osv_name in ecosystems.items():
                found = manifest.packages.get(ecosystem, {})
                packages.extend(
                    Package(osv_name, name, version, (origin,)) for name, version in found.items()
                )
    return merge_packages(packages)
