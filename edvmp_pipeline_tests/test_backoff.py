"""The retry loop: transient errors retried with growing, jittered delays; others at once."""

import pytest

from edvmp_pipeline.domain.backoff import retry_call
from edvmp_pipeline.domain.errors import MediaRejected, StoreUnreachable


def _flaky(failures: list[Exception]):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return "ok"

    return fn, calls


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, StoreUnreachable)


def test_transient_errors_are_retried_with_exponential_delays() -> None:
    sleeps: list[float] = []
    fn, calls = _flaky([StoreUnreachable("down"), StoreUnreachable("down")])
    result = retry_call(
        fn,
        is_retryable=_transient,
        attempts=4,
        base_delay_s=0.5,
        max_delay_s=8,
        sleep=sleeps.append,
        rand=lambda: 1.0,
    )
    assert result == "ok" and calls["n"] == 3
    assert sleeps == [0.5, 1.0]


def test_delays_are_capped_and_jittered() -> None:
    sleeps: list[float] = []
    fn, _ = _flaky([StoreUnreachable("x")] * 6)
    with pytest.raises(StoreUnreachable):
        retry_call(
            fn,
            is_retryable=_transient,
            attempts=6,
            base_delay_s=1,
            max_delay_s=4,
            sleep=sleeps.append,
            rand=lambda: 0.5,
        )
    assert sleeps == [0.5, 1.0, 2.0, 2.0, 2.0]


def test_permanent_errors_fail_at_once() -> None:
    sleeps: list[float] = []
    fn, calls = _flaky([MediaRejected("corrupt")])
    with pytest.raises(MediaRejected):
        retry_call(
            fn,
            is_retryable=_transient,
            attempts=4,
            base_delay_s=0.5,
            max_delay_s=8,
            sleep=sleeps.append,
        )
    assert calls["n"] == 1 and sleeps == []
