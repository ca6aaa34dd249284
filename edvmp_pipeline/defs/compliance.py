"""Compliance: every rule of the policy as a Dagster asset check on ``video_metadata``.

The policy (``EDVMP_POLICY``, default the packaged one) is read when the code location loads,
so each rule is a named check in the UI with its severity. The check is named
``rule.check_name``: the rule id itself when Dagster accepts it (``[A-Za-z0-9_]+``), else a
derived name (``max-duration`` → ``max_duration_<digest>``); the id as written is in the
check's ``rule_id`` metadata, the ``checks`` table and the verdict index.

The pipeline step evaluates every rule on every version of its run whose metadata has not
been checked yet, lands one ``checks`` row per (version, rule), and reports one result per
rule **for the library**:
passed only when no catalogued version fails the rule now (the state store's verdict index,
an index count), with this run's figures and a sample of the failing object keys. Each
version's own verdict is on its ``video_metadata`` materialisation (``compliance``,
``failed_rules``), so selecting a partition shows it.

Why not partitioned checks: Dagster 1.13 can record them (``AssetCheckSpec(partitions_def=
...)``, a preview API that warns on every load), but each evaluation is a separate event-log
write, measured here at about 16 ms on the SQLite instance: 500 versions × 11 rules would add
a minute and a half to an ingest run.

The checks are not blocking, so a violation never stops the summary.
"""

from __future__ import annotations

import dagster as dg

from edvmp_pipeline.defs.video_metadata import METADATA_KEY
from edvmp_pipeline.domain.policy import Rule
from edvmp_pipeline.services.compliance import RuleOutcome

# Enough failing keys to act on from the UI; the checks view has all of them.
MAX_LISTED_KEYS = 100

SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}


def check_spec(rule: Rule) -> dg.AssetCheckSpec:
    """The Dagster asset check of one rule (name = ``rule.check_name``)."""
    return dg.AssetCheckSpec(
        rule.check_name,
        asset=METADATA_KEY,
        description=rule.description or f"{rule.field} {rule.expected}",
        metadata={
            "rule_id": rule.id,
            "field": rule.field,
            "expected": rule.expected,
            "severity": rule.severity,
        },
    )


def check_result(
    rule: Rule, outcome: RuleOutcome | None, failing_in_library: int, sample: list[str]
) -> dg.AssetCheckResult:
    """One rule's result for the whole library, with this run's figures."""
    evaluated = outcome.evaluated if outcome is not None else 0
    failed_now = len(outcome.failing_keys) if outcome is not None else 0
    return dg.AssetCheckResult(
        check_name=rule.check_name,
        asset_key=METADATA_KEY,
        passed=failing_in_library == 0,
        severity=SEVERITY[rule.severity],
        description=f"{failing_in_library} catalogued versions fail {rule.field} "
        f"{rule.expected} ({failed_now} of {evaluated} checked in this run)",
        metadata={
            "rule_id": rule.id,
            "failing_in_library": failing_in_library,
            "evaluated_in_run": evaluated,
            "failed_in_run": failed_now,
            "failing_object_keys": dg.MetadataValue.json(sample[:MAX_LISTED_KEYS]),
            "field": rule.field,
            "expected": rule.expected,
        },
    )
