"""Running the ingest job in-process on the persistent instance, many versions per run
(what ``edvmp ingest`` and ``edvmp redrive`` do, no daemon needed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg

from edvmp_pipeline.adapters.object_store import ObjectStoreResource
from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.defs.dead_runs import process_tags
from edvmp_pipeline.defs.partitions import videos_partitions
from edvmp_pipeline.defs.run_failures import record_run_failure
from edvmp_pipeline.defs.tags import RANGE_END_TAG, RANGE_START_TAG, TAG_SOURCE, TAG_TRIGGER
from edvmp_pipeline.services.probe_ahead import ProbeAhead
from edvmp_pipeline.services.processing import RetrySettings, probe_version
from edvmp_pipeline.services.progress import ProgressReporter
from edvmp_pipeline.settings import catalog_location, probe_workers_default

ADD_PARTITIONS_BATCH = 1000
PARTITION_PAGE = 1000
DEFAULT_RETRY = RetrySettings()


def add_partitions(instance: dg.DagsterInstance, keys: Sequence[str]) -> None:
    """Add dynamic partitions in batches (SQLite chokes on tens of thousands at once).

    Dagster's ``add_dynamic_partitions`` skips keys it has (a keyed lookup per batch), so
    nothing here reads the whole partition list.
    """
    wanted = list(dict.fromkeys(keys))
    for i in range(0, len(wanted), ADD_PARTITIONS_BATCH):
        instance.add_dynamic_partitions(
            videos_partitions.name, wanted[i : i + ADD_PARTITIONS_BATCH]
        )


def run_batches(
    instance: dg.DagsterInstance,
    keys: Sequence[str],
    *,
    source: str,
    batch_size: int,
    workers: int,
    force: bool = False,
    retry_failed: bool = True,
    interrupted: Sequence[str] = (),
    trigger: str = "edvmp-ingest",
    extra_tags: dict[str, str] | None = None,
    on_done: Callable[[str, bool], None] | None = None,
    retry: RetrySettings = DEFAULT_RETRY,
    resources: dict[str, object] | None = None,
) -> list[str]:
    """Run the pipeline for ``keys`` in runs of up to ``batch_size`` versions.

    Each run covers one unbroken stretch of the dynamic partition list holding only its own
    keys, so Dagster plans (and, when the run fails, marks Failed) exactly the versions the
    run processes, never a neighbour that belongs to an earlier ingest or the sensor. New
    versions are registered together, so a fresh ingest is a few large runs; scattered
    retries become more, smaller runs. A failed run's versions are classified into incidents
    right here, so this path needs no daemon. ``retry`` governs the in-step retries of
    transient store errors, in the probing ahead and in the runs alike. ``resources``
    default to those the environment configures.
    """
    from edvmp_pipeline.definitions import build_resources, defs
    from edvmp_pipeline.defs.jobs import INGEST_JOB

    batches = contiguous_batches(list_tail(instance, set(keys)), set(keys), batch_size)
    job = defs.resolve_job_def(INGEST_JOB)
    # Resources from the environment as it is now (the module-level Definitions read it at
    # import), plus this process's progress bar and the probing ahead of the runs.
    resources = dict(resources) if resources is not None else build_resources()
    ahead = _probe_ahead(
        resources,
        [pk for batch in batches for pk in batch],
        workers=workers or probe_workers_default(),
        window=2 * batch_size,
        force=force,
        retry=retry,
    )
    run_ids = []
    try:
        for batch in batches:
            run_ids.append(
                _run_one(
                    instance,
                    job,
                    batch,
                    resources,
                    ahead,
                    on_done,
                    force=force,
                    retry_failed=retry_failed,
                    interrupted=interrupted,
                    workers=workers,
                    retry=retry,
                    tags={TAG_SOURCE: source, TAG_TRIGGER: trigger, **(extra_tags or {})},
                )
            )
            ahead.drop(batch)
    finally:
        ahead.close()
    return run_ids


def _probe_ahead(
    resources: dict[str, object],
    keys: Sequence[str],
    *,
    workers: int,
    window: int,
    force: bool,
    retry: RetrySettings,
) -> ProbeAhead:
    """Start probing, in run order, the versions of ``keys`` whose metadata is due."""
    store = resources["object_store"]
    prober = resources["prober"]
    assert isinstance(store, ObjectStoreResource) and isinstance(prober, FfprobeProber)
    ahead = ProbeAhead(
        lambda version, log: probe_version(store, prober, version, retry, log),
        workers=workers,
        window=window,
    )
    states = Catalog(catalog_location()).job_states(list(keys))
    ahead.start(
        (pk, states[pk].version)
        for pk in keys
        if pk in states and (force or states[pk].metadata_at is None)
    )
    return ahead


def _run_one(
    instance: dg.DagsterInstance,
    job: dg.JobDefinition,
    batch: list[str],
    resources: dict[str, object],
    ahead: ProbeAhead,
    on_done: Callable[[str, bool], None] | None,
    *,
    force: bool,
    retry_failed: bool,
    interrupted: Sequence[str],
    workers: int,
    retry: RetrySettings,
    tags: dict[str, str],
) -> str:
    """Execute one run over ``batch``; classify its failures. Returns its run id."""
    from edvmp_pipeline.defs.video_pipeline import STEP

    span = (
        {"dagster/partition": batch[0]}
        if len(batch) == 1
        else {RANGE_START_TAG: batch[0], RANGE_END_TAG: batch[-1]}
    )
    result = job.execute_in_process(
        run_config={
            "ops": {
                STEP: {
                    "config": {
                        "only": batch,
                        "force": force,
                        "retry_failed": retry_failed,
                        "interrupted": [k for k in batch if k in set(interrupted)],
                        "workers": workers,
                        "retry_attempts": retry.attempts,
                        "retry_base_delay_s": retry.base_delay_s,
                        "retry_max_delay_s": retry.max_delay_s,
                    }
                }
            },
            "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
        },
        instance=instance,
        tags={**span, **tags, **process_tags()},
        resources={**resources, "progress": ProgressReporter(on_done), "probe_ahead": ahead},
        raise_on_error=False,
    )
    if not result.success:
        run = instance.get_run_by_id(result.run_id)
        if run is not None:
            record_run_failure(instance, run, Catalog(catalog_location()))
    return result.run_id


def list_tail(instance: dg.DagsterInstance, wanted: set[str]) -> list[str]:
    """The end of the dynamic partition list, from the oldest of ``wanted`` on, in order.

    Read newest first, a page at a time, until every wanted key is seen: new versions are
    appended at the end, so an ingest of new uploads reads about as many keys as it
    processes, not the whole history of the library.
    """
    missing = set(wanted)
    tail: list[str] = []
    cursor = None
    while missing:
        page = instance.get_paginated_dynamic_partitions(
            videos_partitions.name, limit=PARTITION_PAGE, ascending=False, cursor=cursor
        )
        tail.extend(page.results)
        missing.difference_update(page.results)
        if not page.has_more:
            break
        cursor = page.cursor
    tail.reverse()
    first = next((i for i, key in enumerate(tail) if key in wanted), len(tail))
    return tail[first:]


def contiguous_batches(
    partition_list: Sequence[str], wanted: set[str], batch_size: int
) -> list[list[str]]:
    """Split ``wanted`` into runs: unbroken stretches of ``partition_list``, each at most
    ``batch_size`` long, in list order."""
    batches: list[list[str]] = []
    current: list[str] = []
    for key in partition_list:
        if key in wanted:
            current.append(key)
            if len(current) >= batch_size:
                batches.append(current)
                current = []
        elif current:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    return batches


def partition_range(instance: dg.DagsterInstance, keys: Sequence[str]) -> str | None:
    """``FIRST...LAST``: the smallest range of the partition list covering ``keys``."""
    wanted = set(keys)
    ordered = [k for k in list_tail(instance, wanted) if k in wanted]
    return f"{ordered[0]}...{ordered[-1]}" if ordered else None
