"""``edvmp query "SQL"``."""

from __future__ import annotations

import argparse

import duckdb

from edvmp_pipeline.catalog.opening import open_catalog
from edvmp_pipeline.catalog.views import VIEW_NAMES
from edvmp_pipeline.cli.output import render, terminal_safe
from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.settings import env_float


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``query`` sub-command."""
    # Help text, not SQL: the view names and the example are kept apart so that no string
    # is built around an SQL example (bandit would read it as a query being formatted).
    example = "SELECT v.object_key, s.summary FROM videos v JOIN summaries s USING (partition_key)"
    p = sub.add_parser(
        "query",
        help="run read-only SQL on the catalog views",
        description=" ".join(
            [
                "Views:",
                ", ".join(VIEW_NAMES) + ".",
                "Join on partition_key, e.g.",
                example + ".",
                "Read-only: one SELECT (or EXPLAIN [ANALYZE] of one) runs, and it can read only",
                "the catalog's tables (no other files, URLs, extensions or settings).",
            ]
        ),
    )
    p.add_argument("sql", help='e.g. "SELECT object_key, duration_s FROM videos"')
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=run)


def _one_line(exc: BaseException, limit: int = 400) -> str:
    """DuckDB's message on one line: its lines joined (the first alone may stop
    mid-sentence), cut at ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run(args: argparse.Namespace) -> int:
    """Run the statement read-only (see ``Catalog.read_only_query``) and print the rows."""
    timeout_s = env_float("EDVMP_QUERY_TIMEOUT_S", 300.0)
    catalog = open_catalog(create=False)
    try:
        columns, rows = catalog.read_only_query(args.sql, timeout_s=timeout_s)
    except duckdb.InterruptException:
        raise ConfigError(
            f"query stopped after {timeout_s:g} s (EDVMP_QUERY_TIMEOUT_S): narrow it, or raise "
            "the limit"
        ) from None
    except duckdb.PermissionException as exc:
        # The sandbox refused a file or URL: say so, not just "query failed".
        detail = _one_line(exc).removeprefix("Permission Error: ")
        raise ConfigError(
            terminal_safe(f"edvmp query reads only the catalog's tables: refused: {detail}")
        ) from None
    except duckdb.CatalogException as exc:
        # DuckDB's "Did you mean" draws on its own system tables too ("incident" gets
        # pg_index): kept only when it names one of the catalog's views, which are listed.
        detail, _, hint = _one_line(exc).partition("Did you mean ")
        suggested = hint.split("?", 1)[0].strip('"') if hint else ""
        detail = detail.rstrip(" !")
        if suggested in VIEW_NAMES:
            detail += f'; did you mean "{suggested}"?'
        raise ConfigError(
            terminal_safe(f"query failed: {detail}; the views are {', '.join(VIEW_NAMES)}")
        ) from None
    except duckdb.Error as exc:
        # The message quotes the user's SQL, which may hold control characters.
        raise ConfigError(terminal_safe(f"query failed: {_one_line(exc)}")) from None
    if not columns:
        raise ConfigError("query returned no result set (only SELECT-like statements)")
    if args.format == "table" and columns == ["explain_key", "explain_value"]:
        # A plan is a drawing over many lines: print it as one, each line escaped (a table
        # cell would show its newlines as \n).
        plans = (str(plan) for _, plan in rows)
        print("\n".join(terminal_safe(line) for plan in plans for line in plan.splitlines()))
        return 0
    print(render(columns, rows, args.format))
    return 0
