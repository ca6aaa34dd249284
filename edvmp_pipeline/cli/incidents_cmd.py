"""``edvmp incidents`` and ``edvmp incidents summary``: what failed, grouped for on-call."""

from __future__ import annotations

import argparse

from edvmp_pipeline.catalog.opening import open_catalog
from edvmp_pipeline.cli.output import _jsonable, json_text, render, terminal_safe


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
    catalog = open_catalog(create=False)
    if args.view == "summary":
        columns, rows = catalog.incident_summary(open_only=args.open, failure_class=args.cls)
        if not args.json:
            short = ["class", "incidents", "objects", "open", "retryable", "last_seen", "action"]
            idx = [columns.index(c) for c in short]
            print(render(short, [[r[i] for i in idx] for r in rows]))
            for r in rows:
                rec = dict(zip(columns, r, strict=True))
                # Object keys and messages come from uploads: escaped, per value, so that a
                # name cannot end its line and fake the next one either.
                safe = {k: terminal_safe(str(v)) for k, v in rec.items() if k != "affected"}
                affected = ", ".join(terminal_safe(k) for k in rec["affected"])
                print(f"\n[{safe['class']}] {safe['example']}")
                print(f"  affected: {affected}")
                print(f"  runbook:  {safe['runbook']}")
                print(f"  redrive:  edvmp redrive --fingerprint {safe['fingerprint']}")
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
    print(json_text(objs))
    return 0
