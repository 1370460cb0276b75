"""Benchmark: vetted index builds for the default sets, against real PyPI and uv.

    python bench/bench_index.py [--config imagebot.toml] [--jobs 8] [--add NAME==VERSION]

1. cold build: an empty OUT, every vetted package resolved and downloaded in parallel; every
   file must be fetched exactly once (counted per file name);
2. no-op rebuild: nothing resolved, nothing fetched;
3. add one package to index-only.toml (default `jsonpath-ng==1.7.0`, which brings one
   new dependency) and rebuild: only that
   package's closure is resolved, and only its new files are downloaded;
4. baseline: the same files fetched by plain threads, the network's floor for step 1.

Works on a copy of requirements/ in a temporary directory; the repository is not touched.
Prints a table and writes bench/results/index.json (gitignored).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path

from imagebot.config import load_config
from imagebot.index import (
    BuildResult,
    IndexBuildOptions,
    NoProgress,
    build_index,
    load_locks,
    load_roots,
)
from imagebot.index_pages import DistFile, image_target
from imagebot.pypi import PYPI_SIMPLE_URL, PyPI
from imagebot.requirements import insert_entry, parse_add_spec
from imagebot.uv import Uv

REPO = Path(__file__).resolve().parents[1]


class CountingPyPI(PyPI):
    """PyPI that counts every file download by name (to prove no file is fetched twice)."""

    def __init__(self, simple_url: str) -> None:
        super().__init__(simple_url)
        self.fetches: collections.Counter[str] = collections.Counter()
        self._count_lock = threading.Lock()

    def download(self, dist: DistFile, dest: Path) -> None:
        with self._count_lock:
            self.fetches[dist.filename] += 1
        super().download(dist, dest)


def run(
    label: str, out: Path, requirements: Path, config_path: Path, jobs: int
) -> dict[str, object]:
    config = load_config(config_path, None, os.environ)
    target = image_target(config.images.values())
    roots = load_roots(requirements)
    locks = load_locks(requirements, [s for i in config.locked_images for s in i.sets])
    upstream = os.environ.get("IMAGEBOT_UPSTREAM_INDEX", PYPI_SIMPLE_URL)
    source = CountingPyPI(upstream)
    result: BuildResult = build_index(
        out,
        roots,
        target,
        source,
        Uv(upstream, hashes=False, annotate=False, pylock=True),
        NoProgress(),
        IndexBuildOptions(jobs=jobs),
        locks,
    )
    twice = sorted(name for name, count in source.fetches.items() if count > 1)
    row = {k: v for k, v in asdict(result).items() if k not in ("out", "target")}
    row.update(label=label, files_fetched_twice=twice, mb=round(result.bytes_downloaded / 1e6, 1))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "imagebot.toml")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--add", default="jsonpath-ng==1.7.0", help="package to add in step 3")
    args = parser.parse_args()

    config = load_config(args.config, None, os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-index-") as temp:
        work = Path(temp)
        requirements = work / "requirements"
        shutil.copytree(config.requirements_dir, requirements)
        out = work / "index"
        rows = [run("cold build", out, requirements, args.config, args.jobs)]
        # The baseline fetches exactly what the cold build fetched, not step 3's additions.
        manifest = json.loads((out / "imagebot-index.json").read_text())
        urls = [p["file"]["url"] for p in manifest["packages"]]
        rows.append(run("no-op rebuild", out, requirements, args.config, args.jobs))
        index_only = requirements / "index-only.toml"
        text = index_only.read_text() if index_only.exists() else "[python]\n"
        entry = parse_add_spec("python", args.add).with_metadata("bench", "@bench", None)
        index_only.write_text(insert_entry(text, entry)[0])  # sorted, as `imagebot add` does
        rows.append(run(f"add {args.add}", out, requirements, args.config, args.jobs))

    print(f"{'step':<24} {'seconds':>8} {'packages':>9} {'downloaded':>11} {'MB':>7} "
          f"{'reused':>7} {'uv runs':>8} {'metadata':>9} {'fetched twice':>14}")  # fmt: skip
    for row in rows:
        print(f"  {row['label']}: " + ", ".join(f"{k} {v}s" for k, v in row["phases"].items()))  # type: ignore[attr-defined]
    for row in rows:
        print(
            f"{row['label']:<24} {row['seconds']:>8.1f} {row['packages']:>9} "
            f"{row['downloaded']:>11} {row['mb']:>7} {row['reused']:>7} {row['resolutions']:>8} "
            f"{row['metadata_fetches']:>9} {len(row['files_fetched_twice']):>14}"  # type: ignore[arg-type]
        )
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "index.json").write_text(json.dumps(rows, indent=1, default=str) + "\n")
    seconds, size = plain_parallel_fetch(urls, args.jobs)
    print(
        f"baseline: the same {len(urls)} files fetched by {args.jobs} plain threads (no hashing, "
        f"no metadata, no resolution): {seconds:.1f}s, {size / 1e6 / seconds:.1f} MB/s"
    )
    return 1 if any(row["files_fetched_twice"] for row in rows) else 0


def plain_parallel_fetch(urls: list[str], jobs: int) -> tuple[float, int]:
    """Seconds and bytes to fetch URLS with JOBS threads, discarding the data: the network's
    floor for the build's download phase (no hashing, no writing, no metadata)."""
    import time
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def fetch(url: str) -> int:
        size = 0
        with urllib.request.urlopen(url, timeout=300) as response:
            while chunk := response.read(1 << 20):
                size += len(chunk)
        return size

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        total = sum(pool.map(fetch, urls))
    return time.monotonic() - started, total


if __name__ == "__main__":
    sys.exit(main())
