"""Runs inside the `system` stage of an image: install locked packages, say which files are whose.

Standard library only, on the image's own python3. `main(SPEC)` reads a JSON spec (data, never
code): the venv, and per set the lock blocks to install. Each set is installed exactly as the
Dockerfile's own RUN does it (`pip install --require-hashes --no-deps --only-binary :all:`),
with SOURCE_DATE_EPOCH set, so the .pyc files pip writes are hash-checked and the same bytes on
every build. It then prints one marker line: for each installed distribution the files its
RECORD lists (absolute paths), and the paths of the venv that the installs removed, under the
name of the package whose earlier version they belonged to (pip, when the venv's bundled pip is
upgraded), so that their whiteouts travel in that package's layer.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import tempfile

MARKER = "IMAGEBOT-INSTALLED "
PIP_OPTIONS = ("--no-cache-dir", "--require-hashes", "--no-deps", "--only-binary", ":all:")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def paths_under(root: str) -> set[str]:
    """Every file, link and directory under `root`."""
    found: set[str] = set()
    for directory, subdirectories, names in os.walk(root):
        found.update(os.path.join(directory, name) for name in [*subdirectories, *names])
    return found


def topmost(removed: set[str]) -> list[str]:
    """The removed paths whose parent directory is still there, sorted: one whiteout each hides
    a whole removed directory (an upgrade of a package the venv came with, such as pip, takes
    out the old version's dist-info and vendored directories). A whiteout of a file inside one
    would keep that directory in the image, empty: an empty `pip-23.0.1.dist-info` makes
    `pip list` show `pip None`."""
    return sorted(path for path in removed if os.path.dirname(path) not in removed)


def removed_by_package(removed: list[str], earlier: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each removed path under the name of the package whose earlier version's RECORD listed it
    (or files inside it); '' for paths no earlier version listed."""
    found: dict[str, list[str]] = {}
    for path in removed:
        inside = path + os.sep
        owner = next(
            (
                name
                for name, paths in sorted(earlier.items())
                if any(p == path or p.startswith(inside) for p in paths)
            ),
            "",
        )
        found.setdefault(owner, []).append(path)
    return found


def site_packages(venv: str) -> str:
    [path] = glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))
    return path


def record_paths(dist_info: str, site: str) -> list[str]:
    """The absolute paths a RECORD file lists (it is CSV; paths never hold a comma here)."""
    paths = []
    with open(os.path.join(dist_info, "RECORD"), encoding="utf-8") as handle:
        for line in handle:
            relative = line.rsplit(",", 2)[0].strip().strip('"')
            if relative:
                paths.append(os.path.normpath(os.path.join(site, relative)))
    return paths


def dist_name(dist_info: str) -> str:
    with open(os.path.join(dist_info, "METADATA"), encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.lower().startswith("name:"):
                return normalize(line.split(":", 1)[1].strip())
            if not line.strip():
                break
    return normalize(os.path.basename(dist_info).split("-")[0])


def owners(venv: str, wanted: set[str]) -> dict[str, list[str]]:
    site = site_packages(venv)
    found: dict[str, list[str]] = {}
    for dist_info in sorted(glob.glob(os.path.join(site, "*.dist-info"))):
        name = dist_name(dist_info)
        if name in wanted:
            found[name] = sorted(record_paths(dist_info, site))
    return found


def install(venv: str, sets: list[list[str]], epoch: int) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    with tempfile.TemporaryDirectory() as scratch:
        for set_name, requirements in sets:
            path = os.path.join(scratch, f"{set_name}.lock")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(requirements)
            command = [os.path.join(venv, "bin", "python"), "-m", "pip", "install"]
            subprocess.run([*command, *PIP_OPTIONS, "-r", path], env=env, check=True)


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    venv = str(spec["venv"])
    names = {normalize(n) for n in spec["names"]}
    before = paths_under(venv)
    earlier = owners(venv, names)  # the versions already in the venv that the installs replace
    try:
        install(venv, spec["sets"], int(spec["epoch"]))
    except subprocess.CalledProcessError as exc:
        print(f"pip install failed with exit code {exc.returncode}", file=sys.stderr)
        raise SystemExit(1) from None
    result = {
        "owners": owners(venv, names),
        "removed": removed_by_package(topmost(before - paths_under(venv)), earlier),
    }
    print("\n" + MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
