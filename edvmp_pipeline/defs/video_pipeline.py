"""The pipeline step: one Dagster step that probes, checks and summarises a run's versions.

``video_metadata``, ``video_summary`` and the compliance checks are one ``multi_asset``
(subsettable: the UI can still materialise one asset or run one check). One step, because a
run covers many versions and each version's outcome must reach Dagster on its own: with
separate steps, the later ones run only when the first yields its output, and an output of a
multi-partition step materialises *every* partition of the run, the failed ones included. In
one step nothing is yielded as output; the step logs one materialisation per good (asset,
version) and fails the run at the end when any version failed (see ``run_outcome``).

A version is SUCCEEDED in the state store only once all of its assets are done; one whose
later assets were not selected goes back to PENDING, so the next pass completes it.

No ``from __future__ import annotations`` here: Dagster resolves the config and resource
annotations of asset functions at definition time.
"""

import warnings
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet

import dagster as dg
from pydantic import Field

from edvmp_pipeline.adapters.object_store import ObjectStoreResource
from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.adapters.summarizers import SummarizerResource
from edvmp_pipeline.catalog.store import PENDING, SUCCEEDED, Catalog, JobState
from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.compliance import (
    MAX_LISTED_KEYS,
    check_result,
    check_specs,
    group_check_result,
)
from edvmp_pipeline.defs.partitions import videos_partitions
from edvmp_pipeline.defs.run_outcome import AssetFailure, failure_observation, run_failure
from edvmp_pipeline.defs.tags import TAG_FAILED, TAG_SUCCEEDED
from edvmp_pipeline.defs.video_analysis import (
    ANALYSIS_KEY,
    analysis_materialization,
    analysis_spec,
)
from edvmp_pipeline.defs.video_metadata import (
    METADATA_KEY,
    metadata_materialization,
    metadata_spec,
)
from edvmp_pipeline.defs.video_summary import (
    BEDROCK_POOL,
    SUMMARY_KEY,
    summarizer_kind,
    summary_materialization,
    summary_spec,
    summary_workers,
)
from edvmp_pipeline.domain.policy import GROUPING_THRESHOLD, Policy, Rule, check_groups
from edvmp_pipeline.services.analysis import AnalysisSettings, analyse_and_land
from edvmp_pipeline.services.compliance import check_and_land, failed_rules_by_version
from edvmp_pipeline.services.incidents import VersionFailure, record_failure_incidents
from edvmp_pipeline.services.probe_ahead import ProbeAhead
from edvmp_pipeline.services.processing import RetrySettings, finish_run, process_batch
from edvmp_pipeline.services.progress import ProgressReporter
from edvmp_pipeline.services.summaries import summarise_and_land
from edvmp_pipeline.settings import probe_workers_default

STEP = "process_videos"


class VideoRunConfig(dg.Config):
    """Run options; the defaults are right for sensor runs and UI backfills."""

    only: list[str] = Field(default_factory=list)
    """Restrict the run to these partition keys of its range (``edvmp ingest`` uses it)."""
    force: bool = False
    """Probe (and summarise) again versions the catalog already has as SUCCEEDED."""
    retry_failed: bool = True
    """Process versions that are FAILED (a redrive, a backfill); ``edvmp ingest`` turns it
    off unless ``--retry-failed``, so racing ingests never redo each other's failures."""
    interrupted: list[str] = Field(default_factory=list)
    """FAILED versions to process even with ``retry_failed`` off (their run was killed)."""
    workers: int = 0
    """Parallel ffprobe processes; 0 means one per core."""
    summary_workers: int = 0
    """Parallel summarizer calls; 0 means ``EDVMP_SUMMARY_WORKERS`` (default 4)."""
    retry_attempts: int = RetrySettings.attempts
    """Tries per version for transient store errors (unreachable, throttled)."""
    retry_base_delay_s: float = RetrySettings.base_delay_s
    """First backoff delay; doubles per retry (full jitter)."""
    retry_max_delay_s: float = RetrySettings.max_delay_s
    """Cap on one backoff delay."""


