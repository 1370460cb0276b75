"""The one retry policy: retry `errors.TransientError`, with exponential backoff, and nothing else.

Adapters raise TransientError for a fault worth another try (5xx, 429, a refused or reset
connection, a timeout) and turn the last one into their own error when the policy gives up.
Every other error (401/403, "manifest unknown", a 404, a hash mismatch) ends the call at once.
`tenacity` is imported only when something is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from imagebot.errors import TransientError

T = TypeVar("T")
MAX_WAIT_SECONDS = 8.0


def retry_transient(
    action: Callable[[], T],
    *,
    what: str,
    seconds: float | None = None,
    attempts: int | None = None,
    backoff: float = 0.5,
    on_retry: Callable[[str], None] | None = None,
) -> T:
    """Call action; retry TransientError until `seconds` have passed or `attempts` were made.

    Waits backoff, 2*backoff, 4*backoff ... (at most 8 s) between tries. When the policy gives
    up it re-raises the last TransientError; `on_retry` gets one line per retry.
    """
    if seconds is None and attempts is None:
        raise TypeError("retry_transient needs a bound: seconds, attempts or both")
    import tenacity

    def log_retry(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            wait = state.next_action.sleep if state.next_action else 0.0
            on_retry(f"{what}: {error}; retrying in {wait:.1f}s (attempt {state.attempt_number})")

    stop: tenacity.stop.stop_base = tenacity.stop_never
    if seconds is not None:
        stop = tenacity.stop_after_delay(seconds)
    if attempts is not None:
        stop = stop | tenacity.stop_after_attempt(attempts)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        stop=stop,
        wait=tenacity.wait_exponential(multiplier=backoff, max=MAX_WAIT_SECONDS),
        before_sleep=log_retry,
        reraise=True,
    )
    return retrying(action)
