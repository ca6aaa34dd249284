"""``edvmp check [--policy FILE]``: the catalogued videos against a (new) compliance policy.

Reads the catalog only: nothing is probed again and nothing is written, so a policy can be
tried on the whole library before it is deployed (``EDVMP_POLICY``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

COLUMNS = ("object_key", "rule_id", "severity", "actual", "expected")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``check`` sub-command."""
    p = sub.add_parser(
        "check",
        help="check every catalogued video against a compliance policy (no re-probing)",
        description="Evaluate the newest metadata of every catalogued version against the "
        "policy and print the violations. Exit status 1 when an error-severity rule fails, "
        "0 otherwise, 2 for a malformed policy.",
    )
    p.add_argument(
        "--policy",
        type=Path,
        help="policy YAML file (default: $EDVMP_POLICY, else the packaged policy)",
    )
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


def violations(policy: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per failed (version, rule), in row then policy order."""
    from edvmp_pipeline.domain.policy import evaluate

    found = []
    for row in rows:
        for result in evaluate(policy, row):
            if not result.passed:
                found.append(
                    {
                        "object_key": row["object_key"],
                        "rule_id": result.rule_id,
                        "severity": result.severity,
                        "actual": result.actual,
                        "expected": result.expected,
                        "field": result.field,
                        "partition_key": row["partition_key"],
                        "etag": row["etag"],
                    }
                )
    return found


def run(args: argparse.Namespace) -> int:
    """Print the violations; 1 if any has severity error, else 0."""
    from edvmp_pipeline.catalog.analysis_tables import with_analysis
    from edvmp_pipeline.catalog.opening import open_catalog
    from edvmp_pipeline.cli.output import json_text, render, terminal_safe
    from edvmp_pipeline.domain.policy import configured_policy, load_policy, require_measured
    from edvmp_pipeline.settings import analysis_enabled

    # A malformed policy raises PolicyError (a PipelineError): exit 2 with its message.
    analysis = analysis_enabled()
    policy = (
        require_measured(load_policy(args.policy), str(args.policy), analysis=analysis)
        if args.policy
        else configured_policy(analysis=analysis)
    )
    catalog = open_catalog(create=False)
    rows = catalog.video_table()
    if policy.analysis_rules:
        # Versions not analysed (yet) read null there, which fails min/max rules.
        rows = with_analysis(catalog, rows)
    found = violations(policy, rows)
    if args.format == "json":
        print(json_text(found))
    else:
        # The table escapes object keys (and tag values in `actual`) itself.
        print(render(COLUMNS, [[v[c] for c in COLUMNS] for v in found], "table"))
    errors = sum(1 for v in found if v["severity"] == "error")
    print(
        terminal_safe(
            f"{len(rows)} versions checked against {len(policy.rules)} rules "
            f"({policy.source or 'packaged policy'}): {errors} error and "
            f"{len(found) - errors} warning violations"
        ),
        file=sys.stderr,
    )
    return 1 if errors else 0
