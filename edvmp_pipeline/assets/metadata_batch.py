"""Probe a batch of object versions and land the results: the work behind ``video_metadata``.

Plain Python (no Dagster context) so it can be tested and reused; the asset adds Dagster
events around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from edvmp_pipeline.catalog.store import FAILED, RUNNING, SUCCEEDED, Catalog
from edvmp_pipeline.domain.backoff import retry_call
from edvmp_pipeline.domain.errors import PipelineError
from edvmp_pipeline.domain.records import ObjectVersion, VideoRecord
from edvmp_pipeline.resources.object_store import ObjectStoreResource
from edvmp_pipeline.resources.prober import FfprobeProber
from edvmp_pipeline.resources.progress import ProgressReporter


@dataclass(frozen=True)
class VersionFailure:
    """Why one version failed: a class (see failure classes) and a one-line reason."""

    partition_key: str
    version: ObjectVersion | None
    error_class: str
    reason: str
    retryable: bool


@dataclass
class BatchOutcome:
    """What happened to each version of a batch."""

    succeeded: list[tuple[str, ObjectVersion, VideoRecord]] = field(default_factory=list)
    failed: list[VersionFailure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RetrySettings:
    """In-step retries of transient failures (exponential backoff, full jitter)."""

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0


# Cheap to retry and likely to heal within seconds. A probe timeout is not retried in the step
# (each try costs the whole timeout); it is redriven later instead.
IN_STEP_RETRYABLE = frozenset({"store_unreachable", "throttled"})


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, PipelineError) and exc.error_class in IN_STEP_RETRYABLE


def _probe_one(
    store: ObjectStoreResource,
    prober: FfprobeProber,
    version: ObjectVersion,
    retry: RetrySettings,
    log: Callable[[str], None] | None = None,
) -> VideoRecord:
    def attempt() -> VideoRecord:
        target = store.probe_target(version)
        return prober.probe(
            target.target, size_bytes=version.size_bytes, leading_bytes=target.leading_bytes
        )

    def on_retry(n: int, exc: BaseException, delay: float) -> None:
        if log is not None:
            log(f"{version.object_key}: attempt {n} failed ({exc}); retrying in {delay:.2f}s")

    return retry_call(
        attempt,
        is_retryable=_is_transient,
        attempts=retry.attempts,
        base_delay_s=retry.base_delay_s,
        max_delay_s=retry.max_delay_s,
        on_retry=on_retry,
    )


def _as_failure(pk: str, version: ObjectVersion | None, exc: BaseException) -> VersionFailure:
    if isinstance(exc, PipelineError):
        return VersionFailure(pk, version, exc.error_class, exc.reason, exc.retryable)
    # Unexpected errors keep their type in the reason so the failure classifier can use it.
    return VersionFailure(pk, version, "unknown", f"{type(exc).__name__}: {exc}", False)


def process_batch(
    partition_keys: Sequence[str],
    *,
    catalog: Catalog,
    store: ObjectStoreResource,
    prober: FfprobeProber,
    run_id: str | None,
    workers: int,
    only: Sequence[str] = (),
    force: bool = False,
    progress: ProgressReporter | None = None,
    retry: RetrySettings | None = None,
    log: Callable[[str], None] | None = None,
) -> BatchOutcome:
    """Probe every version in ``partition_keys`` in parallel and write the catalog.

    Versions already SUCCEEDED are skipped unless ``force``; ``only`` (when not empty)
    restricts the batch to those keys. Per-version failures never stop the batch.
    """
    outcome = BatchOutcome()
    wanted = [pk for pk in partition_keys if not only or pk in set(only)]
    if not force:
        states = catalog.job_states(wanted)
        done = {pk for pk, s in states.items() if s.status == SUCCEEDED}
        outcome.skipped = [pk for pk in wanted if pk in done]
        wanted = [pk for pk in wanted if pk not in done]
    versions = catalog.versions(wanted)
    for pk in wanted:
        if pk not in versions:
            outcome.failed.append(
                VersionFailure(pk, None, "unknown", "unknown version: not in the catalog", False)
            )
    todo = [(pk, versions[pk]) for pk in wanted if pk in versions]
    catalog.record_events(todo, RUNNING, run_id=run_id)

    def work(item: tuple[str, ObjectVersion]) -> tuple[str, ObjectVersion, object]:
        pk, version = item
        try:
            result: object = _probe_one(store, prober, version, retry or RetrySettings(), log)
        except Exception as exc:
            result = _as_failure(pk, version, exc)
        if progress is not None:
            progress.done(pk, not isinstance(result, VersionFailure))
        return pk, version, result

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for pk, version, result in pool.map(work, todo):
            if isinstance(result, VersionFailure):
                outcome.failed.append(result)
            else:
                assert isinstance(result, VideoRecord)
                outcome.succeeded.append((pk, version, result))

    catalog.write_results(outcome.succeeded, run_id=run_id)
    catalog.record_events([(pk, v) for pk, v, _ in outcome.succeeded], SUCCEEDED, run_id=run_id)
    failed_known = [f for f in outcome.failed if f.version is not None]
    catalog.record_events(
        [(f.partition_key, f.version) for f in failed_known if f.version is not None],
        FAILED,
        run_id=run_id,
        errors={f.partition_key: (f.error_class, f.reason) for f in failed_known},
    )
    return outcome
