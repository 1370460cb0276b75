"""Runs inside an image as the probe archive's `__main__`: `python3 ARCHIVE MODULE ARG...`.

The archive holds this package's in-container modules as the package `imagebot_probe`;
MODULE is one of them, and its `main()` runs with ARG... in `sys.argv[1:]`.
"""

from __future__ import annotations

import importlib
import sys

PACKAGE = "imagebot_probe"


def main() -> None:
    module = importlib.import_module(f"{PACKAGE}.{sys.argv.pop(1)}")
    module.main()


if __name__ == "__main__":
    main()
