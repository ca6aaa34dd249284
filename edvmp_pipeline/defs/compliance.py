"""Compliance: every rule of the policy as a Dagster asset check on ``video_metadata``.

The policy (``EDVMP_POLICY``, default the packaged one) is read when the code location loads,
so each rule is a named check in the UI with its severity. One step evaluates every rule on
every version of the run whose metadata has not been checked yet, writes one ``checks`` row
per (version, rule), and reports one result per rule for the run: passed when every version
passes, with the counts and the failing object keys as metadata.

Why per run and not per partition: Dagster 1.13 can record partitioned check results
(``AssetCheckSpec(partitions_def=...)`` with one ``AssetCheckEvaluation`` per partition), but
each is a separate event-log write, measured here at about 16 ms on the SQLite instance:
500 versions × 11 rules would add a minute and a half to an ingest run. The per-version truth
is in the catalog's ``checks`` view instead.

The checks are not blocking, so a violation never stops the summary step; the step raises
only as the run's gate when the run has no summary step (see ``run_outcome``).

No ``from __future__ import annotations`` here: Dagster resolves the resource annotations of
check functions at definition time.
"""

from collections.abc import Iterator

import dagster as dg

from edvmp_pipeline.defs.catalog_resource import CatalogResource
from edvmp_pipeline.defs.run_outcome import fail_run_if_versions_failed, versions_in_run
from edvmp_pipeline.defs.video_metadata import video_metadata
from edvmp_pipeline.domain.policy import Policy, Rule
from edvmp_pipeline.services.compliance import RuleOutcome, check_and_land

STEP = "compliance"
# Enough failing keys to act on from the UI; the checks view has all of them.
MAX_LISTED_KEYS = 100

SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}


def check_spec(rule: Rule) -> dg.AssetCheckSpec:
    """The Dagster asset check of one rule (name = rule id)."""
    return dg.AssetCheckSpec(
        rule.id,
        asset=video_metadata.key,
        description=rule.description or f"{rule.field} {rule.expected}",
        metadata={"field": rule.field, "expected": rule.expected, "severity": rule.severity},
    )


def check_result(outcome: RuleOutcome) -> dg.AssetCheckResult:
    """The run's result of one rule."""
    rule = outcome.rule
    failed = len(outcome.failing_keys)
    return dg.AssetCheckResult(
        check_name=rule.id,
        asset_key=video_metadata.key,
        passed=outcome.passed,
        severity=SEVERITY[rule.severity],
        description=f"{failed} of {outcome.evaluated} versions fail {rule.field} {rule.expected}",
        metadata={
            "evaluated": outcome.evaluated,
            "failed": failed,
            "failing_object_keys": dg.MetadataValue.json(
                sorted(set(outcome.failing_keys))[:MAX_LISTED_KEYS]
            ),
            "field": rule.field,
            "expected": rule.expected,
        },
    )


def build_compliance_checks(policy: Policy) -> dg.AssetChecksDefinition | None:
    """The asset checks of ``policy`` (None for a policy without rules)."""
    if not policy.rules:
        return None
    rules = {rule.id: rule for rule in policy.rules}

    @dg.multi_asset_check(
        specs=[check_spec(rule) for rule in policy.rules],
        name=STEP,
        # Lets the UI run a single rule; outputs are then optional, which is also what lets
        # a run with nothing new to check report nothing.
        can_subset=True,
        description=f"Compliance policy {policy.source or '(packaged default)'}",
    )
    def compliance(
        context: dg.AssetCheckExecutionContext, catalog: CatalogResource
    ) -> Iterator[dg.AssetCheckResult]:
        """Evaluate the selected rules on the run's new metadata; one result per rule."""
        cat = catalog.catalog()
        run_id = context.run.run_id
        names = {key.name for key in context.selected_asset_check_keys}
        selected = [rule for rule_id, rule in rules.items() if rule_id in names]
        rows, outcomes = check_and_land(
            cat,
            selected,
            context.partition_keys,
            run_id=run_id,
            every_rule=len(selected) == len(rules),
        )
        context.log.info(f"{len(rows)} versions checked against {len(selected)} rules")
        if rows:
            for outcome in outcomes:
                yield check_result(outcome)
        fail_run_if_versions_failed(context, cat, STEP, len(versions_in_run(cat, run_id)))

    return compliance
