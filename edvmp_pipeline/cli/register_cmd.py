"""``edvmp register SOURCE``: register new versions without processing them.

For running the same assets with Dagster's own CLI (what CI does)::

    RANGE=$(edvmp register samples/ --range)
    dagster asset materialize -m edvmp_pipeline.definitions --select "video_metadata*" \\
        --partition-range "$RANGE"
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``register`` sub-command."""
    p = sub.add_parser(
        "register",
        help="register new versions as Dagster partitions without processing them",
        description="List SOURCE as edvmp ingest does and register its new versions (catalog "
        "and Dagster partitions) without running anything, for dagster asset materialize "
        "--partition-range or a UI backfill.",
    )
    p.add_argument("source", help="a folder (recursively) or s3://bucket[/prefix]")
    p.add_argument("--retry-failed", action="store_true", help="include failed versions")
    p.add_argument(
        "--range",
        action="store_true",
        help="print only FIRST...LAST, the partition range to materialise",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Register and print the partition keys (or their range)."""
    from edvmp_pipeline.adapters.dagster_instance import get_instance
    from edvmp_pipeline.defs.batch_runs import partition_range
    from edvmp_pipeline.defs.in_process_runs import ingest_in_process

    report = ingest_in_process(args.source, retry_failed=args.retry_failed, register_only=True)
    print(
        f"registered {len(report.new)} new versions; {len(report.processed)} to process, "
        f"{len(report.skipped)} already catalogued",
        file=sys.stderr,
    )
    # stdout carries only partition keys (or the range); what was not listed goes to stderr.
    from edvmp_pipeline.cli.output import terminal_safe

    for entry in report.skipped_entries:
        print(
            f"skipped {terminal_safe(entry.key)}: {terminal_safe(entry.describe())}",
            file=sys.stderr,
        )
    if report.incomplete:
        print(
            f"incomplete: {len(report.incomplete)} entries could not be listed; objects in "
            "them are not registered",
            file=sys.stderr,
        )
    if args.range:
        span = partition_range(get_instance(), report.processed)
        if span is None:
            print("nothing to process", file=sys.stderr)
            return 1
        print(span)
    else:
        for pk in report.processed:
            print(pk)
    return 1 if report.incomplete else 0
