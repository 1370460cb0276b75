"""PURE: requirements/waivers.toml, the known vulnerabilities the platform team accepts for now.

One line per advisory and package, like a set file's entries, so that a waiver is a one-line
pull request that a reviewer reads whole:

    [python]
    "PYSEC-2018-28" = { package = "requests", reason = "only talks to our own https hosts", approved_by = "@platform-team", expires = 2027-03-01 }

    [r]
    "RSEC-2023-1" = { package = "readxl", reason = "no user uploads are read", approved_by = "@platform-team", expires = 2027-03-01 }

[python] waives a Python package (OSV ecosystem PyPI, names PEP 503 normalised), [r] an R
package (CRAN, names exact, as R spells them). The key is the advisory's id or one of its
aliases (CVE, GHSA). `expires` is a TOML date (no
quotes); the waiver is in force before that day and has expired on it. Every field is checked
(`imagebot.validate`), and every problem is reported at once with `file:line` (exit 4).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagebot import validate
from imagebot.errors import Problem, RequirementsError
from imagebot.requirements import line_numbers

if TYPE_CHECKING:
    from imagebot.advisories import Finding

WAIVERS_FILE = "waivers.toml"
# imagebot.advisories.PYPI and CRAN, the OSV ecosystem names: imagebot.advisories (its record
# model and JSON) is imported only when a waiver is read, so `check` does not pay for it when
# the waivers file has none.
PYPI, CRAN = "PyPI", "CRAN"
FIELDS = ("package", "reason", "approved_by", "expires")
ECOSYSTEMS = {"python": PYPI, "r": CRAN}  # table name -> OSV ecosystem
PACKAGE_RULES = {PYPI: validate.python_name, CRAN: validate.r_name}
EXAMPLE = (
    '"PYSEC-2018-28" = { package = "requests", reason = "why it is acceptable", '
    'approved_by = "@platform-team", expires = 2027-03-01 }'
)


@dataclass(frozen=True)
class Waiver:
    advisory: str  # the id or alias it names
    ecosystem: str  # OSV ecosystem, e.g. PyPI
    package: str  # PEP 503 normalised for PyPI; as R spells it for CRAN
    reason: str
    approved_by: str
    expires: date
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def expired(self, today: date) -> bool:
        return today >= self.expires

    def covers(self, finding: Finding) -> bool:
        return (
            finding.package.key == (self.ecosystem, self.package)
            and self.advisory in finding.advisory.names()
        )

    def describe(self) -> str:
        return f"{self.advisory} for {self.package}"


def parse_waivers(file: str, text: str) -> tuple[list[Waiver], list[Problem]]:
    """Every waiver in the file, and every problem (a waiver with a problem is left out)."""
    problems: list[Problem] = []

    def problem(line: int, message: str, hint: str) -> None:
        problems.append(Problem(file, line, message, hint))

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"line (\d+)", str(exc))  # tomllib has no lineno before 3.14
        problem(int(where.group(1)) if where else 0, f"invalid TOML: {exc}", f"e.g. {EXAMPLE}")
        return [], problems
    except RecursionError:
        problem(0, "invalid TOML: nested too deeply", f"e.g. {EXAMPLE}")
        return [], problems
    lines = line_numbers(text)
    waivers: list[Waiver] = []
    for table, entries in raw.items():
        if table not in ECOSYSTEMS:
            problem(
                lines.get(("", table), 0),
                f"unknown table [{table}]",
                f"waivers go under {', '.join(f'[{t}]' for t in ECOSYSTEMS)}",
            )
            continue
        if not isinstance(entries, Mapping):
            problem(0, f"[{table}] must be a table", f"write [{table}] on its own line")
            continue
        for key, entry in entries.items():
            line = lines.get((table, key), 0)
            waiver = _waiver(ECOSYSTEMS[table], key, entry, file, line, problem)
            if waiver is not None:
                waivers.append(waiver)
    return waivers, problems


def _waiver(
    ecosystem: str, key: str, entry: Any, file: str, line: int, problem: Any
) -> Waiver | None:
    from imagebot.advisories import advisory_id, package_key

    try:
        advisory = advisory_id(key)
    except validate.InvalidValue as exc:
        problem(line, exc.message, exc.hint)
        return None
    if not isinstance(entry, Mapping):
        problem(line, f"waiver {advisory} must be an inline table", f"e.g. {EXAMPLE}")
        return None
    ok = True
    for field in entry:
        if field not in FIELDS:
            problem(
                line,
                f"unknown field {field!r} in waiver {advisory}",
                f"allowed fields: {', '.join(FIELDS)}",
            )
            ok = False
    for field in FIELDS:
        if field not in entry:
            problem(line, f"waiver {advisory} has no {field}", f"e.g. {EXAMPLE}")
            ok = False
    if not ok:
        return None
    checks = {
        "package": PACKAGE_RULES[ecosystem],
        "reason": validate.one_line,
        "approved_by": validate.one_line,
    }
    values: dict[str, str] = {}
    for field, rule in checks.items():
        try:
            values[field] = rule(entry[field])
        except validate.InvalidValue as exc:
            problem(line, f"waiver {advisory}: {field}: {exc.message}", exc.hint)
            ok = False
        else:
            if not values[field].strip():
                problem(line, f"waiver {advisory}: {field} is empty", f"e.g. {EXAMPLE}")
                ok = False
    expires = entry["expires"]
    if not isinstance(expires, date) or hasattr(expires, "hour"):
        problem(
            line,
            f"waiver {advisory}: expires must be a date, got {expires!r}",
            "write a TOML date without quotes, e.g. expires = 2027-03-01",
        )
        ok = False
    if not ok:
        return None
    return Waiver(
        advisory=advisory,
        ecosystem=ecosystem,
        package=package_key(ecosystem, values["package"])[1],
        reason=values["reason"].strip(),
        approved_by=values["approved_by"].strip(),
        expires=expires,
        file=file,
        line=line,
    )


def load_waivers(requirements_dir: Path) -> list[Waiver]:
    """requirements/waivers.toml (none when the file does not exist). Raises RequirementsError."""
    path = requirements_dir / WAIVERS_FILE
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems = [Problem(str(path), 0, "not UTF-8 text", "save the file as UTF-8")]
        raise RequirementsError(problems, str(path), "fix the waiver file") from None
    except OSError as exc:
        problems = [Problem(str(path), 0, f"cannot read it ({exc.strerror})", "make it a file")]
        raise RequirementsError(problems, str(path), "fix the waiver file") from None
    waivers, problems = parse_waivers(str(path), text)
    if problems:
        raise RequirementsError(
            problems, str(path), "fix the waivers above, then run imagebot audit again"
        )
    return waivers


@dataclass(frozen=True)
class Waived:
    """The findings split by the waivers in force, and what the waivers file says besides."""

    open: tuple[Finding, ...]  # not waived: these fail the audit
    waived: tuple[tuple[Finding, Waiver], ...]
    expired: tuple[Waiver, ...]  # past their date: these fail the audit too
    unused: tuple[Waiver, ...]  # in force, but matching no finding: stale, worth removing


def apply_waivers(findings: Iterable[Finding], waivers: Sequence[Waiver], today: date) -> Waived:
    """Split findings by waivers. An expired waiver waives nothing and is reported as expired."""
    in_force = [w for w in waivers if not w.expired(today)]
    used: set[int] = set()
    open_findings: list[Finding] = []
    waived: list[tuple[Finding, Waiver]] = []
    for finding in findings:
        match = next((w for w in in_force if w.covers(finding)), None)
        if match is None:
            open_findings.append(finding)
        else:
            used.add(id(match))
            waived.append((finding, match))
    return Waived(
        open=tuple(open_findings),
        waived=tuple(waived),
        expired=tuple(w for w in waivers if w.expired(today)),
        unused=tuple(w for w in in_force if id(w) not in used),
    )
