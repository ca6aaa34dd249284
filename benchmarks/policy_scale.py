"""Compliance cost against the size of the policy: rules × versions → seconds.

    .venv/bin/python benchmarks/policy_scale.py [--rules 10,100,1000] [--versions 100,1000]
        [--dagster-rules 0,10,100] [--repeat 3]

For each (rules, versions) pair, runs what a run's compliance step does, phase by phase, on
canned ``videos`` rows (no ffprobe, no object store, no Dagster): ``load_policy`` of a
generated policy of that many rules, ``evaluate_rows`` (every rule on every row),
``write_checks`` (the ``checks`` Parquet file, one row per (version, rule)),
``record_verdicts`` and ``violation_counts`` (the state store's verdict index, on a fresh
SQLite catalog whose versions are registered). The table reports the median of ``--repeat``
tries of each phase; the catalog is new for each try.

``--dagster-rules`` also measures what the compliance checks cost Dagster per run, which
does not depend on the number of versions: an in-process run, on a SQLite instance in a
temporary DAGSTER_HOME, of a one-step asset with one asset check per rule (``check_spec``)
that yields one ``check_result`` per rule. Each check costs the run an "evaluation planned"
event when the run is created, a step output and the evaluation itself: event-log writes
that are paid on every run, which is why the policy is limited to ``MAX_RULES`` rules.
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


def dagster_run_seconds(n_rules: int) -> float:
    """Wall seconds of one in-process Dagster run whose step reports ``n_rules`` checks."""
    import dagster as dg

    from edvmp_pipeline.defs.compliance import check_result, check_spec
    from edvmp_pipeline.defs.video_metadata import METADATA_KEY

    policy = load_policy(policy_text(n_rules), max_rules=None)

    @dg.multi_asset(
        specs=[dg.AssetSpec(METADATA_KEY)],
        check_specs=[check_spec(rule) for rule in policy.rules],
    )
    def step() -> Any:
        yield dg.MaterializeResult(asset_key=METADATA_KEY)
        for rule in policy.rules:
            yield check_result(rule, None, 0, [])

    with (
        tempfile.TemporaryDirectory(prefix="edvmp-bench-dagster-") as tmp,
        dg.DagsterInstance.local_temp(tmp) as instance,
    ):
        job = dg.define_asset_job("bench").resolve(
            asset_graph=dg.Definitions(assets=[step]).resolve_asset_graph()
        )
        t0 = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
        seconds = time.perf_counter() - t0
        assert result.success
    return seconds


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
        default=[],
        help="also time one Dagster run per count of checks (e.g. 0,10,100,500)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
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
        warnings.simplefilter("ignore")
        print("\n# Dagster, one in-process run on a SQLite instance (any number of versions)")
        print(f"{'checks':>6} {'run_s':>8} {'ms/check':>9}")
        base = None
        for n_rules in args.dagster_rules:
            seconds = dagster_run_seconds(n_rules)
            if base is None and n_rules == 0:
                base = seconds
            per = (seconds - (base or 0.0)) / n_rules * 1000 if n_rules else 0.0
            print(f"{n_rules:>6} {seconds:>8.2f} {per:>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
