"""The per-version work of a run's steps: which versions a later step (summary, analysis)
must do, and running a step's work on each version in threads. Shared by ``processing``,
``summaries`` and ``analysis``: no Dagster here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from edvmp_pipeline.catalog.state_store import RUNNING, STEP_COLUMNS, SUCCEEDED, JobState

T = TypeVar("T")
R = TypeVar("R")


def versions_due(
    states: Mapping[str, JobState], step: str, *, run_id: str, force: bool = False
) -> list[str]:
    """The versions (of ``states``) that ``step`` ("summary" or "analysis") must do, in key
    order.

    A version qualifies when its metadata is catalogued, it is this run's (RUNNING under
    ``run_id``) or SUCCEEDED — so a version that failed earlier, e.g. a permanent summarizer
    error, is not retried by every run whose partition range happens to cover it — and the
    step has not been done since its metadata was (a forced re-probe gets it again).
    ``force`` drops the last condition.
    """
    column = STEP_COLUMNS[step]
    due = []
    for pk, s in states.items():
        done = getattr(s, column)
        if (
            (s.status == SUCCEEDED or (s.status == RUNNING and s.run_id == run_id))
            and s.metadata_at is not None
            and (force or done is None or done < s.metadata_at)
        ):
            due.append(pk)
    return sorted(due)


def map_in_threads(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``fn`` over ``items`` in up to ``workers`` threads, results in order; one item runs
    right here (a sensor run's single version needs no thread)."""
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        return list(pool.map(fn, items))
