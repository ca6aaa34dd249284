"""The ``edvmp`` command: ingest, query and operate the pipeline from a shell.

Every expected failure (bad usage, bad configuration, unreachable store) ends with a one-line
message on stderr and exit status 2, never a traceback; an unexpected one exits 3 with a
one-line message (``EDVMP_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from edvmp_pipeline.domain.errors import PipelineError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    from edvmp_pipeline.cli import (
        check_cmd,
        compact_cmd,
        hash_password_cmd,
        incidents_cmd,
        ingest_cmd,
        query_cmd,
        redrive_cmd,
        register_cmd,
        samples_cmd,
        serve_cmd,
        stack_cmd,
        status_cmd,
        upload_cmd,
    )

    parser = argparse.ArgumentParser(
        prog="edvmp", description="Event-driven video metadata platform (Dagster)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        ingest_cmd,
        register_cmd,
        query_cmd,
        check_cmd,
        samples_cmd,
        incidents_cmd,
        redrive_cmd,
        stack_cmd,
        upload_cmd,
        status_cmd,
        compact_cmd,
        serve_cmd,
        hash_password_cmd,
    ):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edvmp`` console script."""
    # Dagster warns loudly about preview APIs and its own defaults; users want the result.
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    logging.getLogger("dagster").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        # Inside the try: a reader that closed the pipe shows up when the buffer is flushed.
        sys.stdout.flush()
        return code
    except PipelineError as exc:
        from edvmp_pipeline.cli.output import terminal_safe

        # Reasons quote object keys and tool output: no raw control or bidi characters.
        print(f"edvmp: error: {terminal_safe(exc.reason)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edvmp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except Exception as exc:
        if os.environ.get("EDVMP_DEBUG"):
            raise
        print(
            f"edvmp: internal error: {type(exc).__name__}: {exc} "
            "(set EDVMP_DEBUG=1 to see the traceback)",
            file=sys.stderr,
        )
        return 3


def _closed_pipe() -> int:
    """The reader of stdout went away (``edvmp ingest … | head -3``): stop quietly, as a
    shell tool does, with the status of a SIGPIPE death."""
    # Point stdout at /dev/null so that flushing it at exit does not raise a second time.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
