#!/usr/bin/env python3
"""Release speed on the local stack (run by hand; figures go in the README).

Works on a copy of the project (imagebot.toml, requirements/, jupyter/, jupyterhub/) whose
jupyterlab image gets one small last set, `bench`, holding one package, and whose staging
environment promotes into a throwaway bare GitOps remote seeded from examples/platform-dev.

  release   `imagebot --profile local release staging` after changing only the last set
  raw       the same kind of change, done by hand: `docker build` of the same Dockerfile with the
            same cache and build args, `docker push`, and the git floor (`git clone --depth 1
            --single-branch`, edit, `git commit`, `git push`)          target: release <= 1.3x raw
  noop      `imagebot release staging` again: nothing to build, nothing to commit  target < 5 s

Each round changes the bench package to a version not built before in this run, alternating
release and raw so that both see the same cache state. The medians are reported.

Usage: scripts/stack up && eval "$(scripts/stack env)" && python3 bench/bench_release.py
Results: printed, and written to bench/results/bench_release.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPIED = ("imagebot.toml", "requirements", "jupyter", "jupyterhub")
STAGING_FILE = "flux/staging-bip-app/dapla-spark/jupyter/jupyter.yaml"
BENCH_SET = """\
[set]
description = "Benchmark: the last, most volatile layer"

