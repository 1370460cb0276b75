"""Runs inside the `system` stage of an image: install locked packages, say which files are whose.

Standard library only, on the image's own python3. `main(SPEC)` reads a JSON spec (data, never
code): the venv, and per set the lock blocks to install. Each set is installed exactly as the
Dockerfile's own RUN does it (`pip install --require-hashes --no-deps --only-binary :all:`),
with SOURCE_DATE_EPOCH set, so the .pyc files pip writes are hash-checked and the same bytes on
every build. It then prints one marker line: for each installed distribution the files its
RECORD lists (absolute paths), and the files of the venv that the installs removed.
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


def files_under(root: str) -> set[str]:
    found: set[str] = set()
    for directory, _, names in os.walk(root):
        found.update(os.path.join(directory, name) for name in names)
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
    before = files_under(venv)
    try:
        install(venv, spec["sets"], int(spec["epoch"]))
    except subprocess.CalledProcessError as exc:
        print(f"pip install failed with exit code {exc.returncode}", file=sys.stderr)
        raise SystemExit(1) from None
    result = {
        "owners": owners(venv, {normalize(n) for n in spec["names"]}),
        "removed": sorted(before - files_under(venv)),
    }
    print("\n" + MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
