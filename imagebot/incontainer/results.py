"""Runs inside an image: the checks' results, shared by the smoke probe's modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

ORDER = {"version": 0, "import": 1, "pip check": 2, "r": 3, "jupyter": 4, "server": 5}
DETAIL_LIMIT = 500


class Result(TypedDict):
    check: str
    subject: str
    ok: bool
    detail: str


Finish = Callable[[], None]


class Results:
    """The checks recorded so far, in the order they ran."""

    def __init__(self) -> None:
        self.items: list[Result] = []

    def record(self, check: str, subject: str, ok: bool, detail: object = "") -> None:
        self.items.append(
            {
                "check": check,
                "subject": subject,
                "ok": bool(ok),
                "detail": str(detail)[:DETAIL_LIMIT],
            }
        )

    def sorted(self) -> list[Result]:
        return sorted(self.items, key=lambda r: ORDER.get(r["check"], 9))


def guarded(results: Results, name: str, step: Callable[[], Any]) -> Any:
    """step(), or None with a failed check named for the step when it raises."""
    try:
        return step()
    except Exception as exc:
        results.record(name, "checks", False, f"{type(exc).__name__}: {exc}")
        return None
