"""Compliance of catalogued versions: which need checking, evaluating the rules, landing
one ``checks`` row per (version, rule). Plain Python shared by the asset checks and the
benchmarks: no Dagster here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edvmp_pipeline.catalog.analysis_tables import with_analysis as with_analysis_fields
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.domain.policy import Rule, evaluate_batch, rules_digest

# State-store meta key: the digest (``rules_digest``) of the policy the verdict index
# answers for.
CHECKED_POLICY = "checked_policy_digest"


@dataclass
class RuleOutcome:
    """One rule over the versions of a run."""

    rule: Rule
    evaluated: int = 0
    failing_partitions: list[str] = field(default_factory=list)
    failing_keys: list[str] = field(default_factory=list)
    """Object keys of the failing versions, in the order of ``failing_partitions``."""

    @property
    def passed(self) -> bool:
        return not self.failing_keys


def rows_to_check(
    catalog: Catalog,
    partition_keys: Sequence[str],
    *,
    recheck: bool = False,
    with_analysis: bool = False,
) -> list[dict[str, Any]]:
    """``videos`` rows among ``partition_keys`` whose current metadata is not checked yet.

    The state store says which: a version is checked when its ``checked_at`` is at least as
    new as its metadata, so a re-probed version is checked again and other versions in the
    run's range (processed by someone else) are not checked twice. ``recheck`` (a run of a
    subset of the rules) takes every version with metadata.

    ``with_analysis`` (the policy names analysis fields): only versions whose current
    metadata is analysed are due, and their rows carry the analysis fields.
    """
    states = catalog.job_states(partition_keys)
    todo = [
        pk
        for pk, s in states.items()
        if s.metadata_at is not None
        and (not with_analysis or (s.analysed_at is not None and s.analysed_at >= s.metadata_at))
        and (
            recheck
            or s.checked_at is None
            or s.checked_at < s.metadata_at
            # analysed since it was checked: the analysis rules have not seen it yet
            or (with_analysis and s.analysed_at is not None and s.checked_at < s.analysed_at)
        )
    ]
    rows = catalog.video_rows(todo)
    return with_analysis_fields(catalog, rows) if with_analysis else rows


def evaluate_rows(
    rules: Sequence[Rule], rows: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[RuleOutcome]]:
    """Evaluate every rule on every row: ``checks`` rows (row by row, each in policy order)
    and one outcome per rule.

    The rules run column-wise (:func:`evaluate_batch`); what is left per (row, rule) is the
    ``checks`` row itself, built from values worked out once per rule and once per row.
    """
    verdicts = evaluate_batch(rules, rows)
    outcomes = []
    for rule, passed in zip(rules, verdicts.passed, strict=True):
        failing = [i for i, ok in enumerate(passed) if not ok]
        outcomes.append(
            RuleOutcome(
                rule,
                evaluated=len(rows),
                failing_partitions=[rows[i]["partition_key"] for i in failing],
                failing_keys=[rows[i]["object_key"] for i in failing],
            )
        )
    per_rule = [
        (rule.id, rule.field, rule.severity, rule.expected, passed, verdicts.actual[rule.field])
        for rule, passed in zip(rules, verdicts.passed, strict=True)
    ]
    check_rows = [
        {
            "partition_key": row["partition_key"],
            "object_key": row["object_key"],
            "etag": row["etag"],
            "rule_id": rule_id,
            "field": field_name,
            "severity": severity,
            "passed": passed[i],
            "actual": actual[i],
            "expected": expected,
        }
        for i, row in enumerate(rows)
        for rule_id, field_name, severity, expected, passed, actual in per_rule
    ]
    return check_rows, outcomes


def check_and_land(
    catalog: Catalog,
    rules: Sequence[Rule],
    partition_keys: Sequence[str],
    *,
    run_id: str,
    every_rule: bool = True,
    with_analysis: bool = False,
) -> tuple[list[dict[str, Any]], list[RuleOutcome]]:
    """The step's work without Dagster: evaluate ``rules`` on the versions not checked yet
    and land one ``checks`` row per (version, rule). ``every_rule`` says ``rules`` is the
    whole policy, so the versions count as checked; ``with_analysis`` that the policy
    names analysis fields (see :func:`rows_to_check`)."""
    digest = rules_digest(rules) if every_rule else None
    policy_changed = digest is not None and catalog.state.meta(CHECKED_POLICY) != digest
    keys = list(partition_keys)
    if policy_changed:
        # The verdicts held were given under other rules (a rule added, or changed under the
        # same id): the library-wide checks would read "passed" while catalogued versions
        # fail the rule in force. So this run checks the whole library once, a cost that
        # follows the policy change, not each run.
        keys = list(dict.fromkeys([*keys, *catalogued_keys(catalog)]))
    rows = rows_to_check(
        catalog,
        keys,
        recheck=not every_rule or policy_changed,
        with_analysis=with_analysis,
    )
    check_rows, outcomes = evaluate_rows(rules, rows)
    checked = [r["partition_key"] for r in rows]
    catalog.write_checks(check_rows, run_id=run_id, complete=checked if every_rule else ())
    # After the evidence is landed: the verdict index never names a result the table lacks.
    catalog.state.record_verdicts(
        checked,
        [o.rule.id for o in outcomes],
        {o.rule.id: o.failing_partitions for o in outcomes},
    )
    if policy_changed and digest is not None:
        catalog.state.set_meta(CHECKED_POLICY, digest)
    return rows, outcomes


def catalogued_keys(catalog: Catalog) -> list[str]:
    """Every version with a ``videos`` row (what a change of policy must check again)."""
    _, rows = catalog.query("SELECT partition_key FROM videos")
    return [row[0] for row in rows]


def failed_rules_by_version(outcomes: Sequence[RuleOutcome]) -> dict[str, list[str]]:
    """Rule ids each version of a run failed (versions that passed every rule absent)."""
    failed: dict[str, list[str]] = {}
    for outcome in outcomes:
        for pk in outcome.failing_partitions:
            failed.setdefault(pk, []).append(outcome.rule.id)
    return failed
