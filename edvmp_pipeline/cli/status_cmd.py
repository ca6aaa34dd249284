"""``edvmp status JOB [--wait] [--timeout S] [--json]``: where one job stands.

A job is one object version, named by its partition key (what ``edvmp upload`` prints). Its
state is one point read of the state store, the one home of it: PENDING (registered by a
sensor or an ingest and not done yet: its run has not started, or an earlier run did not do
all of its assets), RUNNING, SUCCEEDED (metadata, checks and summary all done) or FAILED.
The Dagster run it names is shown beside it, never mixed into it. When done, the result is
the version's ``videos`` row and summary, or for a failure its error class, error and
incident.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import unicodedata
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from edvmp_pipeline.defs.tags import TAG_FAILED, TAG_SUCCEEDED
from edvmp_pipeline.domain.errors import ConfigError

if TYPE_CHECKING:
    import dagster as dg

    from edvmp_pipeline.catalog.store import Catalog, JobState

POLL_S = 0.5
DEFAULT_TIMEOUT_S = 300.0
# The incident sensor runs every 5 s (plus the daemon's 5 s loop): a FAILED job's incident
# usually lands within ~10 s of the failure; --wait gives it that long before printing.
INCIDENT_GRACE_S = 12.0
EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 4

SUCCEEDED, FAILED = "SUCCEEDED", "FAILED"
FINAL = frozenset({SUCCEEDED, FAILED})
# Dagster run statuses after which a run writes nothing more.
RUN_FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

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
states: PENDING (registered, not done yet), RUNNING, SUCCEEDED (metadata, checks and
summary all done), FAILED.

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


class _Sources:
    """The catalog and (when it exists) the Dagster instance, opened once per command."""

    def __init__(self) -> None:
        from edvmp_pipeline.catalog.store import Catalog
        from edvmp_pipeline.settings import catalog_location, dagster_home

        self.catalog: Catalog = Catalog(catalog_location())
        self._instance: dg.DagsterInstance | None = None
        self._home = dagster_home()

    def instance(self) -> dg.DagsterInstance | None:
        # No instance yet means no run yet: do not create one just to find nothing.
        if self._instance is None and self._home.is_dir():
            from edvmp_pipeline.adapters.dagster_instance import get_instance

            self._instance = get_instance()
        return self._instance

    def job(self, job: str) -> JobState | None:
        # Never create a catalog to look into it (--wait may start before the first upload).
        from edvmp_pipeline.catalog.opening import catalog_exists

        if self.catalog.on_s3 or catalog_exists(self.catalog.root):
            return self.catalog.job(job)
        return None

    def run_status(self, run_id: str | None) -> tuple[str | None, str | None]:
        """The Dagster status of the run named by the job (shown, and waited for by --wait,
        never used for the state), and for a run of several versions its counts
        (``5 succeeded, 2 failed``): a batch is FAILURE when any of its versions failed,
        which says nothing about this one."""
        instance = self.instance() if run_id else None
        run = instance.get_run_by_id(run_id) if instance is not None and run_id else None
        if run is None:
            return None, None
        counts = [(run.tags.get(TAG_SUCCEEDED), "succeeded"), (run.tags.get(TAG_FAILED), "failed")]
        shown = [f"{n} {what}" for n, what in counts if n is not None and n.isdigit()]
        batch = sum(int(n) for n, _ in counts if n is not None and n.isdigit()) > 1
        return run.status.value, (", ".join(shown) if batch else None)

    def result(self, job: str) -> dict[str, Any] | None:
        rows = self.catalog.video_rows([job])
        if not rows:
            return None
        result = {c: rows[0].get(c) for c in _RESULT_COLUMNS}
        result["summary"] = self.catalog.summary_of(job)
        from edvmp_pipeline.catalog.analysis_tables import analysis_result

        result["analysis"] = analysis_result(self.catalog, job)
        return result

    def incident(self, job: str) -> dict[str, Any] | None:
        inc = self.catalog.state.latest_incident(job)
        if inc is None:
            return None
        return {
            "incident_id": inc.incident_id,
            "class": inc.failure_class,
            "retryable": inc.retryable,
            "status": inc.status,
            "action": inc.action,
            "attempts": inc.attempts,
            "redrives": inc.redrives,
        }


@dataclass
class Report:
    """Everything ``status`` prints about one job."""

    job: str
    state: str | None
    run_id: str | None = None
    run_status: str | None = None
    run_batch: str | None = None
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


def _snapshot(sources: _Sources, job: str, *, with_run: bool = True) -> Report:
    """One point read of the state store (plus the result or incident when final)."""
    state = sources.job(job)
    if state is None:
        return Report(job=job, state=None)
    report = Report(
        job=job,
        state=state.status,
        run_id=state.run_id,
        source=state.source,
        object_key=state.object_key,
        etag=state.etag,
        attempts=state.attempts,
        registered_at=state.registered_at,
        started_at=state.started_at,
        finished_at=state.finished_at,
        error_class=state.error_class,
        error=state.error,
    )
    if with_run:
        report.run_status, report.run_batch = sources.run_status(state.run_id)
    if state.status == SUCCEEDED:
        report.result = sources.result(job)
    elif state.status == FAILED:
        report.incident = sources.incident(job)
    return report


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
    analysis = result.get("analysis")
    if analysis:
        lines.append(f"analysis:   {_analysis_line(analysis)}")
    return lines


def _analysis_line(a: dict[str, Any]) -> str:
    """The media analysis in one line: loudness, black, cuts, HDR, near-duplicates."""
    parts = []
    if a.get("integrated_lufs") is not None:
        parts.append(f"{a['integrated_lufs']} LUFS (true peak {a.get('true_peak_dbtp')} dBTP)")
    else:
        parts.append("no audio loudness")
    if a.get("video_stream_index") is not None:
        parts.append(
            f"leading black {a.get('leading_black_s')} s, {a.get('scene_cut_count')} cuts, "
            f"{a.get('interlace')}, {a.get('hdr_class')}"
        )
    dupes = a.get("near_duplicates") or []
    if dupes:
        shown = ", ".join(f"{d['object_key']} ({d['score']:.3f})" for d in dupes[:3])
        more = f" and {len(dupes) - 3} more" if len(dupes) > 3 else ""
        parts.append(f"near-duplicate of {shown}{more}")
    return "; ".join(parts)


def _print_human(report: Report) -> None:
    where = f"{report.source}/{report.object_key} (ETag {report.etag})" if report.source else "-"
    run = "none yet"
    if report.run_id:
        status = report.run_status or "not in this Dagster instance"
        if report.run_batch:
            status = f"{status}; a run of several versions: {report.run_batch}"
        run = f"{report.run_id} ({status})"
    lines = [
        f"job:        {report.job}",
        f"state:      {report.state}",
        f"object:     {where}",
        f"run:        {run}",
        f"attempts:   {report.attempts if report.attempts is not None else '-'}",
        f"times:      registered {_fmt_time(report.registered_at)}, "
        f"started {_fmt_time(report.started_at)}, finished {_fmt_time(report.finished_at)}",
    ]
    if report.result is not None:
        lines += _describe_result(report.result)
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
    from edvmp_pipeline.cli.output import terminal_safe

    # Per line, after formatting: every value in them (key, ETag, error, summary, codec
    # names from the file) may come from an upload, and the labels hold no control chars.
    print("\n".join(terminal_safe(line) for line in lines))


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


def _wait(sources: _Sources, job: str, timeout_s: float) -> tuple[Report, bool]:
    """Poll the state store until the job is final; returns the last report and whether the
    timeout ran out. A final job also waits (briefly) for its Dagster run to finish and, when
    FAILED, for its incident: the run writes its last events and the incident a moment after
    the version's own state is final."""
    started = time.monotonic()
    deadline = started + timeout_s
    last_line = None
    final_since: float | None = None
    while True:
        report = _snapshot(sources, job, with_run=False)
        now = time.monotonic()
        line = report.state or "not registered yet"
        if line != last_line:
            print(f"[{now - started:6.1f}s] {line}", file=sys.stderr)
            last_line = line
        if report.state in FINAL:
            final_since = final_since if final_since is not None else now
            report.run_status, report.run_batch = sources.run_status(report.run_id)
            run_done = report.run_status is None or report.run_status in RUN_FINISHED
            complete = run_done and (report.state == SUCCEEDED or report.incident is not None)
            if complete or now - final_since >= INCIDENT_GRACE_S:
                return report, False
        else:
            final_since = None
        if now >= deadline:
            report.run_status, report.run_batch = sources.run_status(report.run_id)
            return report, True
        time.sleep(min(POLL_S, max(0.0, deadline - now)))


