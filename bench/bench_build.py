#!/usr/bin/env python3
"""Build speed on the local stack (run by hand; figures go in docs/images.md).

Works on a copy of the project (imagebot.toml, requirements/, jupyter/, jupyterhub/) with the
real default sets plus one small last set, `bench`, holding one package. Steps:

  cold   empty build cache, the image built from scratch (then pushed: the registry cache)
  noop   `imagebot build --push` again: the tag exists, nothing is built     target < 3 s
  (a)    one package changed in the last set, rebuilt with the local cache    target <= 25% of cold
  (b)    the same change on an empty engine (build cache pruned, bench and jupyter images
         removed), with `--cache-from` the registry only                     target <= 35% of cold

Usage: scripts/stack up && eval "$(scripts/stack env)" && python3 bench/bench_build.py
It prunes the engine's build cache (`docker builder prune -af`) and removes the images that
share layers with the bench image (see empty_engine); the local base image stays.
Results: printed as a table and written to bench/results/bench_build.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPIED = ("imagebot.toml", "requirements", "jupyter", "jupyterhub")
BENCH_SET = """\
[set]
description = "Benchmark: the last, most volatile layer"

[python]
{package} = {{ version = "{version}", reason = "benchmark change", requested_by = "@bench" }}
"""


@dataclass
class Figure:
    step: str
    seconds: float
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None


def sh(argv: list[str], *, cwd: Path, env: dict[str, str], quiet: bool = True) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=quiet, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write((result.stdout or "") + (result.stderr or ""))
        raise SystemExit(f"bench: {' '.join(argv)} failed with {result.returncode}")
    return result.stdout or ""


def timed(argv: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    out = sh(argv, cwd=cwd, env=env)
    return time.monotonic() - start, out


def prepare(work: Path, namespace: str, image: str, package: str, version: str) -> None:
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, work / name)
        else:
            shutil.copy2(source, work / name)
    config = (work / "imagebot.toml").read_text()
    config = re.sub(
        rf"(\[images\.{re.escape(image)}\][^\[]*?sets = \[)([^\]]*)\]",
        lambda m: f'{m.group(1)}{m.group(2)}, "bench"]',
        config,
        count=1,
        flags=re.S,
    )
    config = config.replace('url = "127.0.0.1:5555/jupyter"', f'url = "{namespace}"')
    (work / "imagebot.toml").write_text(config)
    set_bench(work, package, version)


def set_bench(work: Path, package: str, version: str) -> None:
    (work / "requirements" / "bench.toml").write_text(
        BENCH_SET.format(package=package, version=version)
    )


def relock(work: Path, env: dict[str, str]) -> None:
    sh([sys.executable, "-m", "imagebot", "--profile", "local", "lock"], cwd=work, env=env)
    sh([sys.executable, "-m", "imagebot", "--profile", "local", "render"], cwd=work, env=env)


def empty_engine(docker: str, env: dict[str, str], namespace: str, image: str) -> None:
    """Drop the build cache and every image sharing layers with the bench image.

    Those are the bench namespace's images and other builds of the same image (e.g.
    127.0.0.1:5555/jupyter/jupyterlab); the local base image stays, as it would on a CI agent
    that starts from the production base.
    """
    sh([docker, "builder", "prune", "-af"], cwd=REPO, env=env)
    listing = sh([docker, "images", "--format", "{{.Repository}}:{{.Tag}}"], cwd=REPO, env=env)
    refs = [
        r
        for r in listing.split()
        if r.startswith(f"{namespace}/") or r.rsplit(":", 1)[0].endswith(f"/{image}")
    ]
    if refs:
        subprocess.run([docker, "rmi", "-f", *refs], capture_output=True, check=False, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="jupyterlab")
    parser.add_argument("--package", default="tabulate")
    parser.add_argument("--versions", default="0.8.10,0.9.0", help="before,after")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    before, after = args.versions.split(",")
    docker = os.environ.get("IMAGEBOT_DOCKER", "/usr/bin/docker")
    env = {**os.environ, "IMAGEBOT_RETRY_SECONDS": "60"}
    namespace = f"127.0.0.1:5555/bench-{secrets.token_hex(3)}"
    work = Path(tempfile.mkdtemp(prefix="imagebot-bench-"))
    build = [sys.executable, "-m", "imagebot", "--profile", "local", "build"]
    figures: list[Figure] = []
    try:
        prepare(work, namespace, args.image, args.package, before)
        relock(work, env)

        empty_engine(docker, env, namespace, args.image)
        cold, _ = timed([*build, args.image], cwd=work, env=env)
        figures.append(Figure("cold build (empty build cache)", cold))
        push, _ = timed(
            [sys.executable, "-m", "imagebot", "--profile", "local", "push", args.image],
            cwd=work,
            env=env,
        )
        figures.append(Figure("push of the cold build (not part of any ratio)", push))

        noop, _ = timed([*build, "--push", args.image], cwd=work, env=env)
        figures.append(Figure("no-op build --push (tag exists)", noop, None, "< 3 s", noop < 3))

        set_bench(work, args.package, after)
        relock(work, env)
        warm, _ = timed([*build, args.image], cwd=work, env=env)
        figures.append(
            Figure(
                f"(a) {args.package} {before} -> {after} in the last set, local cache",
                warm,
                warm / cold,
                "<= 25%",
                warm / cold <= 0.25,
            )
        )

        empty_engine(docker, env, namespace, args.image)
        remote, _ = timed([*build, args.image], cwd=work, env=env)
        figures.append(
            Figure(
                "(b) same change, empty engine, --cache-from registry",
                remote,
                remote / cold,
                "<= 35%",
                remote / cold <= 0.35,
            )
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print("| step | seconds | of cold | target | met |\n|---|---:|---:|---|---|")
    for f in figures:
        ratio = f"{f.ratio:.0%}" if f.ratio is not None else ""
        met = "" if f.ok is None else ("yes" if f.ok else "NO")
        print(f"| {f.step} | {f.seconds:.1f} | {ratio} | {f.target} | {met} |")
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "bench_build.json").write_text(
        json.dumps(
            {"image": args.image, "cpus": os.cpu_count(), "figures": [asdict(f) for f in figures]},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
