"""Failed runs become classified incident records in the catalog.

One function, :func:`record_run_failure`, serves every path: the run-failure sensor in the
daemon, ``edvmp ingest`` and ``edvmp redrive`` (which must not depend on a daemon). It reads
what Dagster recorded about the run — the per-version classes the pipeline put in its
``dg.Failure`` metadata, or, for a crash, the step or run error — classifies each failed
version and records incidents in the state store, marking versions that a crash left without
a result as FAILED in the same transaction. Calling it twice for the same run changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg
from dagster import DagsterEventType

from edvmp_pipeline.assets.partitions import TAG_ATTEMPT
from edvmp_pipeline.assets.run_outcome import ERROR_CLASSES, ERRORS, FAILED_PARTITIONS
from edvmp_pipeline.catalog.state_store import NewIncident
from edvmp_pipeline.catalog.store import FAILED, SUCCEEDED, Catalog, utcnow
from edvmp_pipeline.domain.backoff import backoff_delay
from edvmp_pipeline.domain.failure_classes import classify_failure, fingerprint
from edvmp_pipeline.domain.partition_keys import version_digest
from edvmp_pipeline.settings import env_float, env_int


@dataclass(frozen=True)
class VersionFailure:
    """What Dagster recorded about one version's failure in one run."""

    partition_key: str
    message: str
    error_type: str | None = None
    stack: str = ""
    error_class_hint: str | None = None


def run_partition_keys(run: dg.DagsterRun) -> list[str]:
    """The versions a run was about: its partition, or its ``only`` list / range."""
    if "dagster/partition" in run.tags:
        return [run.tags["dagster/partition"]]
    config = (run.run_config or {}).get("ops", {}).get("video_metadata", {}).get("config", {})
    only = config.get("only") or []
    if only:
        return list(only)
    start = run.tags.get("dagster/asset_partition_range_start")
    return [start] if start else []


def _error_text(error: object, fallback: str | None) -> tuple[str | None, str, str]:
    if error is None:
        # e.g. a run marked failed from outside (dead worker): the event message says why.
        return None, fallback or "run failed without an error message", ""
    cls_name = getattr(error, "cls_name", None)
    message = str(getattr(error, "message", error)).strip()
    stack = "".join(getattr(error, "stack", []) or [])
    cause = getattr(error, "cause", None)
    if cause is not None:
        # The user code's own exception is usually the cause of Dagster's wrapper error.
        cls_name = getattr(cause, "cls_name", cls_name)
        message = f"{message}\n{getattr(cause, 'message', '')}".strip()
        stack += "".join(getattr(cause, "stack", []) or [])
    return cls_name, message, stack


def failures_of_run(
    instance: dg.DagsterInstance, run: dg.DagsterRun, catalog: Catalog
) -> list[VersionFailure]:
    """Per-version failures of a failed run, from its step and run failure events."""
    events = instance.all_logs(
        run.run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
    )
    failures: dict[str, VersionFailure] = {}
    crash: tuple[str | None, str, str] | None = None
    for record in events:
        event = record.dagster_event
        if event is None:
            continue
        data = event.event_specific_data
        user = getattr(data, "user_failure_data", None)
        metadata = dict(user.metadata) if user is not None and user.metadata else {}
        if FAILED_PARTITIONS in metadata:
            classes = metadata[ERROR_CLASSES].value if ERROR_CLASSES in metadata else {}
            errors = metadata[ERRORS].value if ERRORS in metadata else {}
            for pk in metadata[FAILED_PARTITIONS].value:
                failures[pk] = VersionFailure(
                    pk, errors.get(pk, ""), error_class_hint=classes.get(pk)
                )
        elif crash is None or event.event_type == DagsterEventType.STEP_FAILURE:
            crash = _error_text(getattr(data, "error", None), event.message)
    if crash is None and not events:
        crash = (None, run.tags.get("dagster/failure_reason", "run failed"), "")
    if crash is not None:
        # A crash leaves versions without a result: every one not SUCCEEDED failed with it.
        keys = [pk for pk in run_partition_keys(run) if pk not in failures]
        states = catalog.job_states(keys)
        for pk in keys:
            state = states.get(pk)
            if state is not None and state.status == SUCCEEDED:
                continue
            failures[pk] = VersionFailure(pk, crash[1], error_type=crash[0], stack=crash[2])
    return list(failures.values())


def incident_id_for(partition_key: str, fp: str) -> str:
    """Stable id of one (version, failure fingerprint) incident."""
    return "inc-" + version_digest("incident", partition_key, fp)[:12]


def record_run_failure(
    instance: dg.DagsterInstance, run: dg.DagsterRun, catalog: Catalog
) -> list[str]:
    """Classify a failed run's versions and record incidents; returns their incident ids."""
    store = catalog.state
    seen = store.incidents_of_run(run.run_id)
    if seen:
        return seen
    failures = failures_of_run(instance, run, catalog)
    if not failures:
        return []
    keys = [f.partition_key for f in failures]
    states = catalog.job_states(keys)
    previous = store.failed_runs_of(keys)
    now = utcnow()
    base_s = env_float("EDVMP_REDRIVE_BASE_DELAY_S", 30.0)
    cap = env_int("EDVMP_MAX_REDRIVES", 3, minimum=0)
    incidents: list[NewIncident] = []
    unfinished: dict[str, tuple[str, str]] = {}
    for f in failures:
        state = states.get(f.partition_key)
        version = state.version if state is not None else None
        cls = classify_failure(
            f.error_type, f.message, f.stack, error_class_hint=f.error_class_hint
        )
        message = f.message.strip().splitlines()[0] if f.message.strip() else cls.summary
        redact = [version.object_key, version.etag] if version else []
        fp = fingerprint(cls.name, message, redact=redact)
        attempt = previous.get(f.partition_key, 0) + 1
        max_redrives = min(cls.max_redrives, cap)
        next_at = None
        if cls.retryable and attempt <= max_redrives:
            next_at = now + timedelta(seconds=backoff_delay(attempt, base_s, 3600, _jitter))
        incidents.append(
            NewIncident(
                incident_id=incident_id_for(f.partition_key, fp),
                partition_key=f.partition_key,
                version=version,
                failure_class=cls.name,
                retryable=cls.retryable,
                fingerprint=fp,
                message=message,
                error_type=f.error_type,
                action=cls.action,
                runbook=cls.runbook,
                max_redrives=max_redrives,
                next_attempt_at=next_at,
            )
        )
        if state is not None and state.status != FAILED:
            # Versions the crash left RUNNING or PENDING now say FAILED, with this class.
            unfinished[f.partition_key] = (cls.name, message)
    return store.record_incidents(run.run_id, incidents, unfinished)


def _jitter() -> float:
    # At least half the nominal delay, so redrives never bunch up right after a failure.
    return 0.5 + random.random() / 2


def due_redrives(catalog: Catalog, *, limit: int = 100) -> list[tuple[str, str, int]]:
    """``(incident_id, partition_key, attempt)`` of open retryable incidents whose backoff
    has elapsed and that have not been redriven since their last failure."""
    return [
        (i.incident_id, i.partition_key, i.attempts + 1)
        for i in catalog.state.due_redrives(utcnow(), limit=limit)
    ]


def record_redrives(catalog: Catalog, redrives: Sequence[tuple[str, str, int]]) -> None:
    """Count one redrive of each incident (so the same failure is redriven once)."""
    catalog.state.record_redrives([iid for iid, _, _ in redrives])


def attempt_tags(attempt: int) -> dict[str, str]:
    """Run tags of a redrive."""
    return {TAG_ATTEMPT: str(attempt)}