[python]
{package} = {{ version = "{version}", reason = "benchmark change", requested_by = "@bench" }}
"""
DOCKER = os.environ.get("IMAGEBOT_DOCKER", "/usr/bin/docker")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def sh(argv: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"bench: {' '.join(argv)} failed with {result.returncode}")
    return result.stdout


def timed(argv: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    start = time.monotonic()
    sh(argv, cwd=cwd, env=env)
    return time.monotonic() - start


def prepare(work: Path, namespace: str, remote: Path, package: str, version: str) -> None:
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, work / name)
        else:
            shutil.copy2(source, work / name)
    config = (work / "imagebot.toml").read_text()
    config = re.sub(
        r"(\[images\.jupyterlab\][^\[]*?sets = \[)([^\]]*)\]",
        lambda m: f'{m.group(1)}{m.group(2)}, "bench"]',
        config,
        count=1,
    )
    config = config.replace('url = "127.0.0.1:5555/jupyter"', f'url = "{namespace}"')
    (work / "imagebot.toml").write_text(config)
    set_bench(work, package, version)
    subprocess.run(
        [str(REPO / "scripts" / "seed-gitops"), "--path", str(remote)],
        check=True,
        capture_output=True,
    )


def set_bench(work: Path, package: str, version: str) -> None:
    (work / "requirements" / "bench.toml").write_text(
        BENCH_SET.format(package=package, version=version)
    )


def imagebot(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagebot", *args]


def relock(work: Path, env: dict[str, str]) -> None:
    sh(imagebot("lock"), cwd=work, env=env)
    sh(imagebot("render"), cwd=work, env=env)


def raw_parts(
    work: Path, env: dict[str, str], tag: str, remote: Path, clone: Path
) -> dict[str, float]:
    """The same change done by hand: docker build, docker push, the git floor."""
    build_env = {**env, "DOCKER_BUILDKIT": "1"}
    build = timed(
        [
            DOCKER,
            "build",
            "-f",
            "jupyter/Dockerfile",
            "--secret",
            f"id=ca-certificates,src={CA_BUNDLE}",
            "--build-arg",
            "BASE_IMAGE=imagebot-local/bookworm-python:3.11",
            "--build-arg",
            "IMAGEBOT_INDEX_URL=http://127.0.0.1:5556/simple",
            "--build-arg",
            "BUILDKIT_INLINE_CACHE=1",
            "-t",
            tag,
            ".",
        ],
        cwd=work,
        env=build_env,
    )
    push = timed([DOCKER, "push", tag], cwd=work, env=env)
    shutil.rmtree(clone, ignore_errors=True)
    start = time.monotonic()
    sh(
        [
            "git",
            "clone",
            "-q",
            "--depth",
            "1",
            "--single-branch",
            "--branch",
            "master",
            remote.as_uri(),
            str(clone),
        ],
        cwd=work,
        env=env,
    )
    target = clone / STAGING_FILE
    text = target.read_text()
    swap = ("IfNotPresent", "Always") if "IfNotPresent" in text else ("Always", "IfNotPresent")
    target.write_text(text.replace(f"pullPolicy: {swap[0]}", f"pullPolicy: {swap[1]}", 1))
    sh(["git", "-C", str(clone), "commit", "-qam", "floor"], cwd=work, env=env)
    sh(["git", "-C", str(clone), "push", "-q", "origin", "master"], cwd=work, env=env)
    git = time.monotonic() - start
    return {"build": build, "push": push, "git": git}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", default="humanize")
    parser.add_argument(
        "--versions",
        default="4.9.0,4.10.0,4.11.0,4.12.0,4.12.1",
        help="warm-up, then alternately release and raw",
    )
    args = parser.parse_args()
    versions = args.versions.split(",")
    for name in ("IMAGEBOT_REGISTRY_USERNAME", "IMAGEBOT_REGISTRY_PASSWORD"):
        if not os.environ.get(name):
            raise SystemExit(f'bench: {name} is not set: eval "$(scripts/stack env)" first')

    namespace = f"127.0.0.1:5555/bench-release-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="imagebot-bench-release-") as tmp:
        work, remote, docker_config = (
            Path(tmp) / "project",
            Path(tmp) / "gitops.git",
            Path(tmp) / "dc",
        )
        work.mkdir()
        docker_config.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TF_BUILD")}
        env.update(
            IMAGEBOT_PROFILE="local",
            IMAGEBOT_GITOPS_REPO=str(remote),
            DOCKER_CONFIG=str(docker_config),
            GIT_AUTHOR_NAME="bench",
            GIT_AUTHOR_EMAIL="bench@example.invalid",
            GIT_COMMITTER_NAME="bench",
            GIT_COMMITTER_EMAIL="bench@example.invalid",
        )
        prepare(work, namespace, remote, args.package, versions[0])
        subprocess.run(
            [
                DOCKER,
                "login",
                "-u",
                env["IMAGEBOT_REGISTRY_USERNAME"],
                "--password-stdin",
                "127.0.0.1:5555",
            ],
            input=env["IMAGEBOT_REGISTRY_PASSWORD"],
            text=True,
            env=env,
            check=True,
            capture_output=True,
        )
        relock(work, env)
        print(f"warm-up: release with {args.package}=={versions[0]} ...", file=sys.stderr)
        sh(imagebot("release", "staging"), cwd=work, env=env)

        releases: list[float] = []
        raws: list[dict[str, float]] = []
        for round_number, version in enumerate(versions[1:], start=1):
            set_bench(work, args.package, version)
            relock(work, env)
            if round_number % 2:
                seconds = timed(imagebot("release", "staging"), cwd=work, env=env)
                releases.append(seconds)
                print(f"release ({version}): {seconds:.1f}s", file=sys.stderr)
            else:
                tag = f"{namespace}/raw:{version}"
                parts = raw_parts(work, env, tag, remote, Path(tmp) / "floor")
                raws.append(parts)
                print(f"raw ({version}): {parts} = {sum(parts.values()):.1f}s", file=sys.stderr)
        noop = timed(imagebot("release", "staging"), cwd=work, env=env)

    release = statistics.median(releases)
    raw = statistics.median(sum(p.values()) for p in raws)
    figures = {
        "release_seconds": releases,
        "raw_parts": raws,
        "release_median": round(release, 2),
        "raw_sum_median": round(raw, 2),
        "ratio": round(release / raw, 2),
        "ratio_target": 1.3,
        "noop_release_seconds": round(noop, 2),
        "noop_target": 5.0,
    }
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_release.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"release after a last-set change: {release:.1f}s (median of {len(releases)})")
    print(f"raw parts (build + push + git floor): {raw:.1f}s (median of {len(raws)})")
    print(
        f"ratio {release / raw:.2f}x (target <= 1.3x): {'OK' if release / raw <= 1.3 else 'MISSED'}"
    )
    print(f"no-op release: {noop:.2f}s (target < 5 s): {'OK' if noop < 5 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