def _reused_materializations(
    states: dict[str, JobState],
    selected: AbstractSet[dg.AssetKey],
    failed: set[str],
    probed: Sequence[tuple[str, object, object]],
    summaries: Sequence[tuple[str, object, object]],
    analysed: Sequence[tuple[str, object, object]] = (),
) -> Iterator[dg.AssetMaterialization]:
    """One materialisation per (selected asset, version) whose result stands unchanged."""
    fresh = {
        METADATA_KEY: {p for p, _, _ in probed},
        SUMMARY_KEY: {p for p, _, _ in summaries},
        ANALYSIS_KEY: {p for p, _, _ in analysed},
    }
    for pk, state in sorted(states.items()):
        if pk in failed or state.status not in (SUCCEEDED, PENDING) or state.metadata_at is None:
            continue
        meta = state.metadata_at
        has = {
            METADATA_KEY: True,
            SUMMARY_KEY: state.summary_at is not None and state.summary_at >= meta,
            ANALYSIS_KEY: state.analysed_at is not None and state.analysed_at >= meta,
        }
        for key in (METADATA_KEY, SUMMARY_KEY, ANALYSIS_KEY):
            if key in selected and has[key] and pk not in fresh[key]:
                yield dg.AssetMaterialization(
                    asset_key=key,
                    partition=pk,
                    metadata={"reused": f"unchanged since run {state.run_id}"},
                )


def build_video_assets(
    policy: Policy, summarizer: SummarizerResource, analysis: AnalysisSettings | None = None
) -> dg.AssetsDefinition:
    """The pipeline's assets and checks for ``policy``, the configured summarizer and, when
    ``analysis`` is given (``EDVMP_ANALYSIS=on``), the ``video_analysis`` asset."""
    # Keyed by Dagster check name: the step maps its selected check keys back to rules.
    groups = check_groups(policy)
    kind = summarizer_kind(summarizer)

    # BackfillPolicy is a beta API in Dagster 1.13 and warns once per use; single-run
    # backfills are what make a UI backfill (and `dagster asset materialize
    # --partition-range`) one run instead of one per version, so we use it knowingly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)

        @dg.multi_asset(
            name=STEP,
            specs=[metadata_spec, summary_spec(summarizer)]
            + ([analysis_spec] if analysis is not None else []),
            check_specs=check_specs(policy),
            partitions_def=videos_partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
            can_subset=True,
            pool=BEDROCK_POOL if kind == "bedrock" else None,
            description="Probe, check and summarise each video version of the run"
            + (" (and analyse it: EDVMP_ANALYSIS=on)." if analysis is not None else "."),
        )
        def process_videos(
            context: dg.AssetExecutionContext,
            config: VideoRunConfig,
            catalog: CatalogResource,
            object_store: ObjectStoreResource,
            prober: FfprobeProber,
            summarizer: SummarizerResource,
            progress: dg.ResourceParam[ProgressReporter],
            probe_ahead: dg.ResourceParam[ProbeAhead],
        ) -> Iterator[dg.AssetMaterialization | dg.AssetObservation | dg.AssetCheckResult]:
            """Every selected asset and check of the run's versions; see the module doc."""
            yield from _run(
                context,
                config,
                catalog.catalog(),
                object_store,
                prober,
                summarizer,
                progress,
                policy,
                groups,
                analysis,
                probe_ahead,
            )

    return process_videos


