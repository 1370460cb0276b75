#!/usr/bin/env python3
"""Build speed and pull cost on the local stack (run by hand; figures go in docs/images.md).

Works on a copy of the project (imagebot.toml, requirements/, jupyter/, jupyterhub/) with the
real default sets plus one small last set, `bench`, pushing under its own registry namespace.

  cold    empty engine (build cache pruned, the bench's images removed), then
          `imagebot build` and `imagebot push` of the user image
  noop    `imagebot build --push` again: the tag exists, nothing is built     target < 3 s
  first   one package added to the first set (jupyterhub)
  middle  one package added to a middle set (datascience)
  last    one package bumped in the last set (bench)
  middle, empty engine   one package bumped in the middle set after emptying the engine
          (a fresh CI agent: the system stage comes from the registry's inline cache, and the
          image is pulled once for the smoke test)

For each change: the build's and the push's seconds against the cold build's, the compressed
bytes the build and push sent to the registry, and the new compressed layer bytes a node pulls
(layer digests of the new manifest that the old one lacks, read from the registry) against the
changed wheels' size: every pin that differs after the re-lock (read from PyPI, the wheel pip
picks among the files whose hashes the lock lists).
Targets (issue 16): build <= 0.10x cold; new layer bytes <= 2x the wheels + 5 MB.

Usage: scripts/stack up && eval "$(scripts/stack env)" && python3 bench/bench_build.py
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
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imagebot.config import load_config  # noqa: E402
from imagebot.lockfile import lock_path, parse_lock  # noqa: E402
from imagebot.registry import open_registry  # noqa: E402
from imagebot.tags import ImageRef  # noqa: E402

COPIED = ("imagebot.toml", "requirements", "jupyter", "jupyterhub")
IMAGE = "jupyterlab"
ENTRY = (
    '{name} = {{ version = "{version}", reason = "benchmark change", requested_by = "@bench" }}\n'
)
BENCH_SET = '[set]\ndescription = "Benchmark: the last set"\n\n[python]\n' + ENTRY
# (step, set, package, version before or None when added, version after)
CHANGES = (
    ("first", "jupyterhub", "tabulate", None, "0.9.0"),
    ("middle", "datascience", "termcolor", None, "2.4.0"),
    ("last", "bench", "humanize", "4.8.0", "4.9.0"),
    # What a fresh CI agent sees: the same kind of change with nothing in the engine.
    ("middle, empty engine", "datascience", "termcolor", "2.4.0", "2.5.0"),
)


@dataclass
class Figure:
    step: str
    build_s: float
    push_s: float
    uploaded_mb: float = 0.0  # compressed bytes the build and push sent
    new_layer_mb: float = 0.0  # what a node pulls
    wheels_mb: float = 0.0  # the changed packages' wheels
    changed: list[str] = field(default_factory=list)  # pins that differ after the re-lock
    of_cold: float | None = None
    ok: dict[str, bool] = field(default_factory=dict)


def sh(argv: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"bench: {' '.join(argv)} failed with {result.returncode}")
    return result


def imagebot(work: Path, env: dict[str, str], *args: str) -> tuple[float, str, str]:
    start = time.monotonic()
    result = sh([sys.executable, "-m", "imagebot", "--profile", "local", *args], cwd=work, env=env)
    return time.monotonic() - start, result.stdout, result.stderr


def prepare(work: Path, namespace: str) -> None:
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, work / name)
        else:
            shutil.copy2(source, work / name)
    config = (work / "imagebot.toml").read_text()
    config = re.sub(
        rf"(\[images\.{IMAGE}\][^\[]*?sets = \[)([^\]]*)\]",
        lambda m: f'{m.group(1)}{m.group(2)}, "bench"]',
        config,
        count=1,
        flags=re.S,
    )
    config = config.replace('url = "127.0.0.1:5555/jupyter"', f'url = "{namespace}"')
    (work / "imagebot.toml").write_text(config)
    (work / "requirements" / "bench.toml").write_text(
        BENCH_SET.format(name=CHANGES[2][2], version=CHANGES[2][3])
    )


def change(work: Path, set_name: str, package: str, before: str | None, after: str) -> None:
    path = work / "requirements" / f"{set_name}.toml"
    text = path.read_text()
    if before is None:
        text = text.rstrip("\n") + "\n" + ENTRY.format(name=package, version=after)
    else:
        text = text.replace(f'version = "{before}"', f'version = "{after}"')
    path.write_text(text)


def empty_engine(env: dict[str, str], namespace: str) -> None:
    docker = env.get("IMAGEBOT_DOCKER", "/usr/bin/docker")
    sh([docker, "builder", "prune", "-af"], cwd=REPO, env=env)
    listing = sh([docker, "images", "--format", "{{.Repository}}:{{.Tag}}"], cwd=REPO, env=env)
    refs = [r for r in listing.stdout.split() if r.startswith(f"{namespace}/")]
    if refs:
        subprocess.run([docker, "rmi", "-f", *refs], capture_output=True, check=False, env=env)


def uploaded_mb(stderr: str) -> float:
    return sum(float(m) for m in re.findall(r"uploaded ([0-9.]+) MB", stderr))


def layers(work: Path, env: dict[str, str], ref: ImageRef) -> dict[str, int]:
    config = load_config(work / "imagebot.toml", "local", env)
    found = open_registry(config, env).get_manifest(ref.repository, ref.digest or ref.tag or "")
    assert found is not None, ref
    return {x["digest"]: int(x["size"]) for x in json.loads(found[1])["layers"]}


def wheel_bytes(work: Path, env: dict[str, str], names: set[str]) -> int:
    """The sizes of the locked wheels of `names`, from PyPI's simple JSON API (PEP 691/700)."""
    config = load_config(work / "imagebot.toml", "local", env)
    total = 0
    for set_name in config.image(IMAGE).sets:
        path = lock_path(config.requirements_dir, set_name)
        lock = parse_lock(set_name, path.read_text())
        for package in lock.packages if lock else ():
            if package.name not in names:
                continue
            request = urllib.request.Request(
                f"https://pypi.org/simple/{package.name}/",
                headers={"Accept": "application/vnd.pypi.simple.v1+json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                files = json.load(response)["files"]
            sizes = [
                int(f["size"])
                for f in files
                if f"sha256:{f['hashes']['sha256']}" in package.hashes
                and installable(f["filename"])
            ]
            total += min(sizes) if sizes else 0
    return total


def installable(filename: str) -> bool:
    """A wheel pip picks for CPython 3.11 on x86_64 glibc (the image's platform)."""
    if filename.endswith("-none-any.whl"):
        return True
    return "cp311" in filename and "manylinux" in filename and filename.endswith("x86_64.whl")


def pins(work: Path, env: dict[str, str]) -> dict[str, str]:
    """name -> version over every lock of the image."""
    config = load_config(work / "imagebot.toml", "local", env)
    found: dict[str, str] = {}
    for set_name in config.image(IMAGE).sets:
        lock = parse_lock(set_name, lock_path(config.requirements_dir, set_name).read_text())
        found.update({p.name: p.version for p in (lock.packages if lock else ())})
    return found


def pinned(work: Path, env: dict[str, str]) -> ImageRef:
    _, out, _ = imagebot(work, env, "push", IMAGE)
    return ImageRef.parse(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    env = {**os.environ, "IMAGEBOT_RETRY_SECONDS": "60"}
    namespace = f"127.0.0.1:5555/bench-{secrets.token_hex(3)}"
    work = Path(tempfile.mkdtemp(prefix="imagebot-bench-"))
    figures: list[Figure] = []
    try:
        prepare(work, namespace)
        # Every pin at its newest release first, so that a change re-locks only what it names
        # (a re-lock after a first-set change re-resolves the sets after it).
        imagebot(work, env, "lock", "--upgrade")
        imagebot(work, env, "render")

        empty_engine(env, namespace)
        cold_build, _, err = imagebot(work, env, "build", IMAGE)
        start = time.monotonic()
        previous = pinned(work, env)
        cold_push = time.monotonic() - start
        cold = Figure("cold", cold_build, cold_push, uploaded_mb(err))
        cold.new_layer_mb = sum(layers(work, env, previous).values()) / 1e6
        figures.append(cold)
        print(asdict(cold), flush=True)

        noop, _, _ = imagebot(work, env, "build", "--push", IMAGE)
        figures.append(Figure("noop build --push", noop, 0.0, ok={"< 3 s": noop < 3}))

        for step, set_name, package, before, after in CHANGES:
            locked = pins(work, env)
            change(work, set_name, package, before, after)
            imagebot(work, env, "lock")
            now = pins(work, env)
            changed = {name for name, version in now.items() if locked.get(name) != version}
            imagebot(work, env, "render")
            if "empty engine" in step:
                empty_engine(env, namespace)
            build, _, err = imagebot(work, env, "build", IMAGE)
            start = time.monotonic()
            ref = pinned(work, env)
            push = time.monotonic() - start
            old = layers(work, env, previous)
            new = layers(work, env, ref)
            figure = Figure(
                f"{step}: {package} {before or '(added)'} -> {after} in {set_name}",
                build,
                push,
                uploaded_mb(err),
            )
            figure.new_layer_mb = sum(s for d, s in new.items() if d not in old) / 1e6
            figure.changed = sorted(f"{name}=={now[name]}" for name in changed)
            figure.wheels_mb = wheel_bytes(work, env, changed) / 1e6
            figure.of_cold = build / cold_build
            figure.ok = {
                "build <= 0.10x cold": figure.of_cold <= 0.10,
                "new layers <= 2x wheels + 5 MB": figure.new_layer_mb <= 2 * figure.wheels_mb + 5,
            }
            figures.append(figure)
            print(asdict(figure), flush=True)
            previous = ref
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(
        "| step | build s | of cold | push s | uploaded MB | new layers MB | wheels MB | met |\n"
        "|---|---:|---:|---:|---:|---:|---:|---|"
    )
    for f in figures:
        ratio = f"{f.of_cold:.3f}x" if f.of_cold is not None else ""
        met = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in f.ok.items())
        print(
            f"| {f.step} | {f.build_s:.1f} | {ratio} | {f.push_s:.1f} | {f.uploaded_mb:.1f} "
            f"| {f.new_layer_mb:.2f} | {f.wheels_mb:.3f} ({', '.join(f.changed)}) | {met} |"
        )
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "bench_build.json").write_text(
        json.dumps(
            {"image": IMAGE, "cpus": os.cpu_count(), "figures": [asdict(f) for f in figures]},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
