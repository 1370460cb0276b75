"""Every test starts from a neutral environment: a developer's (or the pipeline test's)
IMAGEBOT_PROFILE, IMAGEBOT_CONFIG or TF_BUILD must not change what a test sees."""

from __future__ import annotations

import pytest

_AMBIENT = ("IMAGEBOT_PROFILE", "IMAGEBOT_CONFIG", "TF_BUILD")


@pytest.fixture(autouse=True)
def _neutral_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _AMBIENT:
        monkeypatch.delenv(name, raising=False)
