"""Whole-file before/after cases in tests/unit/yaml_cases/<case>/.

Each case has before.yaml, case.toml (target, ref, and either error or changed_lines) and, when
the edit succeeds, after.yaml: the byte-exact expected file, written by hand.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from imagebot import yamledit
from imagebot.errors import YamlEditError
from imagebot.tags import ImageRef

CASES = Path(__file__).parent / "yaml_cases"
ALL = sorted(p.name for p in CASES.iterdir() if p.is_dir())
SUCCESS = [name for name in ALL if (CASES / name / "after.yaml").exists()]
REFUSALS = [name for name in ALL if name not in SUCCESS]


def load(name: str) -> tuple[str, dict[str, object]]:
    case = CASES / name
    before = (case / "before.yaml").read_bytes().decode("utf-8")
    return before, tomllib.loads((case / "case.toml").read_text())


def changed_line_count(before: str, after: str) -> int:
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old) == len(new), "a byte-exact edit never adds or removes lines"
    return sum(a != b for a, b in zip(old, new, strict=True))


def test_there_are_at_least_twenty_whole_file_cases() -> None:
    assert len(SUCCESS) >= 20


@pytest.mark.parametrize("name", SUCCESS)
def test_whole_file_equality(name: str) -> None:
    before, spec = load(name)
    expected = (CASES / name / "after.yaml").read_bytes().decode("utf-8")

    result = yamledit.set_image(before, str(spec["target"]), ImageRef.parse(str(spec["ref"])))

    assert result.text == expected
    assert changed_line_count(before, result.text) == spec["changed_lines"]
    assert result.changed == (before != expected)


@pytest.mark.parametrize("name", SUCCESS)
def test_edit_is_idempotent_and_reads_back(name: str) -> None:
    before, spec = load(name)
    ref = ImageRef.parse(str(spec["ref"]))
    once = yamledit.set_image(before, str(spec["target"]), ref)

    again = yamledit.set_image(once.text, str(spec["target"]), ref)

    assert again.text == once.text
    assert not again.changed
    if not str(spec["target"]).startswith("policy:") or "full" in name:
        assert yamledit.read_image(once.text, str(spec["target"])) == ref


@pytest.mark.parametrize("name", REFUSALS)
def test_refusals(name: str) -> None:
    before, spec = load(name)
    with pytest.raises(YamlEditError, match=str(spec["error"]).replace("{", r"\{")):
        yamledit.set_image(before, str(spec["target"]), ImageRef.parse(str(spec["ref"])))
