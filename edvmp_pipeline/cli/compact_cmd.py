"""``edvmp compact``: merge each result table's Parquet files fully (e.g. before copying a
catalog). Never required: the writers keep the file count bounded themselves."""

from __future__ import annotations

import argparse

from edvmp_pipeline.cli.output import render


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``compact`` sub-command."""
    p = sub.add_parser(
        "compact",
        help="merge each result table's files into one (never required: writers compact)",
        description="Rewrite each result table (videos, streams, summaries, checks, ...) whose "
        "folder holds at least --min-files Parquet files as one file. Readers never need it.",
    )
    p.add_argument("--min-files", type=int, default=2, help="skip tables with fewer files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compact every table and print what changed."""
    from edvmp_pipeline.catalog.compaction import compact
    from edvmp_pipeline.catalog.opening import open_catalog

    results = compact(open_catalog(create=False).lake, min_files=max(2, args.min_files))
    rows = [
        (r.table, r.files_before, r.files_after, r.rows if r.rows >= 0 else "") for r in results
    ]
    print(render(["table", "files_before", "files_after", "rows"], rows))
    return 0
