"""The corpus suite reads real-world files from <repo>/../shared/corpus; skipped when absent."""

from __future__ import annotations

import pytest
from paths import CORPUS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/corpus" in str(item.path):
            item.add_marker(pytest.mark.corpus)
            if not CORPUS.is_dir():
                item.add_marker(pytest.mark.skip(reason=f"corpus not found at {CORPUS}"))
