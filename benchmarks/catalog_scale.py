"""Catalog cost against its history: does a lookup, a status, a count or a tick grow with it?

    .venv/bin/python benchmarks/catalog_scale.py [--versions 100000] [--home DIR]
        [--put-workers 32] [--skip-sensor] [--history-batch 1]

Fills a catalog with N object versions the way the event path does, one version at a time:
each object is uploaded to an S3 bucket (SeaweedFS: the server named by
EDVMP_S3_ENDPOINT_URL/AWS_* keys, else a private one on free ports), registered as the object
sensor registers it (``known_states`` + ``plan_requests`` + ``register``), then processed as
its own run by the code the steps of a sensor-triggered run execute: ``process_batch``
(claim → RUNNING, HEAD + ranged GET on S3, results, SUCCEEDED), ``summarise_and_land``
(offline summarizer), ``check_and_land`` (the packaged policy) and the run's end
``failed_in_run``. Only the ffprobe call is replaced, by the records of real sample videos
probed once with the real ffprobe. Dagster's own per-run cost (~0.2 s in-process, seconds
for a launched run) is left out: it does not depend on the catalog.

Then measures, on the filled home: the per-version cost of the first and the last 1,000
versions, one job-state lookup, ``edvmp status JOB`` and ``edvmp query "SELECT count(*) FROM
jobs"`` as a user runs them (new processes), a sensor tick over the bucket with everything
catalogued (``build_sensor_context``, default settings), and the catalog's file count.
``--home DIR`` keeps the catalog there (and reuses nothing: DIR must be new or empty).

Every version its own run costs ~70 ms here (four fsynced Parquet files, six SQLite commits,
two S3 round trips), so 100,000 versions take about two hours. ``--history-batch 1000``
processes the versions between the two measured windows 1,000 a run (a backfill's code
path: the same tables, state and compaction, in fewer files), which fills 100,000 in
minutes; the first and last 1,000 are still one run each.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from event_latency import (  # noqa: E402
    fill_bucket,
    run_sweep,
    stack_for_benchmark,
    stop_private_stack,
)

from edvmp_pipeline.devtools.stack import make_s3_client  # noqa: E402

EDVMP = REPO_ROOT / ".venv" / "bin" / "edvmp"
WINDOW = 1000
TARGETS = {
    "lookup_ms": 20.0,
    "status_s": 1.0,
    "count_s": 2.0,
    "ratio": 1.2,
    "files": 1000,
    "tick_s": 10.0,
}


def object_key(i: int) -> str:
    """The key ``fill_bucket`` gives object ``i``."""
    return f"m/{i % 100:02d}/{i:08d}.mp4"


class CannedProber:
    """Stands in for ffprobe only: returns records real ffprobe produced for sample videos."""

    def __init__(self, records: list[Any]) -> None:
        self.records = records

    def probe(self, target: str, *, size_bytes: int, leading_bytes: bytes = b"") -> Any:
        digest = hashlib.blake2b(target.split("?")[0].encode(), digest_size=4).digest()
        return self.records[int.from_bytes(digest, "big") % len(self.records)]


def sample_records() -> list[Any]:
    """Probe the sample library once with the real ffprobe."""
    from edvmp_pipeline.adapters.prober import FfprobeProber
    from edvmp_pipeline.devtools.sample_media import generate_samples

    with tempfile.TemporaryDirectory(prefix="edvmp-bench-samples-") as tmp:
        folder = Path(tmp)
        generate_samples(folder, broken=False)
        prober = FfprobeProber(timeout_s=60)
        records = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            records.append(prober.probe(str(path), size_bytes=path.stat().st_size))
    return records


def fill(
    catalog: Any,
    store: Any,
    prober: CannedProber,
    bucket: str,
    n: int,
    *,
    history_batch: int = 1,
    window: int = 1000,
    start: int = 0,
) -> list[float]:
    """Register and process versions 0..n-1; returns seconds per version of the first and
    the last ``window`` versions (each processed as its own run).

    With ``history_batch`` > 1, the versions between the two windows are registered and
    processed ``history_batch`` at a time (the code of a backfill or ``edvmp ingest`` run):
    the same writes, fewer files to begin with, much faster to fill.
    """
    from edvmp_pipeline.adapters.summarizers import OfflineSummarizer
    from edvmp_pipeline.defs.sensors.object_sensor import SENSOR_NAME
    from edvmp_pipeline.defs.sensors.run_requests import known_states, plan_requests, register
    from edvmp_pipeline.domain.policy import load_default_policy
    from edvmp_pipeline.domain.records import ObjectVersion
    from edvmp_pipeline.services.compliance import check_and_land
    from edvmp_pipeline.services.processing import finish_run, process_batch
    from edvmp_pipeline.services.summaries import summarise_and_land

    rules = load_default_policy().rules
    summarizer = OfflineSummarizer()
    source = f"s3://{bucket}"

    def versions(lo: int, hi: int) -> list[Any]:
        return [
            ObjectVersion(
                source, object_key(i), hashlib.md5(b"v%d" % i).hexdigest(), len(b"v%d" % i)
            )
            for i in range(lo, hi)
        ]

    def one_run(batch: list[Any], workers: int) -> None:
        # The sensor's tick for these objects, then the run's three steps and its gate.
        requests, _ = plan_requests(
            batch, known_states(catalog, batch), trigger="s3-sensor", limit=len(batch)
        )
        register(catalog, requests, registered_by=SENSOR_NAME)
        keys = [rr.partition_key for rr in requests.run_requests]
        run_id = str(uuid.uuid4())
        outcome = process_batch(
            keys, catalog=catalog, store=store, prober=prober, run_id=run_id, workers=workers
        )
        assert not outcome.failed, outcome.failed[:3]
        summarise_and_land(catalog, summarizer, keys, run_id=run_id, workers=workers)
        check_and_land(catalog, rules, keys, run_id=run_id)
        finish_run(catalog, run_id, failed=set(), has_rules=bool(rules))

    costs: list[float] = []
    began = time.monotonic()
    middle = range(window, n - window) if history_batch > 1 else range(0)
    i = start
    while i < n:
        if i in middle:
            hi = min(i + history_batch, n - window)
            one_run(versions(i, hi), workers=4)
            i = hi
        else:
            t0 = time.perf_counter()
            one_run(versions(i, i + 1), workers=1)
            costs.append(time.perf_counter() - t0)
            i += 1
        if i % 5000 < (history_batch if i in middle else 1) and i > start:
            rate = i / (time.monotonic() - began)
            print(f"  {i:,} versions, {rate:.0f}/s, {catalog.file_count()} files", file=sys.stderr)
    return costs


def compare_on_top(
    history: Path, store: Any, prober: CannedProber, bucket: str, n: int, offset: int
) -> None:
    """Per-version cost on an empty home against a copy of ``history`` (a kept --home), in
    alternating blocks of 100 versions so that the machine's drift hits both alike."""
    from edvmp_pipeline.catalog.store import Catalog

    with tempfile.TemporaryDirectory(prefix="edvmp-bench-compare-") as tmp:
        empty = Catalog(Path(tmp) / "empty").ensure()
        full_root = Path(tmp) / "full"
        shutil.copytree(history / "catalog", full_root)
        full = Catalog(full_root).ensure()
        rows = full.query("SELECT count(*) FROM jobs")[1][0][0]
        costs: dict[str, list[float]] = {"empty": [], "full": []}
        for block in range(0, n, 100):
            for name, catalog in (("empty", empty), ("full", full)):
                lo = offset + block + (0 if name == "empty" else n)
                costs[name] += fill(catalog, store, prober, bucket, lo + min(100, n - block),
                                    start=lo)  # fmt: skip
    e, f = (statistics.fmean(costs[k]) * 1000 for k in ("empty", "full"))
    print(f"\n# per-version cost, {n:,} versions each its own run, {datetime.now(UTC):%Y-%m-%d}")
    print(f"{'home':<42} {'ms/version':>10}")
    print(f"{'empty':<42} {e:>10.2f}")
    print(f"{f'holding {rows:,} versions':<42} {f:>10.2f}   {f / e:.2f}x empty (≤ 1.2x)")


