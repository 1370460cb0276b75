#!/usr/bin/env python3
"""Bench: `imagebot promote` into a big GitOps repo vs the git floor, on loopback.

The repo has 20,000 commits and 5,000 files (built once with `git fast-import`, cached under
.local/bench/). One bare clone of it is the remote for the whole run; each round measures, in
alternating order (so the few commits earlier rounds pushed affect every kind alike):

  floor     git clone --depth 1 --single-branch --branch master, edit the file, git commit,
            git push
  cli       python -m imagebot promote staging jupyterlab=REF   (a fresh process, as users run it)
  api       imagebot.promote.promote(...) in this process       (what `imagebot release` calls)
  sparse    the git steps imagebot takes, by hand (clone --no-checkout, sparse-checkout of the
            one file, checkout, edit, commit, push): imagebot's own overhead is cli - sparse

and prints the medians and the ratio to the floor (target: <= 1.5x).

    python bench/bench_promote.py [--rounds 7] [--commits 20000] [--files 5000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE = REPO_ROOT / ".local" / "bench"
SEED_FILE = (
    REPO_ROOT / "examples/platform-dev/flux/staging-bip-app/dapla-spark/jupyter/jupyter.yaml"
)
TARGET = "flux/staging-bip-app/dapla-spark/jupyter/jupyter.yaml"
IDENT = "bench <bench@example.org> 1700000000 +0000"
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.org",
}


def _blob(data: bytes) -> bytes:
    return b"data %d\n" % len(data) + data + b"\n"


def fast_import_stream(commits: int, files: int) -> Iterator[bytes]:
    """Commit 1 adds `files` files (the HelmRelease among them); each later commit edits one."""
    paths = [f"clusters/team-{i % 50:02d}/app-{i:04d}/values.yaml" for i in range(files - 1)]
    yield b"commit refs/heads/master\nmark :1\n"
    yield f"author {IDENT}\ncommitter {IDENT}\n".encode() + _blob(b"initial")
    for path in paths:
        yield f"M 100644 inline {path}\n".encode() + _blob(f"replicas: 1\nname: {path}\n".encode())
    yield f"M 100644 inline {TARGET}\n".encode() + _blob(SEED_FILE.read_bytes())
    yield b"\n"
    for n in range(2, commits + 1):
        path = paths[n % len(paths)]
        yield f"commit refs/heads/master\nmark :{n}\n".encode()
        yield f"author {IDENT}\ncommitter {IDENT}\n".encode() + _blob(f"bump {n}".encode())
        yield f"from :{n - 1}\n".encode()
        data = f"replicas: {n}\nname: {path}\n".encode()
        yield f"M 100644 inline {path}\n".encode() + _blob(data) + b"\n"


def cached_repo(commits: int, files: int) -> Path:
    bare = CACHE / f"platform-dev-{commits}c-{files}f.git"
    if (bare / "refs" / "heads" / "master").exists() or (bare / "packed-refs").exists():
        return bare
    start = time.monotonic()
    tmp = bare.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        ["git", "init", "--quiet", "--bare", "--initial-branch=master", str(tmp)], check=True
    )
    proc = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=tmp, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for chunk in fast_import_stream(commits, files):
        proc.stdin.write(chunk)
    proc.stdin.close()
    if proc.wait() != 0:
        sys.exit("git fast-import failed")
    subprocess.run(["git", "gc", "--quiet", "--aggressive"], cwd=tmp, check=True)
    tmp.rename(bare)
    print(f"built {bare} in {time.monotonic() - start:.1f}s", file=sys.stderr)
    return bare


def git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True)


def floor(url: str, work: Path, tag: str) -> None:
    clone = work / "floor"
    git(
        "clone", "--quiet", "--depth", "1", "--single-branch", "--branch", "master", url, str(clone)
    )
    file = clone / TARGET
    text = re.sub(r"(jupyter/jupyterlab\n +tag: )\S+", rf"\g<1>{tag}", file.read_text(), count=1)
    file.write_text(text)
    git("commit", "--quiet", "-am", f"floor {tag}", cwd=clone)
    git("push", "--quiet", "origin", "HEAD:master", cwd=clone)
    shutil.rmtree(clone)


def sparse_floor(url: str, work: Path, tag: str) -> None:
    """The same git steps imagebot takes, by hand: what imagebot's own overhead is measured on."""
    clone = work / "sparse"
    git("clone", "--quiet", "--depth", "1", "--single-branch", "--branch", "master",
        "--no-checkout", url, str(clone))  # fmt: skip
    git("sparse-checkout", "set", "--no-cone", f"/{TARGET}", cwd=clone)
    git("checkout", "--quiet", "master", cwd=clone)
    file = clone / TARGET
    text = re.sub(r"(jupyter/jupyterlab\n +tag: )\S+", rf"\g<1>{tag}", file.read_text(), count=1)
    file.write_text(text)
    git("commit", "--quiet", "-am", f"sparse {tag}", cwd=clone)
    git("push", "--quiet", "origin", "HEAD:master", cwd=clone)
    shutil.rmtree(clone)


