"""``edvmp incidents`` and ``edvmp incidents summary``: what failed, grouped for on-call."""

from __future__ import annotations

import argparse
import json

from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.cli.output import _jsonable, render
from edvmp_pipeline.settings import catalog_root


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


def run(args: argparse.Namespace) -> int:
    """Print the incidents (or their summary)."""
    catalog = Catalog(catalog_root())
    if args.view == "summary":
        columns, rows = catalog.incident_summary(open_only=args.open, failure_class=args.cls)
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
        columns, rows = catalog.incident_list(open_only=args.open, failure_class=args.cls)
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
