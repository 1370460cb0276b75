#!/usr/bin/env python3
"""Wall time of `imagebot check` and `imagebot render --check` against `python -c "import typer"`.

Run by hand from the repository root:  python bench/bench_check.py [--runs 15]

Each command runs as a fresh process (what a pre-commit hook or CI step pays), interleaved so
that machine noise hits every command alike. Reports the median and the minimum of each, and
their ratios to the typer baseline's; the target (on medians) is <= 1.5x. The minimum ratio is
the steadier one on a shared machine: the load average is printed before and after. Also lists
any heavy module the commands imported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# typer too: these three commands take the entry point's fast path, which exists to skip it.
HEAVY = ("typer", "docker", "git", "ruamel", "tomlkit", "rich", "requests", "tenacity", "uv")
COMMANDS = {
    "python -c 'import typer'": [sys.executable, "-c", "import typer"],
    "imagebot check": [sys.executable, "-m", "imagebot", "check"],
    "imagebot render --check": [sys.executable, "-m", "imagebot", "render", "--check"],
    "imagebot lock --check": [sys.executable, "-m", "imagebot", "lock", "--check"],
}
TARGET = 1.5


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr.decode()}")
    return elapsed


def heavy_imports(args: list[str]) -> list[str]:
    code = (
        "import sys\nfrom imagebot.main import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        f"print(__import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    # typer's modules are byte-compiled at install time; give imagebot the same footing even
    # when PYTHONDONTWRITEBYTECODE is set (it is in this sandbox), or the baseline is unfair.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "imagebot")], check=True)
    for argv in COMMANDS.values():  # warm the page cache and .pyc files
        time_once(argv)
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    load_before = os.getloadavg()
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            samples[name].append(time_once(argv))
    load_after = os.getloadavg()
    typer = samples["python -c 'import typer'"]
    baseline, baseline_min = statistics.median(typer), min(typer)
    print(f"load average (1, 5, 15 min): before {_load(load_before)}, after {_load(load_after)}")
    print(f"{'command':<28} {'median':>8} {'min':>8} {'ratio':>6} {'min ratio':>9}")
    worst = 0.0
    for name, times in samples.items():
        median = statistics.median(times)
        ratio = median / baseline
        if name.startswith("imagebot"):
            worst = max(worst, ratio)
        print(
            f"{name:<28} {median * 1000:>6.0f}ms {min(times) * 1000:>6.0f}ms {ratio:>5.2f}x "
            f"{min(times) / baseline_min:>8.2f}x"
        )
    for args in (["check"], ["render", "--check"], ["lock", "--check"]):
        print(f"heavy modules imported by {' '.join(args)}: {heavy_imports(args) or 'none'}")
    verdict = "OK" if worst <= TARGET else "OVER TARGET"
    print(f"worst ratio {worst:.2f}x (target <= {TARGET}x, {runs} runs each): {verdict}")


def _load(averages: tuple[float, float, float]) -> str:
    return " ".join(f"{a:.2f}" for a in averages)


if __name__ == "__main__":
    main()
