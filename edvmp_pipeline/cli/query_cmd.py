"""``edvmp query "SQL"``."""

from __future__ import annotations

import argparse

import duckdb

from edvmp_pipeline.catalog.store import Catalog, retry_on_vanished_file
from edvmp_pipeline.cli.output import render
from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.settings import catalog_root


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``query`` sub-command."""
    p = sub.add_parser(
        "query",
        help="run read-only SQL on the catalog views",
        description="Views: videos, videos_latest, streams, summaries, checks, jobs, objects, "
        "incidents. Join on partition_key, e.g. SELECT "
        "v.object_key, s.summary FROM videos v JOIN summaries s USING (partition_key).",
    )
    p.add_argument("sql", help='e.g. "SELECT object_key, duration_s FROM videos"')
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the statement and print the rows."""
    catalog = Catalog(catalog_root())

    def execute() -> tuple[list[str], list[tuple]]:
        con = catalog.connect(args.sql)
        try:
            statements = con.extract_statements(args.sql)
            if len(statements) != 1:
                raise ConfigError(f"give exactly one SQL statement (got {len(statements)})")
            # Read-only: the views sit over the system of record, and COPY/ATTACH could write.
            kind = statements[0].type
            if kind not in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN):
                raise ConfigError(f"edvmp query is read-only: {kind.name} statements are refused")
            cur = con.execute(args.sql)
            if cur.description is None:
                raise ConfigError("query returned no result set (only SELECT-like statements)")
            return [d[0] for d in cur.description], cur.fetchall()
        finally:
            con.close()

    try:
        columns, rows = retry_on_vanished_file(execute)
    except duckdb.Error as exc:
        raise ConfigError(f"query failed: {str(exc).splitlines()[0]}") from None
    print(render(columns, rows, args.format))
    return 0
