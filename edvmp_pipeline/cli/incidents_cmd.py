"""``edvmp incidents`` and ``edvmp incidents summary``: what failed, grouped for on-call."""

from __future__ import annotations

import argparse

from edvmp_pipeline.catalog.opening import open_catalog
from edvmp_pipeline.cli.output import _jsonable, json_text, render, terminal_safe
from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.domain.failure_classes import CLASSES_BY_NAME, is_known_class


def failure_class_filter(value: str | None) -> str | None:
    """The ``--class`` filter of ``incidents`` and ``redrive``: None when not given, else a
    known failure class; anything else (an empty string included, which would filter
    nothing) is a :class:`ConfigError` listing the classes."""
    if value is None or is_known_class(value):
        return value
    known = ", ".join(sorted(CLASSES_BY_NAME))
    what = "empty failure class" if not value else f"unknown failure class {value!r}"
    raise ConfigError(f"--class: {what}; one of: {known}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``incidents`` sub-command."""
    p = sub.add_parser(
        "incidents",
        help="list failure incidents, or their summary grouped by class and fingerprint",
        description="Incidents are failed versions, classified (corrupt_media, "
        "object_missing, ...) with a runbook; one per failed version, newest first.",
    )
    p.add_argument(
        "view",
        nargs="?",
        choices=("list", "summary"),
        default="list",
        help="list (default): one row per incident; summary: counts by class and fingerprint",
    )
    p.add_argument("--open", action="store_true", help="only incidents still open")
    p.add_argument("--class", dest="cls", help="only this failure class")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the incidents (or their summary)."""
    failure_class_filter(args.cls)
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
