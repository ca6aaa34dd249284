"""Failures become classified incident records in the state store.

:func:`record_failures` serves every path: the run-failure sensor in the daemon, ``edvmp
ingest`` and ``edvmp redrive`` (which must not depend on a daemon), each handing over what
Dagster recorded about a failed run (``defs/run_failures.py`` reads it). Each failed version
is classified by the pure classifier, and a crash's unfinished versions are marked FAILED in
the same transaction. Recording the same failed run twice changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from edvmp_pipeline.catalog.state_store import NewIncident
from edvmp_pipeline.catalog.store import FAILED, Catalog, utcnow
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


def incident_id_for(partition_key: str, fp: str) -> str:
    """Stable id of one (version, failure fingerprint) incident."""
    return "inc-" + version_digest("incident", partition_key, fp)[:12]


def record_failures(catalog: Catalog, run_id: str, failures: Sequence[VersionFailure]) -> list[str]:
    """Classify one failed run's versions and record their incidents; returns the ids."""
    return [i.incident_id for i in record_failure_incidents(catalog, run_id, failures)]


def record_failure_incidents(
    catalog: Catalog, run_id: str, failures: Sequence[VersionFailure]
) -> list[NewIncident]:
    """Classify one failed run's versions and record their incidents (idempotent per run:
    recording the same run again changes nothing); returns the classified incidents."""
    store = catalog.state
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
    store.record_incidents(run_id, incidents, unfinished)
    return incidents


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
