"""Runs inside an image: print the image's package list (pip, R and dpkg) as one marker line.

Standard library only, on the image's own python3. `smoke_probe` calls `list_packages` in its
own process, so a release lists the packages of the image it tests without a second container.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import shutil
import subprocess

MARKER = "IMAGEBOT-MANIFEST "
ECOSYSTEMS = ("python", "r", "dpkg")

R_LIST = (
    'ip <- installed.packages()[, c("Package", "Version")]; '
    'writeLines(paste(ip[, 1], ip[, 2], sep = "\\t"))'
)
DPKG_FORMAT = "${Package}\t${Version}\n"


def parse_tab_lines(text: str) -> dict[str, str]:
    """name -> version from `name<TAB>version` lines; the first line of a name wins."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, _, version = line.partition("\t")
        if name and version:
            found.setdefault(name, version)
    return found


def python_packages() -> dict[str, str]:
    # The first distribution of a name on sys.path wins, as it does for imports.
    found: dict[str, str] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(name, dist.version)
    return found


def tool_output(command: list[str]) -> str:
    """A tool's stdout, or "" when the image does not have the tool."""
    if not shutil.which(command[0]):
        return ""
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout


def list_packages() -> dict[str, dict[str, str]]:
    return {
        "python": python_packages(),
        "r": parse_tab_lines(tool_output(["Rscript", "-e", R_LIST])),
        "dpkg": parse_tab_lines(tool_output(["dpkg-query", "-W", "-f", DPKG_FORMAT])),
    }


def marker_line(packages: dict[str, dict[str, str]]) -> str:
    return MARKER + json.dumps(packages)


def main() -> None:
    print("\n" + marker_line(list_packages()), flush=True)


if __name__ == "__main__":
    main()
