"""``edvmp status JOB [--wait] [--timeout S] [--json]``: where one job stands.

A job is one object version, named by its partition key (what ``edvmp upload`` prints). Its
state combines two sources: the catalog's ``jobs`` view (the system of record: PENDING →
RUNNING → SUCCEEDED/FAILED, written by the sensor and the run) and the Dagster instance (the
run for that partition, found by its ``dagster/partition`` tag, which says QUEUED before the
run has written anything). When done, the result is the version's ``videos`` row, or for a
failure its error class, error and incident.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from edvmp_pipeline.domain.errors import ConfigError

if TYPE_CHECKING:
    import dagster as dg

    from edvmp_pipeline.catalog.store import Catalog

POLL_S = 0.5
DEFAULT_TIMEOUT_S = 300.0
# The incident sensor runs every 5 s (plus the daemon's 5 s loop): a FAILED job's incident
# usually lands within ~10 s of the failure; --wait gives it that long before printing.
INCIDENT_GRACE_S = 12.0
EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 4

PENDING, QUEUED, RUNNING = "PENDING", "QUEUED", "RUNNING"
SUCCEEDED, FAILED = "SUCCEEDED", "FAILED"
FINAL = frozenset({SUCCEEDED, FAILED})
# Dagster run statuses grouped by what they mean for the job.
_RUN_QUEUED = frozenset({"QUEUED", "NOT_STARTED"})
_RUN_ACTIVE = frozenset({"MANAGED", "STARTING", "STARTED", "SUSPENDED", "CANCELING"})
_RUN_FAILED = frozenset({"FAILURE", "CANCELED"})

_RESULT_COLUMNS = (
    "object_key",
    "format_name",
    "duration_s",
    "size_bytes",
    "bit_rate",
    "video_codec",
    "width",
    "height",
    "fps",
    "rotation",
    "audio_codec",
    "audio_channels",
    "n_audio_streams",
    "processed_at",
)

EPILOG = """\
states: PENDING (registered, no run yet), QUEUED, RUNNING, SUCCEEDED, FAILED.

exit status:
  0  the job exists (with --wait: it SUCCEEDED)
  1  the job FAILED
  2  unknown job, malformed job id, or bad configuration
  3  internal error
  4  --wait gave up after --timeout seconds (the job is still pending or running,
     or was never registered)

--wait polls every 0.5 s; it also waits for a job that the sensor has not registered yet
(an upload seconds old), so a mistyped id waits until the timeout.
"""


@dataclass(frozen=True)
class RunInfo:
    """One Dagster run of the job's partition."""

    run_id: str
    status: str
    created_at: datetime | None


@dataclass(frozen=True)
class Resolved:
    """The job's state, the run it comes from, and whether ``--wait`` may stop.

    ``state`` is None for an unknown job. ``settled`` is True when the state is final and
    the catalog agrees (no newer run is queued or active).
    """

    state: str | None
    run: RunInfo | None
    settled: bool


