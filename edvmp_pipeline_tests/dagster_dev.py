"""Run ``dagster dev`` as a subprocess, the way a user does, and stop it without leftovers.

Shared by the end-to-end test (``test_event_e2e.py``) and ``benchmarks/event_latency.py``.
``dagster dev`` starts the webserver, the daemon and a code server, and the run launcher
starts one worker process per run (plus step processes): all of them stay in the session
that :func:`start_dagster_dev` creates, so one ``killpg`` reaches every one of them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_INSTANCE_YAML = REPO_ROOT / "dagster.yaml"
# Variables of the developer's shell that would point the subprocess elsewhere.
_SCRUBBED = ("DAGSTER_HOME", "EDVMP_CATALOG", "EDVMP_PREFIX", "EDVMP_SQS_QUEUE_URL")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_homes(edvmp_home: Path) -> Path:
    """Create ``edvmp_home`` and its ``dagster`` instance dir with the repo's dagster.yaml."""
    dagster_home = edvmp_home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_INSTANCE_YAML, dagster_home / "dagster.yaml")
    return dagster_home


def stack_env(
    edvmp_home: Path, s3_env: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for Dagster and ``edvmp`` processes working on one private home."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(s3_env)
    env["EDVMP_HOME"] = str(edvmp_home)
    env["DAGSTER_HOME"] = str(edvmp_home / "dagster")
    env["DAGSTER_DISABLE_TELEMETRY"] = "1"
    env.update(extra or {})
    return env


def _session_members(sid: int) -> list[int]:
    """PIDs (not zombies) whose session id is ``sid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        # After ")": state, ppid, pgrp, session, ...
        if fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


@dataclass
class DagsterDev:
    """A running ``dagster dev`` (its own session) and where its output goes."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    started: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def processes(self) -> list[int]:
        """Every live process of the session (dagster dev and all it started)."""
        return _session_members(self.proc.pid)

    def wait_until_ready(self, timeout_s: float = 60.0) -> float:
        """Block until the webserver answers; returns seconds since the start."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                opener.open(f"{self.url}/server_info", timeout=1) as resp,
            ):
                if resp.status == 200:
                    return time.monotonic() - self.started
            time.sleep(0.2)
        raise TimeoutError(f"dagster dev did not answer in {timeout_s:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the combined output (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 20.0) -> tuple[float, list[int]]:
        """SIGTERM the whole session, SIGKILL what is left after ``grace_s``.

        Returns (seconds taken, PIDs that needed SIGKILL). Raises if any process of the
        session survives both, so that a test never leaves orphans behind.
        """
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = started + grace_s
        while time.monotonic() < deadline:
            self.proc.poll()  # reap our direct child, or it stays a zombie in the session
            if not self.processes():
                return time.monotonic() - started, []
            time.sleep(0.1)
        killed = self.processes()
        # killpg reaches the group; anything that moved to its own group is killed by PID.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 10.0
        while time.monotonic() < end:
            self.proc.poll()
            if not self.processes():
                return time.monotonic() - started, killed
            time.sleep(0.1)
        raise RuntimeError(f"processes of dagster dev survived SIGKILL: {self.processes()}")


# Runs in the new session before exec'ing dagster: a process started from a background job of
# a non-interactive shell inherits SIGINT as *ignored*, and dagster maps SIGTERM to SIGINT's
# handler, so it would then ignore SIGTERM too and never shut down. Restore both defaults.
_RESET_SIGNALS_AND_EXEC = (
    "import os, signal, sys; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "signal.signal(signal.SIGTERM, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def start_dagster_dev(
    env: Mapping[str, str], log_path: Path, port: int | None = None, *, webserver_only: bool = False
) -> DagsterDev:
    """Start the local stack's Dagster (webserver and daemon, see
    ``devtools/dagster_services.py``; or only ``dagster-webserver``) in a new session."""
    port = port or free_port()
    from edvmp_pipeline.devtools.dagster_services import write_workspace

    # From the instance directory, as the stack runs it (no "dagster.yaml in the current
    # folder is not the instance's" warning).
    cwd = Path(env["DAGSTER_HOME"])
    command = (
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            "-w",
            str(write_workspace(cwd)),
        ]
        if webserver_only
        else [sys.executable, "-m", "edvmp_pipeline.devtools.dagster_services"]
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _RESET_SIGNALS_AND_EXEC,
                *command,
                *(
                    ["-h", "127.0.0.1", "-p"]
                    if webserver_only
                    else ["--host", "127.0.0.1", "--port"]
                ),
                str(port),
            ],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session and process group: one killpg stops it and all its children.
            start_new_session=True,
        )
    return DagsterDev(proc=proc, port=port, log_path=log_path, started=time.monotonic())


def graphql(url: str, query: str, variables: Mapping[str, object] | None = None) -> dict:
    """POST one query to the webserver's GraphQL endpoint (what the UI reads); its data."""
    import json

    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as resp:
        answer = json.loads(resp.read())
    if answer.get("errors"):
        raise AssertionError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


