"""``edvmp stack up | down | status``: the local S3 server (SeaweedFS from PyPI).

``up`` prints ``export`` lines on stdout and everything else on stderr, so that
``eval "$(edvmp stack up)"`` configures the shell for the other commands.
"""

from __future__ import annotations

import argparse
import sys

from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.settings import edvmp_home


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``stack`` sub-command."""
    p = sub.add_parser("stack", help="start, stop or inspect the local S3 server")
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--bucket", help="uploads bucket to create (default $EDVMP_BUCKET or uploads)")
    p.add_argument("--port", type=int, default=None, help="S3 port (default 8333)")
    p.add_argument(
        "--fast",
        action="store_true",
        help="down: SIGKILL after 1 s instead of waiting up to 20 s for a clean stop "
        "(stored objects are safe either way)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Carry out the action; stack errors become clean messages (exit 2)."""
    from edvmp_pipeline.devtools import stack

    home = edvmp_home()
    try:
        if args.action == "up":
            settings = stack.stack_up(home, bucket=args.bucket, s3_port=args.port)
            print(
                f"S3 (SeaweedFS) running at {settings.endpoint_url}, pid {settings.pid}, "
                f"bucket {settings.bucket}, data in {settings.data_dir}",
                file=sys.stderr,
            )
            print(stack.export_lines(settings))
            return 0
        if args.action == "down":
            stopped = stack.stack_down(home, grace_s=1.0 if args.fast else 20.0)
            print("stopped" if stopped else "not running", file=sys.stderr)
            return 0
        status = stack.stack_status(home)
    except stack.StackError as exc:
        raise ConfigError(str(exc)) from None
    if status is None:
        print(f"not running (no server started for {home / 's3'}; its data, if any, is kept)")
        return 1
    state = "running" if status.running else "not running (stale state file)"
    answering = {True: "yes", False: "no", None: "-"}[status.s3_answering]
    print(f"state:      {state}")
    print(f"pid:        {status.pid}")
    print(f"endpoint:   {status.endpoint_url} (S3 answering: {answering})")
    print(f"bucket:     {status.bucket}")
    print(f"data:       {status.data_dir}")
    print(f"log:        {status.log_file}")
    return 0 if status.running else 1
