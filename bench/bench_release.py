#!/usr/bin/env python3
"""Release speed on the local stack (run by hand; figures go in the README).

Works on a copy of the project (imagebot.toml, requirements/, jupyter/, jupyterhub/) whose
jupyterlab image gets one small last set, `bench`, holding one package, and whose staging
environment promotes into a copy of bench_promote.py's GitOps repo (20,000 commits, 5,000
files, with the platform-dev HelmRelease), so that release and raw push to the same repo.

  release   `imagebot --profile local release staging` after changing only the last set
  raw       the same kind of change, done by hand: `docker build` of the same Dockerfile with the
            same cache, build args and network, `docker push`, and the git floor of the promote
            benchmark (`git clone --depth 1 --single-branch`, edit, `git commit`, `git push`
            on its GitOps repo of 20,000 commits and 5,000 files)   target: release <= 1.3x raw
            Also recorded, for comparison only: the sparse git steps imagebot itself takes, by
            hand (bench_promote's `sparse`), and the ratio to raw parts that use them instead.
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
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_build  # the bench copy of the project with a last `bench` set
import bench_promote  # the GitOps repo and git floor of the promote benchmark

REPO = Path(__file__).resolve().parents[1]
DOCKER = os.environ.get("IMAGEBOT_DOCKER", "/usr/bin/docker")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


sh = bench_build.sh


def timed(argv: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    return bench_build.timed(argv, cwd=cwd, env=env)[0]


def prepare(work: Path, namespace: str, remote: Path, package: str, version: str) -> None:
    bench_build.prepare(work, namespace, "jupyterlab", package, version)
    shutil.copytree(bench_promote.cached_repo(20_000, 5_000), remote)


def released_versions(package: str) -> list[str]:
    """PyPI's final, unyanked releases of package with a pure-Python wheel, in its latest major
    series (older series may need what current tools dropped: humanize 3 imports pkg_resources)."""
    with urllib.request.urlopen(f"https://pypi.org/pypi/{package}/json", timeout=30) as response:
        releases = json.load(response)["releases"]
    final = {
        version: files
        for version, files in releases.items()
        if re.fullmatch(r"\d+(\.\d+)*", version)
        and any(f["filename"].endswith("-none-any.whl") and not f["yanked"] for f in files)
    }
    major = max(final, key=lambda v: tuple(map(int, v.split(".")))).split(".")[0]
    return sorted(v for v in final if v.split(".")[0] == major)


def unbuilt_versions(package: str, count: int) -> list[str]:
    """Versions no earlier run on this machine built, so no build finds them in its cache."""
    used_file = bench_promote.CACHE / f"bench-release-versions-used-{package}.txt"
    used = set(used_file.read_text().split()) if used_file.exists() else set()
    fresh = [v for v in released_versions(package) if v not in used]
    if len(fresh) < count:
        raise SystemExit(
            f"bench: fewer than {count} versions of {package} left that this machine has not "
            f"built; pass another --package (tqdm, rich, ...) or prune the build cache "
            f"(docker builder prune -af) and delete {used_file}"
        )
    chosen = random.sample(fresh, count)
    used_file.parent.mkdir(parents=True, exist_ok=True)
    used_file.write_text("\n".join(sorted(used | set(chosen))) + "\n")
    return chosen


def imagebot(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagebot", *args]


def raw_parts(work: Path, env: dict[str, str], tag: str, remote: Path) -> dict[str, float]:
    """The same change done by hand: docker build, docker push, the promote benchmark's floor.

    The build argv comes from imagebot's own build_command with the local profile's build args
    (no labels, no --cache-from: the local cache has every layer), so the two cannot drift.
    `git_sparse` (the git steps imagebot takes, by hand) is recorded beside the floor but is not
    part of the raw sum the issue defines.
    """
    from imagebot.config import load_config
    from imagebot.engine import BuildRequest, build_command, build_network

    build_args = dict(
        load_config(work / "imagebot.toml", "local", env).image("jupyterlab").build_args
    )
    request = BuildRequest(
        context=work,
        dockerfile=work / "jupyter" / "Dockerfile",
        tags=(tag,),
        build_args=build_args,
        secrets={"ca-certificates": Path(CA_BUNDLE)},
        network=build_network(build_args),  # part of the cache key, as in imagebot's builds
    )
    build = timed(build_command(DOCKER, request), cwd=work, env={**env, "DOCKER_BUILDKIT": "1"})
    push = timed([DOCKER, "push", tag], cwd=work, env=env)
    version = tag.rsplit(":", 1)[-1]
    start = time.monotonic()
    bench_promote.floor(remote.as_uri(), work.parent, version)
    git = time.monotonic() - start
    start = time.monotonic()
    bench_promote.sparse_floor(remote.as_uri(), work.parent, f"{version}-sparse")
    return {"build": build, "push": push, "git": git, "git_sparse": time.monotonic() - start}


def raw_sum(parts: dict[str, float]) -> float:
    """The issue's raw parts: build, push and the promote benchmark's git floor."""
    return parts["build"] + parts["push"] + parts["git"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", default="tqdm", help="a pure-Python package (default tqdm)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="release and raw rounds each (default 5: the git floor alone varies 2-6 s here)",
    )
    parser.add_argument(
        "--versions",
        default=None,
        help="comma-separated: warm-up, then alternately release and raw "
        "(default: 2 x ROUNDS + 1 random versions from PyPI of the package's latest major "
        "series that no earlier run built, so the build cache holds none of them)",
    )
    args = parser.parse_args()
    count = 2 * args.rounds + 1
    versions = args.versions.split(",") if args.versions else unbuilt_versions(args.package, count)
    for name in ("IMAGEBOT_REGISTRY_USERNAME", "IMAGEBOT_REGISTRY_PASSWORD"):
        if not os.environ.get(name):
            raise SystemExit(f'bench: {name} is not set: eval "$(scripts/stack env)" first')

    # ends in /jupyter like the local profile, so the floor edit (bench_promote.floor) finds it
    namespace = f"127.0.0.1:5555/bench-release-{secrets.token_hex(3)}/jupyter"
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
        bench_build.relock(work, env)
        print(f"warm-up: release with {args.package}=={versions[0]} ...", file=sys.stderr)
        sh(imagebot("release", "staging"), cwd=work, env=env)

        releases: list[float] = []
        raws: list[dict[str, float]] = []
        stages: list[dict[str, float]] = []
        for round_number, version in enumerate(versions[1:], start=1):
            bench_build.set_bench(work, args.package, version)
            bench_build.relock(work, env)
            if round_number % 2:
                start = time.monotonic()
                summary = json.loads(
                    sh(imagebot("release", "staging", "--json"), cwd=work, env=env)
                )
                seconds = time.monotonic() - start
                releases.append(seconds)
                stages.append(summary["timings"])
                print(f"release ({version}): {seconds:.1f}s {summary['timings']}", file=sys.stderr)
            else:
                tag = f"{namespace}/raw:{version}"
                parts = raw_parts(work, env, tag, remote)
                raws.append(parts)
                print(f"raw ({version}): {parts} = {raw_sum(parts):.1f}s", file=sys.stderr)
        sh(imagebot("release", "staging"), cwd=work, env=env)  # catch up with the last raw change
        noop = timed(imagebot("release", "staging"), cwd=work, env=env)

    release = statistics.median(releases)
    raw = statistics.median(raw_sum(p) for p in raws)
    # For comparison only: the raw parts with the git steps imagebot itself takes.
    raw_sparse = statistics.median(p["build"] + p["push"] + p["git_sparse"] for p in raws)
    untested = statistics.median(
        seconds - s.get("test", 0.0) for seconds, s in zip(releases, stages, strict=True)
    )
    figures = {
        "release_seconds": releases,
        "raw_parts": raws,
        "release_stages": stages,
        "release_median": round(release, 2),
        "release_without_test_median": round(untested, 2),
        "raw_sum_median": round(raw, 2),
        "ratio": round(release / raw, 2),
        "ratio_target": 1.3,
        "raw_with_sparse_git_median": round(raw_sparse, 2),
        "ratio_to_raw_with_sparse_git": round(release / raw_sparse, 2),
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
    print(f"release without its smoke-test stage: {untested:.1f}s = {untested / raw:.2f}x raw")
    print(
        f"for comparison, raw parts with imagebot's sparse git steps: {raw_sparse:.1f}s "
        f"= {release / raw_sparse:.2f}x"
    )
    print(f"no-op release: {noop:.2f}s (target < 5 s): {'OK' if noop < 5 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