PARTITION_STATS = """
query Stats($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    kinds
    partitionStats { numMaterialized numFailed numMaterializing numPartitions }
  }
}
"""


def partition_stats(url: str, *assets: str) -> dict[str, dict[str, int]]:
    """The partitions view's counts per asset, as the UI shows them."""
    data = graphql(url, PARTITION_STATS, {"keys": [{"path": [a]} for a in assets]})
    return {n["assetKey"]["path"][-1]: n["partitionStats"] for n in data["assetNodes"]}


def asset_kinds(url: str, *assets: str) -> dict[str, set[str]]:
    """The kind tags the UI shows per asset."""
    data = graphql(url, PARTITION_STATS, {"keys": [{"path": [a]} for a in assets]})
    return {n["assetKey"]["path"][-1]: set(n["kinds"]) for n in data["assetNodes"]}


CHECKS = """
query Checks($key: AssetKeyInput!) {
  assetNodes(assetKeys: [$key]) {
    assetChecksOrError {
      ... on AssetChecks { checks { name executionForLatestMaterialization { status } } }
    }
  }
}
"""


def check_statuses(url: str, asset: str) -> dict[str, str | None]:
    """Latest status of each asset check, as the asset's Checks tab shows it."""
    data = graphql(url, CHECKS, {"key": {"path": [asset]}})
    checks = data["assetNodes"][0]["assetChecksOrError"]["checks"]
    return {c["name"]: (c["executionForLatestMaterialization"] or {}).get("status") for c in checks}


OBSERVATIONS = """
query Observations($key: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetObservations(partitions: $partitions) {
        description
        metadataEntries {
          label
          ... on TextMetadataEntry { text }
        }
      }
    }
  }
}
"""


def failure_notes(url: str, asset: str, partition: str) -> list[dict[str, str]]:
    """The failure observations on one partition's page: label → text, newest first."""
    data = graphql(url, OBSERVATIONS, {"key": {"path": [asset]}, "partitions": [partition]})
    return [
        {e["label"]: e.get("text", "") for e in o["metadataEntries"]}
        | {"description": o["description"]}
        for o in data["assetOrError"]["assetObservations"]
    ]


TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { ticks(limit: 200) { status error { message } } } }
  }
}
"""


def sensor_tick_statuses(url: str, sensor: str) -> list[tuple[str, str]]:
    """(status, error message) of a sensor's recent ticks, as Automation shows them."""
    selector = {
        "repositoryName": "__repository__",
        "repositoryLocationName": "edvmp",
        "sensorName": sensor,
    }
    data = graphql(url, TICKS, {"selector": selector})
    ticks = data["sensorOrError"]["sensorState"]["ticks"]
    return [(t["status"], (t["error"] or {}).get("message", "")) for t in ticks]