def _aware(value: datetime | None) -> datetime | None:
    """Naive timestamps (some run storages) are UTC; comparing them with the catalog's
    timezone-aware ones would raise."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _in_flight(run: RunInfo | None) -> bool:
    return run is not None and (run.status in _RUN_QUEUED or run.status in _RUN_ACTIVE)


def resolve_state(job: dict[str, Any] | None, runs: list[RunInfo]) -> Resolved:
    """Combine the catalog's ``jobs`` row (or None) with the partition's runs (newest first).

    A run queued or active *after* the catalog's final state (a redrive, a re-run from the
    UI) wins: the job is being processed again. A run that failed before writing anything
    leaves the catalog at PENDING/RUNNING until the incident sensor marks it FAILED; the
    state is FAILED at once, but not yet settled.
    """
    latest = runs[0] if runs else None
    run_of_row = None
    if job is not None and job.get("run_id"):
        run_of_row = next((r for r in runs if r.run_id == job["run_id"]), None)
    if job is None:
        if latest is None:
            return Resolved(None, None, False)
        if latest.status in _RUN_QUEUED:
            return Resolved(QUEUED, latest, False)
        if latest.status in _RUN_ACTIVE:
            return Resolved(RUNNING, latest, False)
        return Resolved(FAILED if latest.status in _RUN_FAILED else SUCCEEDED, latest, False)

    status = job["status"]
    finished_at = job.get("finished_at")
    if _in_flight(latest) and latest is not None:
        newer = (
            status not in FINAL
            or finished_at is None
            or latest.created_at is None
            or latest.created_at > finished_at
        )
        if newer:
            if status == RUNNING or latest.status in _RUN_ACTIVE:
                return Resolved(RUNNING, latest, False)
            return Resolved(QUEUED, latest, False)
        # The catalog's final state is newer than this run's creation: the run is finishing
        # its later steps (summary, checks, several seconds) for a version whose result is
        # recorded already. That result is what the job waits for.
        return Resolved(status, run_of_row or latest, True)
    if status in FINAL:
        return Resolved(status, run_of_row or latest, True)
    if latest is not None and latest.status in _RUN_FAILED:
        return Resolved(FAILED, latest, False)
    return Resolved(status, run_of_row or latest, False)


class _Sources:
    """The catalog and (when it exists) the Dagster instance, opened once per command."""

    def __init__(self) -> None:
        from edvmp_pipeline.catalog.store import Catalog
        from edvmp_pipeline.settings import catalog_root, dagster_home

        self.catalog: Catalog = Catalog(catalog_root())
        self._instance: dg.DagsterInstance | None = None
        self._home = dagster_home()

    def instance(self) -> dg.DagsterInstance | None:
        # No instance yet means no run yet: do not create one just to find nothing.
        if self._instance is None and self._home.is_dir():
            from edvmp_pipeline.instance_home import get_instance

            self._instance = get_instance()
        return self._instance

    def job_row(self, job: str) -> dict[str, Any] | None:
        cols, rows = self.catalog.query("SELECT * FROM jobs WHERE partition_key = ?", [job])
        return dict(zip(cols, rows[0], strict=True)) if rows else None

    def runs(self, job: str, catalog_run_id: str | None) -> list[RunInfo]:
        import dagster as dg

        instance = self.instance()
        if instance is None:
            return []
        records = list(
            instance.get_run_records(
                filters=dg.RunsFilter(tags={"dagster/partition": job}), limit=10
            )
        )
        # Batch runs (`edvmp ingest`) cover many partitions and carry no partition tag: the
        # catalog names the run that processed the version.
        if catalog_run_id and all(r.dagster_run.run_id != catalog_run_id for r in records):
            records += instance.get_run_records(
                filters=dg.RunsFilter(run_ids=[catalog_run_id]), limit=1
            )
        infos = [
            RunInfo(r.dagster_run.run_id, r.dagster_run.status.value, _aware(r.create_timestamp))
            for r in records
        ]
        return sorted(
            infos, key=lambda r: r.created_at.timestamp() if r.created_at else 0.0, reverse=True
        )

    def result(self, job: str) -> dict[str, Any] | None:
        cols, rows = self.catalog.query(
            f"SELECT {', '.join(_RESULT_COLUMNS)} FROM videos WHERE partition_key = ?", [job]
        )
        if not rows:
            return None
        result = dict(zip(cols, rows[0], strict=True))
        _, summaries = self.catalog.query(
            "SELECT summary FROM summaries WHERE partition_key = ?", [job]
        )
        result["summary"] = summaries[0][0] if summaries else None
        return result

    def incident(self, job: str) -> dict[str, Any] | None:
        cols, rows = self.catalog.query(
            'SELECT incident_id, "class", retryable, status, action, attempts, redrives '
            "FROM incidents WHERE partition_key = ? ORDER BY last_seen DESC LIMIT 1",
            [job],
        )
        return dict(zip(cols, rows[0], strict=True)) if rows else None


@dataclass
class Report:
    """Everything ``status`` prints about one job."""

    job: str
    state: str | None
    run_id: str | None
    run_status: str | None
    catalog_status: str | None
    source: str | None = None
    object_key: str | None = None
    etag: str | None = None
    attempts: int | None = None
    registered_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error_class: str | None = None
    error: str | None = None
    incident: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


def _snapshot(sources: _Sources, job: str) -> tuple[Report, Resolved]:
    row = sources.job_row(job)
    runs = sources.runs(job, row.get("run_id") if row else None)
    resolved = resolve_state(row, runs)
    report = Report(
        job=job,
        state=resolved.state,
        run_id=resolved.run.run_id if resolved.run else None,
        run_status=resolved.run.status if resolved.run else None,
        catalog_status=row["status"] if row else None,
    )
    if row is not None:
        report.source = row["source"]
        report.object_key = row["object_key"]
        report.etag = row["etag"]
        report.attempts = row["attempts"]
        report.registered_at = row["registered_at"]
        report.started_at = row["started_at"]
        report.finished_at = row["finished_at"]
    if resolved.state == SUCCEEDED:
        report.result = sources.result(job)
    elif resolved.state == FAILED:
        report.error_class = row.get("error_class") if row else None
        report.error = row.get("error") if row else None
        if not report.error and resolved.run is not None:
            report.error = (
                f"run {resolved.run.run_id} ended {resolved.run.status}; "
                "the incident sensor has not classified it yet"
            )
        report.incident = sources.incident(job)
    return report, resolved


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _fmt_time(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _describe_result(result: dict[str, Any]) -> list[str]:
    def num(v: Any, fmt: str) -> str:
        return format(v, fmt) if v is not None else "-"

    video = "no video stream"
    if result.get("video_codec"):
        video = (
            f"{result['video_codec']} {result.get('width')}x{result.get('height')} "
            f"@ {num(result.get('fps'), '.5g')} fps"
        )
        if result.get("rotation"):
            video += f", rotated {result['rotation']}°"
    audio = "no audio"
    if result.get("audio_codec"):
        audio = f"{result['audio_codec']} {result.get('audio_channels') or '?'} ch"
        if (result.get("n_audio_streams") or 0) > 1:
            audio += f" ({result['n_audio_streams']} streams)"
    lines = [
        f"result:     {result.get('format_name')}, {num(result.get('duration_s'), '.2f')} s, "
        f"{result.get('size_bytes')} bytes, {num(result.get('bit_rate'), 'd')} bit/s",
        f"            video {video}; audio {audio}",
    ]
    if result.get("summary"):
        summary = " ".join(str(result["summary"]).split())
        lines.append(f"summary:    {summary[:200]}{'…' if len(summary) > 200 else ''}")
    return lines


def _print_human(report: Report) -> None:
    where = f"{report.source}/{report.object_key} (ETag {report.etag})" if report.source else "-"
    run = f"{report.run_id} ({report.run_status})" if report.run_id else "none yet"
    lines = [
        f"job:        {report.job}",
        f"state:      {report.state}",
        f"object:     {where}",
        f"run:        {run}",
        f"catalog:    {report.catalog_status or 'not registered'}"
        + (f", attempts {report.attempts}" if report.attempts is not None else ""),
        f"times:      registered {_fmt_time(report.registered_at)}, "
        f"started {_fmt_time(report.started_at)}, finished {_fmt_time(report.finished_at)}",
    ]
    if report.result is not None:
        lines += _describe_result(report.result)
        if report.result.get("summary") is None and report.run_status in _RUN_ACTIVE:
            lines.append("summary:    not yet (the run is still at its later steps)")
    if report.state == FAILED:
        lines.append(f"error:      [{report.error_class or 'unclassified'}] {report.error or '-'}")
        if report.incident is not None:
            inc = report.incident
            lines.append(
                f"incident:   {inc['incident_id']} ({inc['status']}, "
                f"{'retryable' if inc['retryable'] else 'permanent'}): {inc['action']}"
            )
        else:
            lines.append("incident:   none recorded yet")
    print("\n".join(lines))


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``status`` sub-command."""
    p = sub.add_parser(
        "status",
        help="state of one job (the id `edvmp upload` prints); --wait until it is done",
        description="Print a job's state from the catalog's jobs view and the Dagster "
        "instance, and its result when done (metadata, or error class, error and incident).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("job", help="job id = partition key, as printed by `edvmp upload`")
    p.add_argument("--wait", action="store_true", help="poll until SUCCEEDED or FAILED")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"with --wait: give up after S seconds (default {DEFAULT_TIMEOUT_S:g}; exit 4)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=run)


def _wait(sources: _Sources, job: str, timeout_s: float) -> tuple[Report, Resolved, bool]:
    """Poll until settled; returns the last snapshot and whether the timeout ran out."""
    started = time.monotonic()
    deadline = started + timeout_s
    last_line = None
    final_since: float | None = None
    while True:
        report, resolved = _snapshot(sources, job)
        now = time.monotonic()
        line = f"{resolved.state or 'not registered yet'}" + (
            f" (run {resolved.run.run_id[:8]} {resolved.run.status})" if resolved.run else ""
        )
        if line != last_line:
            print(f"[{now - started:6.1f}s] {line}", file=sys.stderr)
            last_line = line
        if resolved.state in FINAL:
            final_since = final_since if final_since is not None else now
            quiet = not _in_flight(resolved.run)
            if resolved.state == SUCCEEDED and resolved.settled:
                return report, resolved, False
            # A failure is final once its run has ended; give the incident sensor a moment.
            if (
                resolved.state == FAILED
                and quiet
                and (report.incident is not None or now - final_since >= INCIDENT_GRACE_S)
            ):
                return report, resolved, False
        else:
            final_since = None
        if now >= deadline:
            return report, resolved, True
        time.sleep(min(POLL_S, max(0.0, deadline - now)))


def run(args: argparse.Namespace) -> int:
    """Print the job's state; exit 0 found/succeeded, 1 failed, 2 unknown, 4 timed out."""
    from edvmp_pipeline.domain.partition_keys import is_valid_partition_key

    job = args.job.strip()
    if not is_valid_partition_key(job):
        raise ConfigError(
            f"not a job id: {job!r} (expected a partition key like "
            "clip.mp4~1a2b3c4d~0123456789abcdef, as printed by `edvmp upload`)"
        )
    if args.timeout <= 0:
        raise ConfigError("--timeout must be greater than 0")
    sources = _Sources()
    timed_out = False
    if args.wait:
        report, resolved, timed_out = _wait(sources, job, args.timeout)
    else:
        report, resolved = _snapshot(sources, job)
    if resolved.state is None and not timed_out:
        raise ConfigError(
            f"unknown job: {job} (not in the catalog and no Dagster run; a fresh upload "
            "appears within seconds once the object sensor sees it: try --wait)"
        )
    if args.json:
        print(json.dumps(_jsonable(asdict(report)), indent=2, ensure_ascii=False, default=str))
    elif resolved.state is not None:
        _print_human(report)
    if timed_out:
        print(
            f"edvmp: timed out after {args.timeout:g} s; job is "
            f"{resolved.state or 'still unknown (never registered)'}",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    return EXIT_FAILED if resolved.state == FAILED else EXIT_OK
