"""``edvmp ingest SOURCE``."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edvmp_pipeline.services.ingest import IngestReport

from edvmp_pipeline.cli.output import terminal_safe
from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.settings import DEFAULT_BATCH_SIZE

# Heavy modules (the ingest module loads Dagster, ~1 s) are imported inside run(), so other
# sub-commands do not pay for them just to build the parser.


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``ingest`` sub-command."""
    p = sub.add_parser(
        "ingest",
        help="catalogue every new video version in a folder or s3://bucket/prefix",
        description="List SOURCE, register new object versions as Dagster partitions and "
        "probe them through Dagster. Already-catalogued versions are skipped.",
    )
    p.add_argument("source", help="a folder (recursively) or s3://bucket[/prefix]")
    p.add_argument(
        "--retry-failed", action="store_true", help="process versions that failed before again"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"versions per Dagster run (default {DEFAULT_BATCH_SIZE})",
    )
    p.add_argument("--workers", type=int, default=0, help="parallel probes (default: cores)")
    p.set_defaults(func=run)


def _print_report(report: IngestReport) -> None:
    out = sys.stdout
    failed = report.failed
    listed = f" (prefix {report.prefix!r})" if report.prefix else ""
    print(f"source: {terminal_safe(report.source + listed)}", file=out)
    print(
        f"listed {report.listed}: new {len(report.new)}, already catalogued (skipped) "
        f"{len(report.skipped)}, known failures {len(report.known_failures)}"
        + (f", to analyse {len(report.to_analyse)}" if report.to_analyse else "")
        + (f", retried {len(report.retried)}" if report.retried else "")
        + (f", pending {len(report.pending)}" if report.pending else "")
        + (
            f", registered earlier but no longer listed {len(report.unlisted)}"
            if report.unlisted
            else ""
        ),
        file=out,
    )
    if report.skipped_entries:
        reasons = Counter(e.reason for e in report.skipped_entries)
        summary = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
        print(f"skipped: {len(report.skipped_entries)} ({summary})", file=out)
        for entry in report.skipped_entries:
            print(f"  {terminal_safe(entry.key)}: {terminal_safe(entry.describe())}", file=out)
        if report.incomplete:
            # The exit status is 1 although no version failed: say why.
            print(
                f"incomplete: {len(report.incomplete)} entries could not be listed; "
                "objects in them are not catalogued",
                file=out,
            )
    if not report.processed:
        print("nothing new to process", file=out)
    else:
        print(
            f"processed {len(report.processed)}: succeeded {len(report.succeeded)}, "
            f"failed {len(failed)}",
            file=out,
        )
    for title, keys in (
        ("failed", failed),
        ("known failures (not retried; use --retry-failed)", report.known_failures),
    ):
        if keys:
            print(f"{title}:", file=out)
            for pk in keys:
                state = report.states.get(pk)
                version = report.versions[pk]
                reason = state.error if state and state.error else "no result recorded"
                cls = state.error_class if state and state.error_class else "unknown"
                # Keys and ffprobe's messages (which quote the path) come from uploads: a raw
                # ESC or CR in one could erase this very line.
                line = f"  {terminal_safe(version.object_key)}: [{terminal_safe(cls)}] "
                print(line + terminal_safe(reason), file=out)
    if report.run_ids:
        print(f"dagster runs: {', '.join(report.run_ids)}", file=out)
    if failed or report.known_failures:
        print("incidents: edvmp incidents summary", file=out)


def run(args: argparse.Namespace) -> int:
    """Run the ingest and print its summary; 0 all good, 1 any failure (a failed version or
    a subfolder that could not be listed)."""
    from tqdm import tqdm

    from edvmp_pipeline.defs.in_process_runs import ingest_in_process

    if args.batch_size < 1 or args.workers < 0:
        raise ConfigError("--batch-size must be >= 1 and --workers >= 0")
    bar: tqdm | None = None

    def on_listed(n: int) -> None:
        nonlocal bar
        if n:
            bar = tqdm(total=n, unit="video", desc="probing", file=sys.stderr, disable=None)

    def on_done(_pk: str, _ok: bool) -> None:
        if bar is not None:
            bar.update(1)

    try:
        report = ingest_in_process(
            args.source,
            retry_failed=args.retry_failed,
            batch_size=args.batch_size,
            workers=args.workers,
            on_listed=on_listed,
            on_done=on_done,
        )
    finally:
        if bar is not None:
            bar.close()
    _print_report(report)
    return 0 if report.all_ok else 1
