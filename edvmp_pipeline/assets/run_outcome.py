"""Failing a run for the versions that failed in it, once, at its last step.

A run may cover many versions. A version that fails (corrupt upload, summarizer refused) must
not stop the others from going through every step, so steps record per-version failures in the
catalog instead of raising. The last selected step of the pipeline then raises one
``dg.Failure`` naming every version that failed in this run: the run shows as failed in the UI,
the failed partitions stay unmaterialised, and the run-failure sensor reads the failure's
metadata to record incidents.
"""

from __future__ import annotations

import dagster as dg

from edvmp_pipeline.catalog.store import Catalog

# Steps of one version's pipeline, in order.
PIPELINE = ("video_metadata", "video_summary")

FAILED_PARTITIONS = "failed_partitions"
ERROR_CLASSES = "error_classes"
ERRORS = "errors"


def is_last_selected_step(context: dg.AssetExecutionContext, step: str) -> bool:
    """True when no later pipeline step is part of this run."""
    selection = context.run.asset_selection
    later = PIPELINE[PIPELINE.index(step) + 1 :]
    if selection is None:
        job_keys = {k.to_user_string() for k in context.job_def.asset_layer.executable_asset_keys}
        return not any(s in job_keys for s in later)
    chosen = {k.to_user_string() for k in selection}
    return not any(s in chosen for s in later)


def failed_in_run(catalog: Catalog, run_id: str) -> list[tuple[str, str, str]]:
    """``(partition_key, error_class, error)`` of every version whose latest event in this
    run is FAILED."""
    _, rows = catalog.query(
        """
        SELECT partition_key, error_class, error FROM job_events
        WHERE run_id = ?
        QUALIFY row_number() OVER (PARTITION BY partition_key ORDER BY event_at DESC) = 1
            AND status = 'FAILED'
        ORDER BY partition_key
        """,
        [run_id],
    )
    return [(r[0], r[1] or "unknown", r[2] or "") for r in rows]


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
    context: dg.AssetExecutionContext, catalog: Catalog, step: str, n_total: int
) -> None:
    """At the run's last step, raise for the versions that failed anywhere in this run."""
    if not is_last_selected_step(context, step):
        return
    failed = failed_in_run(catalog, context.run_id)
    if failed:
        raise run_failure(failed, n_total)
