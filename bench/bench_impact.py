#!/usr/bin/env python3
"""Wall time of `imagebot impact` and of review's impact part against `imagebot check`.

Run by hand from the repository root:  python bench/bench_impact.py [--runs 15]

Each command runs as a fresh process on the default sets (what a reviewer or a pipeline step
pays), interleaved so that machine noise hits every command alike:
  - `imagebot check` (the baseline: every pull request runs it);
  - `imagebot impact numpy` and `imagebot impact numpy==3.0.0 --json` (who needs numpy; as if
    the image moved to 3.0.0);
  - review's impact part: `impact.section` over the committed requirement files as the base
    and the same files with numpy bumped in the datascience lock as the head, plus the
    registered environments (review reads these files from git and the working tree already;
    the section itself reads nothing and runs no resolver).
It also times the pure part in-process (snapshots, graph, assessment, text). Reports medians
and the ratio to `imagebot check`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REVIEW_PART = """
from pathlib import Path
from imagebot import impact
from imagebot.config import load_config
from imagebot.environments import load_environments, target_of

config = load_config(Path("imagebot.toml"), None, {})
files = {
    f"requirements/{p.name}": p.read_text(encoding="utf-8")
    for p in Path("requirements").iterdir()
    if p.suffix in (".toml", ".lock")
}
head = dict(files)
head["requirements/datascience.lock"] = head["requirements/datascience.lock"].replace(
    "numpy==2.4.6", "numpy==2.5.0"
)
environments, _ = load_environments(config.root, *target_of(config))
text = impact.render_text(impact.section(files, head, "requirements", environments))
assert "numpy 2.4.6 -> 2.5.0: minor" in text, text
"""
COMMANDS = {
    "imagebot check": [sys.executable, "-m", "imagebot", "check"],
    "imagebot impact numpy": [sys.executable, "-m", "imagebot", "impact", "numpy"],
    "imagebot impact numpy==3.0.0 --json": [
        sys.executable,
        "-m",
        "imagebot",
        "impact",
        "numpy==3.0.0",
        "--json",
    ],
    "review's impact part": [sys.executable, "-c", REVIEW_PART],
}


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} failed:\n{done.stderr.decode()}")
    return elapsed


def pure_part_ms(runs: int) -> float:
    """The section alone, in-process: what `imagebot review` adds to its own run."""
    sys.path.insert(0, str(ROOT))
    from imagebot import impact

    folder = ROOT / "requirements"
    files = {
        f"requirements/{p.name}": p.read_text(encoding="utf-8")
        for p in folder.iterdir()
        if p.suffix in (".toml", ".lock")
    }
    head = dict(files)
    head["requirements/datascience.lock"] = head["requirements/datascience.lock"].replace(
        "numpy==2.4.6", "numpy==2.5.0"
    )
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        impact.render_text(impact.section(files, head, "requirements"))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    for argv in COMMANDS.values():
        time_once(argv)  # warm the file cache and byte-compile once
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            samples[name].append(time_once(argv))
    baseline = statistics.median(samples["imagebot check"])
    print(f"{'command':<38} {'median':>8} {'min':>8} {'vs check':>9}")
    for name, times in samples.items():
        median = statistics.median(times)
        print(
            f"{name:<38} {median * 1000:6.0f}ms {min(times) * 1000:6.0f}ms "
            f"{median / baseline:8.2f}x"
        )
    print(f"review's impact part in-process (pure): {pure_part_ms(runs):.1f}ms median")


if __name__ == "__main__":
    main()