def _run(
    context: dg.AssetExecutionContext,
    config: VideoRunConfig,
    cat: Catalog,
    object_store: ObjectStoreResource,
    prober: FfprobeProber,
    summarizer: SummarizerResource,
    progress: ProgressReporter,
    policy: Policy,
    groups: dict[str, tuple[Rule, ...]],
    analysis: AnalysisSettings | None = None,
    ahead: ProbeAhead | None = None,
) -> Iterator[dg.AssetMaterialization | dg.AssetObservation | dg.AssetCheckResult]:
    run_id = context.run.run_id
    chosen = set(config.only)
    scope = [pk for pk in context.partition_keys if not chosen or pk in chosen]
    selected = context.selected_asset_keys
    # The selected checks in policy order; a grouped check selects every rule of its severity.
    names = {key.name for key in context.selected_asset_check_keys}
    checks = [name for name in groups if name in names]
    chosen_ids = {rule.id for name in checks for rule in groups[name]}
    selected_rules = [rule for rule in policy.rules if rule.id in chosen_ids]
    rules = policy.rules
    failures: list[AssetFailure] = []
    probed = []
    if METADATA_KEY in selected:
        outcome = process_batch(
            scope,
            catalog=cat,
            store=object_store,
            prober=prober,
            run_id=run_id,
            workers=config.workers or probe_workers_default(),
            force=config.force,
            retry_failed=config.retry_failed,
            interrupted=config.interrupted,
            progress=progress,
            retry=RetrySettings(
                attempts=max(1, config.retry_attempts),
                base_delay_s=config.retry_base_delay_s,
                max_delay_s=config.retry_max_delay_s,
            ),
            log=context.log.warning,
            ahead=ahead,
        )
        probed = outcome.succeeded
        failures += [
            AssetFailure(METADATA_KEY, f.partition_key, f.version, f.error_class, f.reason)
            for f in outcome.failed
        ]
        if outcome.skipped:
            context.log.info(f"{len(outcome.skipped)} versions already catalogued, skipped")

    analysed = []
    duplicates: dict[str, list[str]] = {}
    if analysis is not None and ANALYSIS_KEY in selected:
        # Before the checks: rules may name what it measures.
        _, done = analyse_and_land(
            cat, object_store, scope, run_id=run_id, settings=analysis, force=config.force
        )
        analysed = done.analysed
        for pair in done.pairs:
            duplicates.setdefault(pair["partition_key"], []).append(pair["duplicate_object_key"])
        failures += [
            AssetFailure(ANALYSIS_KEY, f.partition_key, f.version, f.error_class, f.reason)
            for f in done.failed
        ]
        if done.pairs:
            context.log.info(f"{len(done.pairs)} near-duplicate pairs found")

    verdicts: dict[str, list[str]] = {}
    outcomes = {}
    if selected_rules:
        rows, results = check_and_land(
            cat,
            selected_rules,
            scope,
            run_id=run_id,
            every_rule=len(selected_rules) == len(rules),
            with_analysis=bool(policy.analysis_rules),
        )
        verdicts = failed_rules_by_version(results)
        outcomes = {o.rule.id: o for o in results}
        context.log.info(f"{len(rows)} versions checked against {len(selected_rules)} rules")

    summaries = []
    if SUMMARY_KEY in selected:
        _, summaries, summary_failed = summarise_and_land(
            cat,
            summarizer,
            scope,
            run_id=run_id,
            force=config.force,
            workers=summary_workers(config.summary_workers),
        )
        failures += [
            AssetFailure(SUMMARY_KEY, f.partition_key, f.version, f.error_class, f.reason)
            for f in summary_failed
        ]

    # The state store first: whatever Dagster shows below is already true in the catalog.
    failed_keys = {f.partition_key for f in failures}
    _, released, mine = finish_run(
        cat,
        run_id,
        failed=failed_keys,
        has_rules=bool(rules),
        analysis=analysis is not None,
        rules_need_analysis=bool(policy.analysis_rules),
    )
    if released:
        context.log.info(
            f"{len(released)} versions wait for assets this run did not select (PENDING)"
        )
    incidents = {
        i.partition_key: i
        for i in record_failure_incidents(
            cat,
            run_id,
            [
                VersionFailure(f.partition_key, f.reason, error_class_hint=f.error_class)
                for f in failures
            ],
        )
    }

    n_rules = len(rules)
    every_rule_checked = bool(selected_rules) and len(selected_rules) == n_rules
    for pk, version, record in probed:
        yield metadata_materialization(
            pk, version, record, verdicts.get(pk, []) if every_rule_checked else None, n_rules
        )
    for pk, version, summary in summaries:
        yield summary_materialization(pk, version, summary)
    for pk, version, result in analysed:
        yield analysis_materialization(pk, version, result, duplicates.get(pk, []))
    if failures:
        # The run will fail, and Dagster then counts every partition it planned but did not
        # materialise as Failed. Versions of the run whose results already stood (done by an
        # earlier run, or finished here from an earlier probe) keep Materialized, with a
        # note that this run reused them.
        yield from _reused_materializations(
            cat.job_states(scope), selected, failed_keys, probed, summaries, analysed
        )
    if selected_rules:
        # Per rule, whether its check is its own or its severity's (see defs/compliance).
        counts = cat.state.violation_counts([r.id for r in selected_rules], sample=MAX_LISTED_KEYS)
        for name in checks:
            if n_rules <= GROUPING_THRESHOLD:
                (rule,) = groups[name]
                n, sample = counts[rule.id]
                yield check_result(rule, outcomes.get(rule.id), n, sample)
            else:
                yield group_check_result(name, groups[name], outcomes, counts)
    for f in failures:
        context.log.error(f"{f.partition_key}: [{f.error_class}] {f.reason}")
        yield failure_observation(f, incidents.get(f.partition_key))

    n_total = len({s.partition_key for s in mine} | failed_keys)
    n_failed = len(failed_keys)
    context.instance.add_run_tags(
        run_id, {TAG_SUCCEEDED: str(n_total - n_failed), TAG_FAILED: str(n_failed)}
    )
    if failures:
        raise run_failure(failures, n_total, incidents)
