"""Compliance: the policy's rules as Dagster asset checks on ``video_metadata``.

The policy (``EDVMP_POLICY``, default the packaged one) is read when the code location loads,
so its checks are named in the UI with their severity. Their shape depends on the size of the
policy (:func:`~edvmp_pipeline.domain.policy.check_groups`), because every asset check costs
every run about three event-log writes (evaluation planned, step output, evaluation),
measured at about 73 ms per check on the SQLite instance whatever the number of versions (a
run with 0, 10 and 100 checks took 0.56, 1.49 and 7.90 s):

- up to ``GROUPING_THRESHOLD`` (50) rules, one check per rule, named ``rule.check_name``:
  the rule id itself when Dagster accepts it (``[A-Za-z0-9_]+``), else a derived name
  (``max-duration`` → ``max_duration_<digest>``); the id as written is in the check's
  ``rule_id`` metadata, the ``checks`` table and the verdict index;
- above it, one check per severity the policy uses, ``policy_error`` and ``policy_warn``
  (names no rule may take), each covering every rule of its severity: a run pays for two
  checks whether the policy has 60 rules or 5,000. The result's metadata names the failing
  rules (``failing_rules``, with each one's count) and a sample of the failing object keys;
  ``edvmp check`` and the ``checks`` table have every (version, rule) verdict.

The pipeline step evaluates every rule on every version of its run whose metadata has not
been checked yet, lands one ``checks`` row per (version, rule), and reports each check
**for the library**: passed only when no catalogued version fails its rule (or any rule of its
group) now, from the state store's verdict index (an index count per rule), with this run's
figures and a sample of the failing object keys. Each version's own verdict is on its
``video_metadata`` materialisation (``compliance``, ``failed_rules``), so selecting a
partition shows it.

Why not partitioned checks: Dagster 1.13 can record them (``AssetCheckSpec(partitions_def=
...)``, a preview API that warns on every load), but each evaluation is a separate event-log
write, measured here at about 16 ms on the SQLite instance: 500 versions × 11 rules would add
a minute and a half to an ingest run.

The checks are not blocking, so a violation never stops the summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from edvmp_pipeline.defs.video_metadata import METADATA_KEY
from edvmp_pipeline.domain.policy import GROUPING_THRESHOLD, Policy, Rule, check_groups
from edvmp_pipeline.services.compliance import RuleOutcome

# Enough failing keys to act on from the UI; the checks view has all of them.
MAX_LISTED_KEYS = 100
# Failing rules a grouped check's result lists (most violations first); `edvmp check` has all.
MAX_LISTED_RULES = 100

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


def group_check_spec(name: str, rules: Sequence[Rule]) -> dg.AssetCheckSpec:
    """The Dagster asset check of every rule of one severity (a policy past the threshold)."""
    severity = rules[0].severity
    return dg.AssetCheckSpec(
        name,
        asset=METADATA_KEY,
        description=f"Every {severity}-severity rule of the policy ({len(rules)} rules): one "
        f"check, since the policy has more than {GROUPING_THRESHOLD} rules.",
        metadata={"severity": severity, "rules_in_group": len(rules)},
    )


def check_specs(policy: Policy) -> list[dg.AssetCheckSpec]:
    """The asset checks of ``policy``: one per rule, or one per severity past the threshold."""
    groups = check_groups(policy)
    if len(policy.rules) <= GROUPING_THRESHOLD:
        return [check_spec(rule) for (rule,) in groups.values()]
    return [group_check_spec(name, rules) for name, rules in groups.items()]


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


def group_check_result(
    name: str,
    rules: Sequence[Rule],
    outcomes: Mapping[str, RuleOutcome],
    counts: Mapping[str, tuple[int, list[str]]],
) -> dg.AssetCheckResult:
    """One severity's result for the whole library: passed only when no catalogued version
    fails any of ``rules`` (``counts``: per rule id, ``violation_counts``' count and sample).

    ``failing_object_keys`` is the first :data:`MAX_LISTED_KEYS` object keys, in order, that
    fail some rule of the group: exact, since each rule's sample is its first keys in order.
    """
    severity = rules[0].severity
    failing = [(rule.id, counts[rule.id][0]) for rule in rules if counts[rule.id][0]]
    # Most violations first; ties in policy order (sorted is stable).
    failing.sort(key=lambda item: -item[1])
    violations = sum(n for _, n in failing)
    keys = sorted({key for rule_id, _ in failing for key in counts[rule_id][1]})
    ran = [outcomes[rule.id] for rule in rules if rule.id in outcomes]
    evaluated = max((o.evaluated for o in ran), default=0)
    failed_now = len({pk for o in ran for pk in o.failing_partitions})
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=METADATA_KEY,
        passed=violations == 0,
        severity=SEVERITY[severity],
        description=f"{len(failing)} of {len(rules)} {severity} rules fail in the library "
        f"({violations} violations); {failed_now} of {evaluated} versions checked in this run "
        "fail one",
        metadata={
            "severity": severity,
            "rules_in_group": len(rules),
            "n_failing_rules": len(failing),
            "failing_rules": dg.MetadataValue.json(
                [
                    {"rule_id": rule_id, "failing_in_library": n}
                    for rule_id, n in failing[:MAX_LISTED_RULES]
                ]
            ),
            "violations_in_library": violations,
            "evaluated_in_run": evaluated,
            "failed_in_run": failed_now,
            "failing_object_keys": dg.MetadataValue.json(keys[:MAX_LISTED_KEYS]),
        },
    )
