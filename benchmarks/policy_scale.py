"""Compliance cost against the size of the policy: rules × versions → seconds.

    .venv/bin/python benchmarks/policy_scale.py [--rules 10,100,1000] [--versions 100,1000]
        [--dagster-rules 0,10,50,60,1000,5000] [--repeat 3]

For each (rules, versions) pair, runs what a run's compliance step does, phase by phase, on
canned ``videos`` rows (no ffprobe, no object store, no Dagster): ``load_policy`` of a
generated policy of that many rules, ``evaluate_rows`` (every rule on every row),
``write_checks`` (the ``checks`` Parquet file, one row per (version, rule)),
``record_verdicts`` and ``violation_counts`` (the state store's verdict index, on a fresh
SQLite catalog whose versions are registered). The table reports the median of ``--repeat``
tries of each phase; the catalog is new for each try. This is what bounds ``MAX_RULES``.

``--dagster-rules`` also measures what the compliance checks cost Dagster per run: for each
policy size, a fresh process loads the code location with that policy (``EDVMP_POLICY``) and
ingests the five good videos of the sample library (made by ffmpeg) in one real in-process
run of the pipeline on a SQLite instance in a temporary ``EDVMP_HOME``. Each asset check costs
the run an "evaluation planned" event, a step output and the evaluation itself, whatever the
number of versions; up to ``GROUPING_THRESHOLD`` rules there is one check per rule, above it
one per severity, so the run's cost stops growing with the policy. ``run_s`` is the Dagster
run's start to end (probing, evaluating, landing and the event log), ``events`` its event-log
records, ``extra_s`` the run time over that of the 0-rule run (when measured).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from edvmp_pipeline.catalog.store import Catalog  # noqa: E402
from edvmp_pipeline.domain.policy import Policy, load_policy  # noqa: E402
from edvmp_pipeline.domain.records import ObjectVersion  # noqa: E402
from edvmp_pipeline.services.compliance import evaluate_rows  # noqa: E402

# What the sample library's five good videos look like in ``videos`` (the fields rules
# read); rows cycle through them with durations and sizes varied per row.
CANNED = (
    {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "video_codec": "h264", "audio_codec": "aac",
     "width": 1920, "height": 1080, "fps": 29.97, "rotation": 0, "pix_fmt": "yuv420p",
     "n_video_streams": 1, "n_audio_streams": 1, "n_subtitle_streams": 0, "probe_score": 100,
     "audio_channels": 2, "sample_rate_hz": 48000, "bit_rate": 4_000_000},
    {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "video_codec": "hevc", "audio_codec": "aac",
     "width": 1280, "height": 720, "fps": 59.94, "rotation": 0, "pix_fmt": "yuv420p10le",
     "n_video_streams": 1, "n_audio_streams": 1, "n_subtitle_streams": 0, "probe_score": 100,
     "audio_channels": 2, "sample_rate_hz": 44100, "bit_rate": 2_500_000},
    {"format_name": "matroska,webm", "video_codec": "vp9", "audio_codec": "opus",
     "width": 320, "height": 180, "fps": 25.0, "rotation": 0, "pix_fmt": "yuv420p",
     "n_video_streams": 1, "n_audio_streams": 1, "n_subtitle_streams": 0, "probe_score": 100,
     "audio_channels": 2, "sample_rate_hz": 48000, "bit_rate": None},
    {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "video_codec": "h264", "audio_codec": "aac",
     "width": 1080, "height": 1920, "fps": 30.0, "rotation": 90, "pix_fmt": "yuv420p",
     "n_video_streams": 1, "n_audio_streams": 1, "n_subtitle_streams": 0, "probe_score": 100,
     "audio_channels": 1, "sample_rate_hz": 48000, "bit_rate": 6_000_000},
    {"format_name": "matroska,webm", "video_codec": "h264", "audio_codec": None,
     "width": 1280, "height": 720, "fps": 15.0, "rotation": 0, "pix_fmt": "yuv420p",
     "n_video_streams": 1, "n_audio_streams": 0, "n_subtitle_streams": 0, "probe_score": 100,
     "audio_channels": None, "sample_rate_hz": None, "bit_rate": 800_000},
)  # fmt: skip

# One rule per template, cycled: every condition and both kinds of field, each with a
# threshold that some canned rows fail, so the verdict index has rows to write.
RULE_TEMPLATES = (
    "{{id: r{i}, field: duration_s, max: {t}, severity: error}}",
    "{{id: r{i}, field: height, min: 240, severity: warn}}",
    "{{id: r{i}, field: video_codec, in: [h264, hevc, av1], severity: warn}}",
    "{{id: r{i}, field: audio_codec, not_in: [mp2, pcm_s16le], severity: warn}}",
    "{{id: r{i}, field: rotation, equals: 0, severity: warn}}",
    "{{id: r{i}, field: n_audio_streams, min: 1, severity: warn}}",
    "{{id: r{i}, field: size_bytes, max: {s}, severity: error}}",
    "{{id: r{i}, field: fps, max: 50, severity: warn}}",
)


def policy_text(n_rules: int) -> str:
    """A policy of ``n_rules`` rules cycling through ``RULE_TEMPLATES``."""
    lines = ["rules:" if n_rules else "rules: []"]
    for i in range(n_rules):
        template = RULE_TEMPLATES[i % len(RULE_TEMPLATES)]
        lines.append("  - " + template.format(i=i, t=60 + i % 600, s=10_000_000 + i * 1000))
    return "\n".join(lines) + "\n"


def canned_rows(n: int) -> list[dict[str, Any]]:
    """``n`` rows shaped as ``Catalog.video_rows`` returns them."""
    rows = []
    for i in range(n):
        pk = f"bench/{i:07d}.mp4@{i:08x}"
        rows.append(
            {
                **CANNED[i % len(CANNED)],
                "partition_key": pk,
                "object_key": f"bench/{i:07d}.mp4",
                "etag": f"{i:08x}",
                "source": "s3://bench",
                "duration_s": 5.0 + (i * 7919) % 900,
                "size_bytes": 1_000_000 + (i * 104_729) % 20_000_000,
                "format_long_name": "QuickTime / MOV",
            }
        )
    return rows


def fresh_catalog(root: Path, rows: list[dict[str, Any]]) -> Catalog:
    """A new catalog whose state store has every row's version registered."""
    catalog = Catalog(root).ensure()
    when = datetime(2026, 1, 1, tzinfo=UTC)
    catalog.register(
        [
            (r["partition_key"], ObjectVersion("s3://bench", r["object_key"], r["etag"], 1, when))
            for r in rows
        ],
        "bench",
    )
    return catalog


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Wall seconds of one call, and its result."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def measure(n_rules: int, n_versions: int, repeat: int) -> dict[str, float]:
    """Median seconds of each phase for one (rules, versions) pair."""
    text = policy_text(n_rules)
    rows = canned_rows(n_versions)
    pks = [r["partition_key"] for r in rows]
    phases: dict[str, list[float]] = {}
    for attempt in range(repeat):
        with tempfile.TemporaryDirectory(prefix="edvmp-bench-policy-") as tmp:
            catalog = fresh_catalog(Path(tmp) / "catalog", rows)
            # No limit: this measures evaluation past MAX_RULES too.
            load_s, policy = timed(load_policy, text, max_rules=None)
            assert isinstance(policy, Policy) and len(policy.rules) == n_rules
            eval_s, (check_rows, outcomes) = timed(evaluate_rows, policy.rules, rows)
            assert len(check_rows) == n_rules * n_versions
            land_s, _ = timed(
                catalog.write_checks, check_rows, run_id=f"bench{attempt}", complete=pks
            )
            ids = [o.rule.id for o in outcomes]
            failing = {o.rule.id: o.failing_partitions for o in outcomes}
            verdicts_s, _ = timed(catalog.state.record_verdicts, pks, ids, failing)
            counts_s, counts = timed(catalog.state.violation_counts, ids)
            assert sum(n for n, _ in counts.values()) == sum(map(len, failing.values()))
        for name, value in (
            ("load", load_s),
            ("evaluate", eval_s),
            ("land", land_s),
            ("verdicts", verdicts_s),
            ("counts", counts_s),
        ):
            phases.setdefault(name, []).append(value)
    medians = {name: statistics.median(values) for name, values in phases.items()}
    medians["total"] = sum(medians.values())
    return medians


