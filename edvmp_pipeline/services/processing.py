"""Probe a batch of object versions and land the results: the metadata part of a run.

Plain Python (no Dagster context) so it can be tested and reused; the asset adds Dagster
events around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edvmp_pipeline.adapters.object_store import ObjectStoreResource
from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.catalog.store import RUNNING, Catalog, JobState
from edvmp_pipeline.domain.backoff import retry_call
from edvmp_pipeline.domain.errors import PipelineError
from edvmp_pipeline.domain.failure_classes import IN_STEP_RETRYABLE
from edvmp_pipeline.domain.records import ObjectVersion, VideoRecord
from edvmp_pipeline.services.per_version import map_in_threads
from edvmp_pipeline.services.probe_ahead import ProbeAhead
from edvmp_pipeline.services.progress import ProgressReporter


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
    resumed: list[str] = field(default_factory=list)
    """Claimed versions whose metadata stood already: only their later assets are due."""


@dataclass(frozen=True)
class RetrySettings:
    """In-step retries of transient failures (exponential backoff, full jitter)."""

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, PipelineError) and exc.error_class in IN_STEP_RETRYABLE


def probe_version(
    store: ObjectStoreResource,
    prober: FfprobeProber,
    version: ObjectVersion,
    retry: RetrySettings,
    log: Callable[[str], None] | None = None,
) -> VideoRecord:
    """ffprobe one version, retrying transient store errors; each retry is reported on
    ``log``."""

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
    retry_failed: bool = True,
    interrupted: Sequence[str] = (),
    progress: ProgressReporter | None = None,
    retry: RetrySettings | None = None,
    log: Callable[[str], None] | None = None,
    ahead: ProbeAhead | None = None,
) -> BatchOutcome:
    """Probe every version in ``partition_keys`` in parallel and write the catalog.

    Each version is claimed in the state store first: one already SUCCEEDED (unless
    ``force``) or RUNNING in another live run is skipped, so racing runs process it once.
    ``only`` (when not empty) restricts the batch to those keys. Per-version failures never
    stop the batch. A version ``ahead`` has probed already is taken from it, not probed again.
    """
    outcome = BatchOutcome()
    chosen = set(only)
    wanted = list(dict.fromkeys(pk for pk in partition_keys if not chosen or pk in chosen))
    claimed = catalog.state.claim(wanted, run_id or "", force=force, retry_failed=retry_failed)
    if interrupted and not retry_failed:
        # The caller knows these FAILED versions were interrupted, not failed: take them too.
        again = set(interrupted)
        claimed.update(catalog.state.claim([pk for pk in wanted if pk in again], run_id or ""))
    if len(claimed) < len(wanted):
        states = catalog.job_states([pk for pk in wanted if pk not in claimed])
        for pk in wanted:
            if pk in claimed:
                continue
            if pk not in states:
                outcome.failed.append(
                    VersionFailure(
                        pk, None, "unknown", "unknown version: not in the catalog", False
                    )
                )
            else:
                # SUCCEEDED already, or RUNNING in another live run: not this run's to do.
                outcome.skipped.append(pk)
    # A claimed version whose metadata already landed (its run stopped before the summary,
    # or only the summary failed) is finished by the later steps, not probed again.
    todo = [
        (pk, claimed[pk].version)
        for pk in wanted
        if pk in claimed and (force or claimed[pk].metadata_at is None)
    ]
    outcome.resumed = [pk for pk in wanted if pk in claimed and pk not in dict(todo)]

    probe_seconds: dict[str, float] = {}

    def work(item: tuple[str, ObjectVersion]) -> tuple[str, ObjectVersion, object]:
        pk, version = item
        early = ahead.take(pk, version) if ahead is not None else None
        result: object
        if early is not None:
            for message in early.retries:
                if log is not None:
                    log(message)
            result = early.record if early.error is None else _as_failure(pk, version, early.error)
            probe_seconds[pk] = early.seconds
        else:
            started = time.monotonic()
            try:
                result = probe_version(store, prober, version, retry or RetrySettings(), log)
            except Exception as exc:
                result = _as_failure(pk, version, exc)
            probe_seconds[pk] = time.monotonic() - started
        if progress is not None:
            progress.done(pk, not isinstance(result, VersionFailure))
        return pk, version, result

    for pk, version, result in map_in_threads(work, todo, workers):
        if isinstance(result, VersionFailure):
            outcome.failed.append(result)
        else:
            assert isinstance(result, VideoRecord)
            outcome.succeeded.append((pk, version, result))

    # Results first: a version the store says has metadata always has its rows.
    stem = catalog.write_results(outcome.succeeded, run_id=run_id)
    catalog.state.mark_probed(
        [pk for pk, _, _ in outcome.succeeded],
        run_id or "",
        result_file=stem,
        probe_seconds=probe_seconds,
    )
    catalog.state.mark_failed(
        {f.partition_key: (f.error_class, f.reason) for f in outcome.failed if f.version},
        run_id or "",
    )
    return outcome


def _complete(
    state: JobState, has_rules: bool, analysis: bool = False, rules_need_analysis: bool = False
) -> bool:
    """All of the version's assets are done for its current metadata (and the checks for its
    current analysis, when rules name analysis fields)."""
    meta = state.metadata_at
    if meta is None or state.summary_at is None or state.summary_at < meta:
        return False
    if analysis and (state.analysed_at is None or state.analysed_at < meta):
        return False
    if not has_rules:
        return True
    due = meta
    if rules_need_analysis and state.analysed_at is not None:
        due = max(meta, state.analysed_at)
    return state.checked_at is not None and state.checked_at >= due


def finish_run(
    catalog: Catalog,
    run_id: str,
    *,
    failed: set[str],
    has_rules: bool,
    analysis: bool = False,
    rules_need_analysis: bool = False,
) -> tuple[list[str], list[str], list[JobState]]:
    """End of a run: each version it holds (RUNNING, not in ``failed``) becomes SUCCEEDED
    when all of its assets are done (``analysis``: the video analysis is one of them), else
    PENDING for the next pass to complete.

    Returns (succeeded, released to PENDING, every version of the run as it stood).
    """
    mine = catalog.state.in_run(run_id)
    running = [s for s in mine if s.status == RUNNING and s.partition_key not in failed]
    complete = [
        s.partition_key
        for s in running
        if _complete(s, has_rules, analysis, rules_need_analysis and analysis)
    ]
    succeeded = catalog.state.mark_succeeded(complete, run_id)
    done = set(complete)
    released = catalog.state.release(
        [s.partition_key for s in running if s.partition_key not in done], run_id
    )
    return succeeded, released, mine
