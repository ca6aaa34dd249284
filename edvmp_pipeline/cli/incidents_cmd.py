"""``edvmp incidents`` and ``edvmp incidents summary``: what failed, grouped for on-call."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.cli.output import _jsonable, render
from edvmp_pipeline.settings import catalog_root

LIST_COLUMNS = (
    "incident_id, class, retryable, status, object_key, etag, message, attempts, redrives, "
    "first_seen, last_seen, partition_key, fingerprint, action, runbook"
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``incidents`` sub-command."""
    p = sub.add_parser(
        "incidents",
        help="list failure incidents, or their summary grouped by class and fingerprint",
    )
    p.add_argument("view", nargs="?", choices=("list", "summary"), default="list")
    p.add_argument("--open", action="store_true", help="only incidents still open")
    p.add_argument("--class", dest="cls", help="only this failure class")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=run)


def _where(args: argparse.Namespace) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if args.open:
        clauses.append("status = 'OPEN'")
    if args.cls:
        clauses.append('"class" = ?')
        params.append(args.cls)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def summary_rows(catalog: Catalog, where: str, params: list[Any]) -> tuple[list[str], list]:
    """Incidents grouped by class and fingerprint: the page on-call reads first."""
    return catalog.query(
        f"""
        SELECT "class", count(*) AS incidents, count(DISTINCT object_key) AS objects,
               count(*) FILTER (WHERE status = 'OPEN') AS open,
               bool_or(retryable) AS retryable, min(first_seen) AS first_seen,
               max(last_seen) AS last_seen, any_value(message) AS example,
               list(DISTINCT object_key ORDER BY object_key)[1:5] AS affected,
               any_value(action) AS action, any_value(runbook) AS runbook, fingerprint
        FROM incidents{where}
        GROUP BY "class", fingerprint
        ORDER BY open DESC, incidents DESC, "class"
        """,
        params,
    )


def run(args: argparse.Namespace) -> int:
    """Print the incidents (or their summary)."""
    catalog = Catalog(catalog_root())
    where, params = _where(args)
    if args.view == "summary":
        columns, rows = summary_rows(catalog, where, params)
        if not args.json:
            short = ["class", "incidents", "objects", "open", "retryable", "last_seen", "action"]
            idx = [columns.index(c) for c in short]
            print(render(short, [[r[i] for i in idx] for r in rows]))
            for r in rows:
                rec = dict(zip(columns, r, strict=True))
                print(f"\n[{rec['class']}] {rec['example']}")
                print(f"  affected: {', '.join(rec['affected'])}")
                print(f"  runbook:  {rec['runbook']}")
                print(f"  redrive:  edvmp redrive --fingerprint {rec['fingerprint']}")
            return 0
    else:
        columns, rows = catalog.query(
            f"SELECT {LIST_COLUMNS} FROM incidents{where} ORDER BY last_seen DESC", params
        )
        if not args.json:
            short = [
                "incident_id",
                "class",
                "retryable",
                "status",
                "attempts",
                "object_key",
                "message",
            ]
            idx = [columns.index(c) for c in short]
            print(render(short, [[r[i] for i in idx] for r in rows]))
            return 0
    objs = [{c: _jsonable(v) for c, v in zip(columns, r, strict=True)} for r in rows]
    print(json.dumps(objs, indent=2, ensure_ascii=False, default=str))
    return 0