def write_config(work: Path, bare: Path) -> Path:
    dockerfile = work / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    config = work / "imagebot.toml"
    config.write_text(
        '[registry]\nurl = "127.0.0.1:5555/jupyter"\n'
        f'[images.jupyterlab]\ndockerfile = "Dockerfile"\n'
        f'[environments.staging]\nrepo = "{bare}"\nbranch = "master"\nfile = "{TARGET}"\n'
        'targets = { jupyterlab = "spec.values.singleuser.image" }\n'
    )
    return config


def cli(config: Path, tag: str) -> None:
    ref = f"jupyterlab=europe-north1-docker.pkg.dev/stat-platform/jupyter/jupyterlab:{tag}"
    env = {k: v for k, v in ENV.items() if not k.startswith("IMAGEBOT_")}
    subprocess.run(
        [sys.executable, "-m", "imagebot", "--config", str(config), "promote", "staging", ref,
         "--no-package-diff"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip


def api(config: Path, tag: str) -> None:
    from imagebot import promote
    from imagebot.config import load_config
    from imagebot.tags import ImageRef

    ref = ImageRef.parse(f"europe-north1-docker.pkg.dev/stat-platform/jupyter/jupyterlab:{tag}")
    result = promote.promote(
        load_config(config), "staging", {"jupyterlab": ref}, env={},
        package_diff=promote.no_package_diff,
    )  # fmt: skip
    assert result.pushed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=5_000)
    args = parser.parse_args()

    cached = cached_repo(args.commits, args.files)
    timings: dict[str, list[float]] = {"floor": [], "sparse": [], "cli": [], "api": []}
    with tempfile.TemporaryDirectory(prefix="imagebot-bench-") as tmp:
        work = Path(tmp)
        bare = work / "remote.git"
        git("clone", "--quiet", "--bare", str(cached), str(bare))
        url = bare.as_uri()
        config = write_config(work, bare)
        api(config, "warmup-0")  # imports and page cache, not measured
        runs: dict[str, Callable[[str], None]] = {
            "floor": lambda tag: floor(url, work, tag),
            "sparse": lambda tag: sparse_floor(url, work, tag),
            "cli": lambda tag: cli(config, tag),
            "api": lambda tag: api(config, tag),
        }
        for n in range(args.rounds):
            order = list(runs) if n % 2 == 0 else list(reversed(runs))
            for name in order:
                start = time.perf_counter()
                runs[name](f"{name}-{n}")
                timings[name].append(time.perf_counter() - start)

    base = statistics.median(timings["floor"])
    print(
        f"repo: {args.commits} commits, {args.files} files, file:// loopback; {args.rounds} rounds"
    )
    for name, values in timings.items():
        median = statistics.median(values)
        print(
            f"{name:6} median {median * 1000:7.0f} ms  min {min(values) * 1000:7.0f} ms  "
            f"ratio to floor {median / base:4.2f}x"
        )


if __name__ == "__main__":
    main()