def timed_cli(env: dict[str, str], *args: str, repeat: int = 3) -> tuple[float, str]:
    """Median wall time of a CLI command in a new process, and its last output."""
    times, out = [], ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = subprocess.run([str(EDVMP), *args], env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"edvmp {' '.join(args)}: {done.stderr}")
        out = done.stdout
    return statistics.median(times), out


def main() -> int:
    """Fill, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--home", type=Path, default=None, help="keep the catalog here")
    parser.add_argument("--put-workers", type=int, default=32)
    parser.add_argument("--skip-sensor", action="store_true")
    parser.add_argument(
        "--on-top-of",
        type=Path,
        default=None,
        help="a home kept by --home: measure --versions one-run versions on it against an "
        "empty home, interleaved (nothing else is measured)",
    )
    parser.add_argument(
        "--history-batch",
        type=int,
        default=1,
        help="process the versions between the first and last 1,000 this many per run "
        "(default 1: every version its own run, as the event path does)",
    )
    args = parser.parse_args()
    n = args.versions
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

    stack, private_stack = stack_for_benchmark()
    home = args.home or Path(tempfile.mkdtemp(prefix="edvmp-bench-scale-"))
    home.mkdir(parents=True, exist_ok=True)
    if any(home.iterdir()):
        parser.error(f"--home {home} is not empty")
    os.environ.update(
        {k: v for k, v in stack.env().items() if k.startswith("AWS_")}
        | {"AWS_DEFAULT_REGION": stack.region, "EDVMP_HOME": str(home)}
    )
    from edvmp_pipeline.adapters.object_store import ObjectStoreResource
    from edvmp_pipeline.catalog.store import Catalog

    client = make_s3_client(stack, max_pool_connections=args.put_workers)
    bucket = f"bench-scale-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    try:
        store = ObjectStoreResource(endpoint_url=stack.endpoint_url, region=stack.region)
        if args.on_top_of is not None:
            # Keys of the history start at 0; these start far above, so they are all new.
            offset = 10_000_000
            fill_bucket(client, bucket, offset, offset + 2 * n, args.put_workers)
            compare_on_top(args.on_top_of, store, CannedProber(sample_records()), bucket, n, offset)
            return 0
        rate = fill_bucket(client, bucket, 0, n, args.put_workers)
        print(f"put {n:,} objects at {rate:.0f}/s", file=sys.stderr)
        catalog = Catalog(home / "catalog").ensure()
        costs = fill(
            catalog,
            store,
            CannedProber(sample_records()),
            bucket,
            n,
            history_batch=args.history_batch,
            window=min(WINDOW, n // 2) or 1,
        )

        keys = random.Random(7).sample(range(n), min(200, n))
        from edvmp_pipeline.domain.partition_keys import partition_key_for

        pks = [
            partition_key_for(f"s3://{bucket}", object_key(i), hashlib.md5(b"v%d" % i).hexdigest())
            for i in keys
        ]
        t0 = time.perf_counter()
        for pk in pks:
            assert catalog.job(pk) is not None
        lookup_ms = (time.perf_counter() - t0) / len(pks) * 1000
        env = {**os.environ, "EDVMP_CATALOG": str(catalog.root)}
        status_s, _ = timed_cli(env, "status", pks[0])
        count_s, count_out = timed_cli(env, "query", "SELECT count(*) AS n FROM jobs")
        tick_mean = tick_max = float("nan")
        ticks = 0
        if not args.skip_sensor:
            import dagster as dg

            from edvmp_pipeline.defs.sensors.object_sensor import SensorSettings
            from edvmp_pipeline.domain.video_filter import DEFAULT_VIDEO_EXTENSIONS

            settings = SensorSettings(bucket=bucket, extensions=DEFAULT_VIDEO_EXTENSIONS)
            with dg.instance_for_test() as instance:
                times, requested = run_sweep(instance, settings, catalog.root, store, 1000)
            assert requested == 0, f"{requested} runs requested for catalogued objects"
            tick_mean, tick_max, ticks = statistics.fmean(times), max(times), len(times)
        files = catalog.file_count()
    finally:
        try:
            client.delete_bucket(Bucket=bucket)
        except Exception as exc:  # teardown only
            print(f"could not delete bucket {bucket}: {exc}", file=sys.stderr)
        stop_private_stack(private_stack)
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)

    window = min(WINDOW, n // 2) or 1
    first = statistics.fmean(costs[:window]) * 1000
    last = statistics.fmean(costs[-window:]) * 1000
    rows = [
        (f"per-version cost, first {window:,}", f"{first:.2f} ms", ""),
        (f"per-version cost, last {window:,}", f"{last:.2f} ms",
         f"{last / first:.2f}x first (≤ {TARGETS['ratio']}x)"),
        ("one job-state lookup", f"{lookup_ms:.2f} ms", f"≤ {TARGETS['lookup_ms']:g} ms"),
        ("edvmp status JOB (new process)", f"{status_s:.2f} s", f"≤ {TARGETS['status_s']:g} s"),
        ("edvmp query 'SELECT count(*) FROM jobs'", f"{count_s:.2f} s",
         f"≤ {TARGETS['count_s']:g} s; answered {count_out.split()[-3] if count_out else '?'}"),
        (f"sensor tick, {n:,} objects catalogued", f"{tick_mean:.2f} s mean, {tick_max:.2f} max",
         f"{ticks} ticks a sweep; ≤ {TARGETS['tick_s']:g} s"),
        ("catalog data files", f"{files}", f"≤ {TARGETS['files']}"),
    ]  # fmt: skip
    how = (
        "every version its own run"
        if args.history_batch <= 1
        else f"first and last {window:,} each its own run, the rest {args.history_batch:,} a run"
    )
    print(
        f"\n# catalog at {n:,} versions ({how}), {datetime.now(UTC):%Y-%m-%d}, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'what':<42} {'measured':<24} target / note")
    for what, value, note in rows:
        print(f"{what:<42} {value:<24} {note}")
    if args.home is not None:
        print(f"\nhome kept at {home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
