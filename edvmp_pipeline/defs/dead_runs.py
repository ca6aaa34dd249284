"""Runs whose process died (SIGKILL, OOM killer) without telling Dagster.

``edvmp ingest`` and ``edvmp redrive`` execute runs inside their own process. If that process
is killed, the run stays STARTED forever and its versions stay RUNNING. Each such run carries
the host and PID that executed it; a later command on the same host that finds the PID gone
marks the run failed and records its versions' incidents (class ``resource_exhausted``).
"""

from __future__ import annotations

import os
import socket

import dagster as dg

from edvmp_pipeline.catalog.claimants import pid_alive
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.defs.run_failures import record_run_failure
from edvmp_pipeline.defs.tags import TAG_HOST, TAG_PID


def process_tags() -> dict[str, str]:
    """Tags naming the process that executes an in-process run."""
    return {TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid())}


def reap_dead_runs(instance: dg.DagsterInstance, catalog: Catalog) -> list[str]:
    """Fail the STARTED in-process runs of this host whose process is gone; returns run ids."""
    host = socket.gethostname()
    records = instance.get_runs(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED], tags={TAG_HOST: host})
    )
    reaped = []
    for run in records:
        pid = int(run.tags.get(TAG_PID, "0") or 0)
        if pid <= 0 or pid == os.getpid() or pid_alive(pid):
            continue
        instance.report_run_failed(
            run,
            f"run worker process {pid} was killed (SIGKILL or out of memory) before the "
            "run finished",
        )
        failed = instance.get_run_by_id(run.run_id)
        if failed is not None:
            record_run_failure(instance, failed, catalog)
        reaped.append(run.run_id)
    return reaped
