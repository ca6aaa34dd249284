"""``edvmp redrive INCIDENT | --class C``: re-run failed versions on demand."""

from __future__ import annotations

import argparse
import sys

from edvmp_pipeline.domain.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``redrive`` sub-command."""
    p = sub.add_parser("redrive", help="re-run the versions of open incidents now")
    p.add_argument("incident", nargs="?", help="an incident id (inc-…)")
    p.add_argument("--class", dest="cls", help="every open incident of this class")
    p.add_argument(
        "--fingerprint", help="every open incident with this fingerprint (one summary line)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Re-run and report; 0 when every redriven version succeeded, 1 otherwise."""
    from edvmp_pipeline.cli.incidents_cmd import failure_class_filter
    from edvmp_pipeline.cli.output import terminal_safe
    from edvmp_pipeline.defs.in_process_runs import redrive_in_process

    # Checked before anything is opened; an empty value would select nothing (or, passed
    # on, everything), so it is refused like a wrong one.
    if args.incident is not None and not args.incident.strip():
        raise ConfigError("the incident id is empty (give an id such as inc-…)")
    failure_class_filter(args.cls)
    if args.fingerprint is not None and not args.fingerprint.strip():
        raise ConfigError("--fingerprint is empty (give one that `edvmp incidents summary` shows)")
    chosen = [x for x in (args.incident, args.cls, args.fingerprint) if x is not None]
    if len(chosen) != 1:
        raise ConfigError("give one of: an incident id, --class CLASS, --fingerprint FP")
    outcome = redrive_in_process(
        incident_id=args.incident, failure_class=args.cls, fingerprint=args.fingerprint
    )
    if not outcome.incidents:
        what = args.incident or (
            f"class {args.cls}" if args.cls else f"fingerprint {args.fingerprint}"
        )
        print(f"no open incident matches {terminal_safe(what)}", file=sys.stderr)
        return 1
    print(
        f"redrove {_count(len(outcome.incidents), 'incident')} "
        f"({_count(len(outcome.partition_keys), 'version')}): "
        f"succeeded {len(outcome.succeeded)}, failed {len(outcome.failed)}"
    )
    for pk, cls, error in outcome.failed:
        print(terminal_safe(f"  {outcome.object_keys.get(pk, pk)}: [{cls}] {error}"))
    if outcome.run_ids:
        print(f"dagster runs: {', '.join(outcome.run_ids)}")
    return 0 if not outcome.failed else 1


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
