#!/usr/bin/env python3
"""Merged means installable, how fast: an index-only change on the local stack (run by hand).

The time from "an `index-only.toml` change is merged" to "installable in a pod" is what
`imagebot release staging` takes when only that change is new: it verifies, finds every image
already in the registry (nothing built, tested or pushed), builds the index incrementally,
publishes it to the stack's nginx directory, and promotes nothing. Against the raw parts of the
same change, done by hand:

  release   `imagebot release staging` after one new package version in index-only.toml
  raw       `imagebot index build OUT` (incremental, on its own OUT) plus a plain recursive copy
            of OUT to a served directory (`cp -a OUT/. DEST/`: every object written again,
            no order, nothing deleted)

Each round vets another version of a small pure-Python package (one uv run, one download),
alternating release and raw so that both see the same network. Medians are reported, and
whether the published index serves the new version (a GET of its project page from nginx).

Works on a copy of the project's requirements with one small image (the integration suite's
`small` fixture, so the images cost nothing after the first round) and its own GitOps remote,
publish directory and index cache; the repository is untouched. The first run builds the
small image and the index cold (a minute or two).

Usage: scripts/stack up && eval "$(scripts/stack env)" && python3 bench/bench_publish.py
Results: printed, and written to bench/results/bench_publish.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "tests" / "integration" / "fixtures" / "small"
INDEX_ADDR = "127.0.0.1:5558"  # its own nginx (scripts/stack index-start), not the stack's
INDEX_HOST = f"http://{INDEX_ADDR}"
# Versions with a py3-none-any wheel and no dependencies: one uv run and one download each.
CANDIDATES = [("tomli-w", v) for v in ("1.0.0", "1.1.0", "1.2.0")] + [
    ("text-unidecode", "1.3"),
    ("tomli", "2.0.1"),
    ("tomli", "2.0.2"),
    ("tomli", "2.1.0"),
    ("tomli", "2.2.1"),
]
CONFIG = """\
# bench/bench_publish.py: the small fixture image, the project's requirement sets.
[project]
source = "https://example.invalid/imagebot-bench"

[registry]
url = "127.0.0.1:5555/bench-publish"
auth = "basic"
insecure = true

[images.small]
dockerfile = "Dockerfile"
base = "imagebot-local/bookworm-python:3.11"
python = "3.11"
platform = "x86_64-manylinux_2_36"
sets = ["small"]
render = false

[index]
url = "{index_url}"
publish = "{publish}"