def dagster_child(n_rules: int, library: str, home: str) -> int:
    """In a fresh process (the code location reads ``EDVMP_POLICY`` at import): load the
    definitions with a policy of ``n_rules`` rules, ingest ``library`` (one real pipeline run)
    and print its figures as JSON."""
    import json

    policy = Path(home) / "policy.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(policy_text(n_rules))
    os.environ.update({"EDVMP_HOME": home, "EDVMP_POLICY": str(policy)})
    for name in ("DAGSTER_HOME", "EDVMP_CATALOG", "EDVMP_SUMMARIZER"):
        os.environ.pop(name, None)
    warnings.simplefilter("ignore")
    import dagster as dg

    t0 = time.perf_counter()
    from edvmp_pipeline.definitions import video_assets

    load_s = time.perf_counter() - t0
    from edvmp_pipeline.adapters.dagster_instance import get_instance
    from edvmp_pipeline.defs.in_process_runs import ingest_in_process

    t0 = time.perf_counter()
    report = ingest_in_process(library)
    ingest_s = time.perf_counter() - t0
    (run_id,) = report.run_ids
    instance = get_instance()
    record = instance.get_run_record_by_id(run_id)
    assert record is not None and record.start_time and record.end_time
    events = instance.all_logs(run_id)
    evaluations = [
        e
        for e in events
        if e.dagster_event is not None
        and e.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    out = {
        "rules": n_rules,
        "checks": len(video_assets.check_keys),
        "versions": len(report.succeeded),
        "load_s": load_s,
        "run_s": record.end_time - record.start_time,
        "ingest_s": ingest_s,
        "events": len(events),
        "evaluations": len(evaluations),
        "failed_checks": sum(
            1
            for e in evaluations
            if not e.dagster_event.event_specific_data.passed  # type: ignore[union-attr]
        ),
    }
    print(json.dumps(out))
    return 0


def dagster_run(n_rules: int, library: Path, tmp: Path) -> dict[str, Any]:
    """The figures of one real pipeline run with a policy of ``n_rules`` rules."""
    import json
    import subprocess

    done = subprocess.run(
        [sys.executable, __file__, "--dagster-child", str(n_rules), str(library), str(tmp)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{n_rules} rules: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def int_list(text: str) -> list[int]:
    """``"10,100"`` → ``[10, 100]``."""
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> int:
    """Measure every (rules, versions) pair and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int_list, default=[10, 100, 1000])
    parser.add_argument("--versions", type=int_list, default=[100, 1000])
    parser.add_argument(
        "--dagster-rules",
        type=int_list,
        default=[0, 10, 50, 60, 1000, 5000],
        help="time one real pipeline run per policy size ('' to skip)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dagster-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dagster_child:
        n_rules, library, home = args.dagster_child
        return dagster_child(int(n_rules), library, home)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

    print(f"# compliance step, seconds (median of {args.repeat}), {datetime.now(UTC):%Y-%m-%d}")
    names = ("load", "evaluate", "land", "verdicts", "counts", "total")
    print(f"{'rules':>6} {'versions':>8} " + " ".join(f"{n:>9}" for n in names))
    for n_rules in args.rules:
        for n_versions in args.versions:
            m = measure(n_rules, n_versions, args.repeat)
            print(
                f"{n_rules:>6} {n_versions:>8} " + " ".join(f"{m[n]:>9.3f}" for n in names),
                flush=True,
            )

    if args.dagster_rules:
        from edvmp_pipeline.devtools.sample_media import generate_samples
        from edvmp_pipeline.domain.policy import GROUPING_THRESHOLD

        print(
            f"\n# Dagster: one real pipeline run (`edvmp ingest`, in process, SQLite instance) "
            f"of the sample library; checks grouped by severity above {GROUPING_THRESHOLD} "
            "rules"
        )
        print(
            f"{'rules':>6} {'checks':>6} {'versions':>8} {'load_s':>7} {'run_s':>7} "
            f"{'events':>7} {'extra_s':>8}"
        )
        with tempfile.TemporaryDirectory(prefix="edvmp-bench-dagster-") as tmp:
            library = Path(tmp) / "library"
            generate_samples(library, broken=False)
            base: float | None = None
            for i, n_rules in enumerate(args.dagster_rules):
                runs = [
                    dagster_run(n_rules, library, Path(tmp) / f"home{i}-{r}")
                    for r in range(args.repeat)
                ]
                m = {k: statistics.median(r[k] for r in runs) for k in ("load_s", "run_s")}
                one = runs[0]
                assert one["evaluations"] == one["checks"], one
                if base is None and one["checks"] == 0:
                    base = m["run_s"]
                extra = f"{m['run_s'] - base:>8.2f}" if base is not None else f"{'':>8}"
                print(
                    f"{n_rules:>6} {one['checks']:>6} {one['versions']:>8} {m['load_s']:>7.2f} "
                    f"{m['run_s']:>7.2f} {one['events']:>7} {extra}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
