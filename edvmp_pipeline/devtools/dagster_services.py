"""``python -m edvmp_pipeline.devtools.dagster_services``: the Dagster UI and daemon of the
local stack, what ``dagster dev`` starts, without what makes ``dagster dev`` noisy.

``dagster dev`` is superseded in Dagster 1.13 (it warns on every start, pointing at
``dg dev``, which wants a ``dg`` project layout), and started from the repository root it also
warns that the repo's ``dagster.yaml`` is not the instance's. So this starts Dagster's own
``dagster-daemon run`` and ``dagster-webserver`` with the instance directory as their working
directory and a workspace file written there, and stops both when either exits or on
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edvmp_pipeline.adapters.dagster_instance import ensure_dagster_home

WORKSPACE = """\
# Written by edvmp_pipeline.devtools.dagster_services: the edvmp code location.
load_from:
  - python_module:
      module_name: edvmp_pipeline.definitions
      location_name: edvmp
"""


def write_workspace(dagster_home: Path) -> Path:
    """The workspace file of the stack, inside the instance directory."""
    path = dagster_home / "workspace.yaml"
    path.write_text(WORKSPACE)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the daemon and the webserver until one exits or a signal arrives."""
    parser = argparse.ArgumentParser(
        description="Start the Dagster webserver and daemon on the instance edvmp uses "
        "(DAGSTER_HOME, default $EDVMP_HOME/dagster), as `dagster dev` would; Ctrl-C stops both."
    )
    parser.add_argument("--host", default="127.0.0.1", help="webserver address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="webserver port (3000)")
    args = parser.parse_args(argv)
    home = ensure_dagster_home()
    workspace = write_workspace(home)
    bin_dir = Path(sys.executable).parent
    commands = [
        [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
        [
            str(bin_dir / "dagster-webserver"),
            "-w",
            str(workspace),
            "-h",
            args.host,
            "-p",
            str(args.port),
        ],
    ]
    procs = [subprocess.Popen(cmd, cwd=home, env=os.environ.copy()) for cmd in commands]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        while not stopping:
            done = [p for p in procs if p.poll() is not None]
            if done:
                code = done[0].returncode or 0
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 20
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return code


if __name__ == "__main__":
    sys.exit(main())
