"""Exponential backoff with full jitter, and a retry loop built on it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def backoff_delay(
    attempt: int, base_delay_s: float, max_delay_s: float, rand: Callable[[], float]
) -> float:
    """Full-jitter delay before retry number ``attempt`` (1 for the first retry).

    ``uniform(0, min(max_delay_s, base_delay_s * 2 ** (attempt - 1)))``: the jitter spreads
    retries of many parallel runs so they do not hit the quota again in lockstep.
    """
    cap = min(max_delay_s, base_delay_s * (2 ** (attempt - 1)))
    return rand() * cap


def retry_call(
    fn: Callable[[], T],
    *,
    is_retryable: Callable[[BaseException], bool],
    attempts: int,
    base_delay_s: float,
    max_delay_s: float,
    sleep: Callable[[float], None] = time.sleep,
    rand: Callable[[], float] = random.random,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``fn`` up to ``attempts`` times, sleeping a jittered backoff between tries.

    Only errors for which ``is_retryable`` is true are retried; the last error is re-raised.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt >= attempts or not is_retryable(exc):
                raise
            delay = backoff_delay(attempt, base_delay_s, max_delay_s, rand)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")
