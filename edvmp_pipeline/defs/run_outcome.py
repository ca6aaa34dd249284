"""Failing a run for the versions that failed in it, once, at its last step.

A run may cover many versions. A version that fails (corrupt upload, summarizer refused) must
not stop the others from going through every step, so steps record per-version failures in the
catalog instead of raising. The last selected step of the pipeline then raises one
``dg.Failure`` naming every version that failed in this run: the run shows as failed in the UI,
the failed partitions stay unmaterialised, and the run-failure sensor reads the failure's
metadata to record incidents.

Later steps of a run only start when ``video_metadata`` yields its output, and an output of a
multi-partition step would make Dagster record a materialization for *every* partition of the
run, failed ones included. So the job carries Dagster's ``dagster/defer_asset_events`` tag
(asset events come only from what the steps log explicitly, one per good partition) and
``video_metadata`` ends with :func:`release_downstream`. A run without that tag (e.g. a UI
materialisation of the asset) skips the later steps, and ``video_metadata`` is its gate.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg

from edvmp_pipeline.catalog.store import FAILED, Catalog
from edvmp_pipeline.defs.tags import (
    DEFER_ASSET_EVENTS_TAG,
    ERROR_CLASSES,
    ERRORS,
    FAILED_PARTITIONS,
)

# Step keys in the order the gate prefers them: the run fails in the last one it executes.
# video_summary and the compliance checks both depend on video_metadata only, so when one of
# them raises the other still runs; the checks never raise for a policy violation (they are
# not blocking), only as the gate of a run that has no summary step.
PIPELINE = ("video_metadata", "compliance", "video_summary")


def downstream_released(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> bool:
    """True when this run defers asset events, so ``video_metadata`` releases later steps."""
    return str(context.run.tags.get(DEFER_ASSET_EVENTS_TAG, "")).lower() == "true"


def release_downstream(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
    """Yield the step's output (so later steps run) when that materialises nothing by itself.

    Only in runs tagged ``dagster/defer_asset_events``: there the per-partition
    ``AssetMaterialization`` events the step logged are the whole record. Elsewhere yields
    nothing, and the later steps of the run are skipped.
    """
    if downstream_released(context):
        yield dg.MaterializeResult()


def steps_in_run(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> set[str]:
    """Step keys this run executes: its plan after asset and asset-check selection."""
    op_context = getattr(context, "op_execution_context", context)
    plan = op_context.get_step_execution_context().execution_plan
    return set(plan.step_keys_to_execute)


def is_last_selected_step(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, step: str
) -> bool:
    """True when no later pipeline step will execute in this run."""
    if step == PIPELINE[0] and not downstream_released(context):
        return True
    later = PIPELINE[PIPELINE.index(step) + 1 :]
    chosen = steps_in_run(context)
    return not any(s in chosen for s in later)


def failed_in_run(catalog: Catalog, run_id: str) -> list[tuple[str, str, str]]:
    """``(partition_key, error_class, error)`` of every version this run left FAILED."""
    return [
        (s.partition_key, s.error_class or "unknown", s.error or "")
        for s in catalog.state.in_run(run_id)
        if s.status == FAILED
    ]


def versions_in_run(catalog: Catalog, run_id: str) -> set[str]:
    """Partition keys of every version this run processed (for the gate's count)."""
    return {s.partition_key for s in catalog.state.in_run(run_id)}


def run_failure(failed: list[tuple[str, str, str]], n_total: int) -> dg.Failure:
    """The run's failure, with per-version classes in its metadata."""
    _, first_class, first_error = failed[0]
    lines = [f"- `{pk}`: [{cls}] {err}" for pk, cls, err in failed[:200]]
    return dg.Failure(
        description=f"{len(failed)} of {n_total} versions failed; first: "
        f"[{first_class}] {first_error}",
        metadata={
            FAILED_PARTITIONS: dg.MetadataValue.json([pk for pk, _, _ in failed]),
            ERROR_CLASSES: dg.MetadataValue.json({pk: cls for pk, cls, _ in failed}),
            ERRORS: dg.MetadataValue.json({pk: err for pk, _, err in failed}),
            "error_class": first_class,
            "details": dg.MetadataValue.md("\n".join(lines)),
        },
        # A whole-run retry would redo the good versions too; transient failures are retried
        # per version inside the step and redriven per version by the failure sensor.
        allow_retries=False,
    )


def fail_run_if_versions_failed(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
    catalog: Catalog,
    step: str,
    n_total: int,
) -> None:
    """At the run's last step, raise for the versions that failed anywhere in this run."""
    if not is_last_selected_step(context, step):
        return
    failed = failed_in_run(catalog, context.run.run_id)
    if failed:
        raise run_failure(failed, n_total)
