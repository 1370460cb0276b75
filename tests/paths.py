"""Where the tests find this checkout and the shared data beside it: the one home of these paths.

Every suite imports them as `from paths import REPO_ROOT` (`pythonpath = ["tests"]`).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared next to the checkout: the corpus of public files and the advisory snapshot.
SHARED = REPO_ROOT.parent / "shared"
CORPUS = SHARED / "corpus"