def run(args: argparse.Namespace) -> int:
    """Print the job's state; exit 0 found/succeeded, 1 failed, 2 unknown, 4 timed out."""
    from edvmp_pipeline.domain.partition_keys import is_valid_partition_key

    # A job id's slug is NFC (partition_keys): an id pasted through a tool that decomposes
    # accents (macOS file names, some terminals) names the same job.
    job = unicodedata.normalize("NFC", args.job.strip())
    if not is_valid_partition_key(job):
        raise ConfigError(
            f"not a job id: {job!r} (expected a partition key like "
            "clip.mp4~1a2b3c4d~0123456789abcdef, as printed by `edvmp upload`)"
        )
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        raise ConfigError(f"--timeout must be a finite number of seconds > 0, got {args.timeout}")
    if not args.wait:
        from edvmp_pipeline.catalog.opening import catalog_exists
        from edvmp_pipeline.settings import catalog_location, catalog_root, edvmp_home

        root = catalog_root()
        if not catalog_location().startswith("s3://") and not catalog_exists(root):
            # Say where it looked: a typo in EDVMP_HOME reads the same as a fresh upload.
            raise ConfigError(
                f"unknown job: {job} (no catalog at {root} yet, EDVMP_HOME={edvmp_home()}; "
                "a fresh upload appears within seconds once the object sensor sees it: try "
                "--wait)"
            )
    sources = _Sources()
    timed_out = False
    if args.wait:
        report, timed_out = _wait(sources, job, args.timeout)
    else:
        report = _snapshot(sources, job)
    if report.state is None and not timed_out:
        raise ConfigError(
            f"unknown job: {job} (not in the catalog and no Dagster run; a fresh upload "
            "appears within seconds once the object sensor sees it: try --wait)"
        )
    if args.json:
        from edvmp_pipeline.cli.output import json_text

        print(json_text(_jsonable(asdict(report))))
    elif report.state is not None:
        _print_human(report)
    if timed_out:
        print(
            f"edvmp: timed out after {args.timeout:g} s; job is "
            f"{report.state or 'still unknown (never registered)'}",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    return EXIT_FAILED if report.state == FAILED else EXIT_OK