[environments.staging]
repo = "{remote}"
branch = "master"
file = "flux/staging-bip-app/dapla-spark/jupyter/jupyter.yaml"
targets.small = "spec.values.singleuser.image"
"""


def sh(argv: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def timed(argv: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    start = time.monotonic()
    sh(argv, cwd=cwd, env=env)
    return time.monotonic() - start


def prepare(
    work: Path, remote: Path, publish: Path, imagebot: list[str], env: dict[str, str]
) -> None:
    shutil.copytree(REPO / "requirements", work / "requirements")
    for name in ("small.toml", "small.lock"):
        shutil.copy(SMALL / "requirements" / name, work / "requirements" / name)
    shutil.copytree(SMALL / "app", work / "app")
    shutil.copy(SMALL / "Dockerfile", work / "Dockerfile")
    (work / "imagebot.toml").write_text(
        CONFIG.format(index_url=f"{INDEX_HOST}/simple", publish=publish, remote=remote)
    )
    sh([str(REPO / "scripts" / "seed-gitops"), "--path", str(remote)], cwd=REPO, env=env)
    sh([*imagebot, "lock"], cwd=work, env=env)


def vet(work: Path, package: str, version: str) -> None:
    """Add (or move) one index-only entry, keeping the file sorted."""
    path = work / "requirements" / "index-only.toml"
    lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{package} = ")]
    entry = (
        f'{package} = {{ version = "{version}", reason = "benchmark", requested_by = "@bench" }}'
    )
    head = lines.index("[python]") + 1
    body = sorted([*(line for line in lines[head:] if line.strip()), entry])
    path.write_text("\n".join([*lines[:head], *body]) + "\n")


def served(package: str, version: str) -> bool:
    try:
        with urllib.request.urlopen(f"{INDEX_HOST}/simple/{package}/", timeout=5) as response:
            return version in response.read().decode()
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("IMAGEBOT_REGISTRY_PASSWORD"):
        sys.exit('run `eval "$(scripts/stack env)"` first')
    imagebot = [str(Path(sys.executable).parent / "imagebot")]
    base = Path(tempfile.mkdtemp(prefix="imagebot-bench-publish-"))
    base.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEBOT_PROFILE")}
    results: dict[str, list[float]] = {"release": [], "raw": []}
    host_env = env
    try:
        work, raw_work = base / "work", base / "raw"
        publish = base / "published"
        host_env = {
            **env,
            "IMAGEBOT_STACK_DIR": str(base / "stack"),
            "IMAGEBOT_INDEX_DIR": str(publish),
            "IMAGEBOT_INDEX_ADDR": INDEX_ADDR,
        }
        stack = REPO / "scripts" / "stack"
        sh([str(stack), "index-start"], cwd=REPO, env=host_env)
        release_env = {**env, "IMAGEBOT_INDEX_CACHE": str(base / "cache")}
        prepare(work, base / "gitops.git", publish, imagebot, env)
        shutil.copytree(work, raw_work)
        raw_out, raw_dest = base / "raw-out", base / "raw-dest"
        print("warm-up: release staging (builds the small image and the index when absent)")
        warm = timed([*imagebot, "release", "staging"], cwd=work, env=release_env)
        warm_raw = timed([*imagebot, "index", "build", str(raw_out)], cwd=raw_work, env=env)
        print(f"  release {warm:.1f}s, raw index build {warm_raw:.1f}s")
        noop = timed([*imagebot, "release", "staging"], cwd=work, env=release_env)
        print(f"no-op release staging: {noop:.2f}s")
        start = time.monotonic()
        sh([*imagebot, "index", "publish", str(base / "cache")], cwd=work, env=release_env)
        noop_publish = time.monotonic() - start
        print(f"no-op index publish (process included): {noop_publish:.2f}s")
        for round_ in range(args.rounds):
            package, version = CANDIDATES[round_ % len(CANDIDATES)]
            vet(work, package, version)
            vet(raw_work, package, version)
            release = timed([*imagebot, "release", "staging"], cwd=work, env=release_env)
            ok = served(package, version)
            start = time.monotonic()
            sh([*imagebot, "index", "build", str(raw_out)], cwd=raw_work, env=env)
            raw_dest.mkdir(exist_ok=True)
            sh(["cp", "-a", f"{raw_out}/.", str(raw_dest)], cwd=base, env=env)
            raw = time.monotonic() - start
            results["release"].append(release)
            results["raw"].append(raw)
            print(
                f"round {round_ + 1}: {package}=={version}: release {release:.2f}s "
                f"(served by nginx: {ok}), raw {raw:.2f}s"
            )
        release_median = statistics.median(results["release"])
        raw_median = statistics.median(results["raw"])
        summary = {
            "rounds": args.rounds,
            "release_s": results["release"],
            "raw_s": results["raw"],
            "release_median_s": round(release_median, 2),
            "raw_median_s": round(raw_median, 2),
            "ratio": round(release_median / raw_median, 2),
            "noop_release_s": round(noop, 2),
            "noop_publish_s": round(noop_publish, 2),
        }
        print(
            f"release staging {release_median:.2f}s vs index build + cp {raw_median:.2f}s "
            f"= {summary['ratio']}x (medians of {args.rounds})"
        )
        out = REPO / "bench" / "results" / "bench_publish.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(summary, indent=1) + "\n")
        return 0
    finally:
        subprocess.run([str(REPO / "scripts" / "stack"), "index-stop"], env=host_env, check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
