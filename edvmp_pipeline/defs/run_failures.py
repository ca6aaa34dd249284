"""What Dagster recorded about a failed run, read through its public instance API, handed to
the incident recorder (``services/incidents.py``)."""

from __future__ import annotations

import dagster as dg
from dagster import DagsterEventType

from edvmp_pipeline.catalog.store import SUCCEEDED, Catalog
from edvmp_pipeline.defs.tags import ERROR_CLASSES, ERRORS, FAILED_PARTITIONS, RANGE_START_TAG
from edvmp_pipeline.defs.video_pipeline import STEP
from edvmp_pipeline.services.incidents import VersionFailure, record_failures


def run_partition_keys(run: dg.DagsterRun) -> list[str]:
    """The versions a run was about: its partition, or its ``only`` list / range."""
    if "dagster/partition" in run.tags:
        return [run.tags["dagster/partition"]]
    config = (run.run_config or {}).get("ops", {}).get(STEP, {}).get("config", {})
    only = config.get("only") or []
    if only:
        return list(only)
    start = run.tags.get(RANGE_START_TAG)
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


def record_run_failure(
    instance: dg.DagsterInstance, run: dg.DagsterRun, catalog: Catalog
) -> list[str]:
    """Classify a failed run's versions and record incidents; returns their incident ids."""
    seen = catalog.state.incidents_of_run(run.run_id)
    if seen:
        return seen
    return record_failures(catalog, run.run_id, failures_of_run(instance, run, catalog))
