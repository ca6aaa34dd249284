"""Event-path latency and object-sensor cost on the local S3 stack.

    .venv/bin/python benchmarks/event_latency.py [--n 20] [--interval 5] [--sizes 10000,100000]
        [--skip-latency] [--skip-sensor] [--put-workers 32]

Uses the S3 server named by EDVMP_S3_ENDPOINT_URL/AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
(``eval "$(edvmp stack up)"``), else starts a private one on free ports and stops it at the
end. Everything else (buckets, EDVMP_HOME, Dagster instance) is private and thrown away.

1. Upload → SUCCEEDED. Starts ``dagster dev`` from the repo root (the repo's dagster.yaml,
   sensors on by default, the object sensor's default interval), uploads one warm-up video
   and waits for it, then uploads N distinct small videos **one by one, on average one every
   ``--interval`` seconds** (gaps drawn from 0.5-1.5x, fixed seed; 0 = back to back)
   through a presigned PUT (the code path of ``edvmp upload``). For each, latency runs from
   the end of its PUT to the ``finished_at`` of its SUCCEEDED event in the catalog's ``jobs``
   view, split into stages: detection (→ ``registered_at``, the sensor's tick), start
   (→ ``started_at``: queue, run worker and step process start-up) and processing
   (→ ``finished_at``). ``--keep`` keeps the instance and the dagster dev log.
2. Sensor tick cost. Fills a separate bucket with 10,000 then 100,000 tiny objects (parallel
   ``put_object``), records every one as already catalogued (SUCCEEDED: the steady state
   after the first sweep) plus a few new objects placed first, in the middle and last in
   key order, and evaluates the sensor function through ``build_sensor_context`` tick after
   tick, carrying the cursor like the daemon: with the default settings (20 pages of 1,000
   keys a tick) and with settings that list the whole bucket in one tick. Also one "cold"
   tick (nothing catalogued), where the run-request cap (200 a tick) bounds the work.
   Dagster's sensor evaluation timeout is 60 s by default (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# The dagster dev helper lives with the tests (the e2e test uses it too).
sys.path.insert(0, str(REPO_ROOT))

from edvmp_pipeline.devtools.stack import (  # noqa: E402
    DEFAULT_REGION,
    StackPorts,
    StackSettings,
    make_s3_client,
    stack_down,
    stack_up,
)

NEW_KEYS = ("!first-new.mp4", "m/00050000-new.mp4", "zzzz-last-new.mp4")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); P95 of 20 values is the 19th smallest."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def stack_for_benchmark() -> tuple[StackSettings, Path | None]:
    """The S3 server named by the environment, else a private one on free ports (and the
    folder to pass to :func:`stop_private_stack`)."""
    stack = stack_from_env()
    if stack is not None:
        return stack, None
    home = Path(tempfile.mkdtemp(prefix="edvmp-bench-stack-"))
    stack = stack_up(home, ports=StackPorts.free())
    print(f"started a private S3 stack at {stack.endpoint_url}", file=sys.stderr)
    return stack, home


def stop_private_stack(home: Path | None) -> None:
    """Stop and delete a stack started by :func:`stack_for_benchmark` (None: nothing)."""
    if home is not None:
        stack_down(home, grace_s=0.5)
        shutil.rmtree(home, ignore_errors=True)


def stack_from_env() -> StackSettings | None:
    """The S3 server configured in the environment, if any."""
    endpoint = os.environ.get("EDVMP_S3_ENDPOINT_URL")
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (endpoint and key and secret):
        return None
    region = os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    return StackSettings(endpoint, key, secret, region, "uploads", None, None)


def make_clips(folder: Path, n: int) -> list[Path]:
    """``n`` distinct 1-second clips (same picture, a different comment tag each)."""
    seed = folder / "seed.mp4"
    lavfi = ["-f", "lavfi", "-i"]
    picture = [*lavfi, "testsrc2=size=320x240:rate=25:duration=1"]
    tone = [*lavfi, "sine=frequency=440:sample_rate=48000:duration=1"]
    codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", *picture, *tone, *codecs, "-shortest", str(seed)],
        check=True,
    )
    clips = []
    for i in range(n):
        out = folder / f"clip_{i:03d}.mp4"
        remux = ["-i", str(seed), "-c", "copy", "-metadata", f"comment=bench {i}"]
        subprocess.run(["ffmpeg", "-v", "error", "-y", *remux, str(out)], check=True)
        clips.append(out)
    return clips


# --- 1. upload → SUCCEEDED ---------------------------------------------------------------------


def measure_latency(
    stack: StackSettings, n: int, interval_s: float, keep: bool = False
) -> dict[str, list[float]]:
    """Upload ``n`` clips through ``dagster dev`` and return per-stage latencies (seconds)."""
    from edvmp_pipeline.catalog.store import Catalog
    from edvmp_pipeline.services.uploads import job_id_for, presign_upload, put_file
    from edvmp_pipeline_tests.dagster_dev import prepare_homes, stack_env, start_dagster_dev

    client = make_s3_client(stack, signature_version="s3v4")
    bucket = f"bench-latency-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    work = Path(tempfile.mkdtemp(prefix="edvmp-bench-latency-"))
    home = work / "home"
    prepare_homes(home)
    env = stack_env(home, {**stack.env(), "EDVMP_BUCKET": bucket})
    dev = start_dagster_dev(env, work / "dagster-dev.log")
    catalog = Catalog(home / "catalog")
    try:
        clips = make_clips(work, n + 1)
        print(f"dagster dev answering after {dev.wait_until_ready():.1f} s", file=sys.stderr)

        def upload(path: Path) -> tuple[str, float]:
            key = f"bench/{path.name}"
            presigned = presign_upload(client, bucket, key, content_type="video/mp4")
            etag = put_file(presigned, path)
            return job_id_for(bucket, key, etag), time.time()

        def wait_done(jobs: dict[str, float], timeout_s: float) -> dict[str, tuple]:
            deadline = time.monotonic() + timeout_s
            while True:
                _, rows = catalog.query(
                    "SELECT partition_key, status, registered_at, started_at, finished_at "
                    "FROM jobs WHERE partition_key IN (SELECT unnest(?))",
                    [list(jobs)],
                )
                done = {r[0]: r[1:] for r in rows if r[1] in ("SUCCEEDED", "FAILED")}
                if len(done) == len(jobs):
                    return done
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(done)} of {len(jobs)} done:\n{dev.log_tail()}")
                # Latencies come from the catalog's own timestamps, not from this poll: poll
                # slowly so that the benchmark takes little CPU from what it measures.
                time.sleep(2.0)

        # Warm-up: the first run after start-up also pays for loading the code location.
        warm_job, warm_at = upload(clips[0])
        warm = wait_done({warm_job: warm_at}, 120)[warm_job]
        print(
            f"warm-up upload → {warm[0]} in {warm[3].timestamp() - warm_at:.1f} s", file=sys.stderr
        )

        uploaded: dict[str, float] = {}
        # Gaps drawn from 0.5-1.5 x interval (fixed seed): a fixed gap would phase-lock with
        # the daemon's 5 s sensor loop and measure one detection delay over and over.
        rng = random.Random(7)
        next_at = time.monotonic()
        for clip in clips[1:]:
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            job, at = upload(clip)
            uploaded[job] = at
            next_at += interval_s * rng.uniform(0.5, 1.5)
        results = wait_done(uploaded, 120 + n * 10)
        print(f"{n} uploads catalogued; log: {dev.log_path}", file=sys.stderr)
    finally:
        stop_s, killed = dev.stop()
        print(f"dagster dev stopped in {stop_s:.1f} s (SIGKILLed: {killed})", file=sys.stderr)
        client.delete_bucket(Bucket=bucket)
    failed = [pk for pk, r in results.items() if r[0] != "SUCCEEDED"]
    if failed:
        raise RuntimeError(f"{len(failed)} uploads failed: {failed}")
    stages: dict[str, list[float]] = {
        "upload → registered (sensor)": [],
        "registered → RUNNING (queue, run start)": [],
        "RUNNING → SUCCEEDED (probe, catalog)": [],
        "upload → SUCCEEDED": [],
    }
    for pk, (_, registered, running, finished) in results.items():
        t0 = uploaded[pk]
        stages["upload → registered (sensor)"].append(registered.timestamp() - t0)
        stages["registered → RUNNING (queue, run start)"].append(
            (running - registered).total_seconds()
        )
        stages["RUNNING → SUCCEEDED (probe, catalog)"].append((finished - running).total_seconds())
        stages["upload → SUCCEEDED"].append(finished.timestamp() - t0)
    if keep:
        print(f"kept {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return stages


# --- 2. sensor tick cost -----------------------------------------------------------------------


def fill_bucket(client: Any, bucket: str, start: int, stop: int, workers: int) -> float:
    """Put objects ``start..stop-1`` (tiny bodies); returns objects per second."""
    began = time.monotonic()

    def put(i: int) -> None:
        # 100 "folders" so that keys interleave like a real library, not one flat run.
        client.put_object(Bucket=bucket, Key=f"m/{i % 100:02d}/{i:08d}.mp4", Body=b"v%d" % i)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(put, range(start, stop), chunksize=64):
            pass
    return (stop - start) / (time.monotonic() - began)


def catalogue_everything(client: Any, bucket: str, catalog: Any) -> int:
    """Record every object in the bucket as a SUCCEEDED version (steady state)."""
    from edvmp_pipeline.domain.partition_keys import normalise_etag, partition_key_for
    from edvmp_pipeline.domain.records import ObjectVersion

    source = f"s3://{bucket}"
    pairs = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            etag = normalise_etag(obj["ETag"])
            version = ObjectVersion(source, obj["Key"], etag, obj["Size"], obj["LastModified"])
            pairs.append((partition_key_for(source, obj["Key"], etag), version))
    catalog.register(pairs, registered_by="benchmark")
    keys = [pk for pk, _ in pairs]
    catalog.state.claim(keys, "benchmark")
    catalog.state.mark_succeeded(keys, "benchmark")
    return len(pairs)


def run_sweep(
    instance: Any, settings: Any, catalog_root: Path, store: Any, max_ticks: int
) -> tuple[list[float], int]:
    """Tick from a fresh cursor until one full sweep ends; returns tick times and requests."""
    import dagster as dg

    from edvmp_pipeline.defs.catalog_resource import CatalogResource
    from edvmp_pipeline.defs.sensors.object_sensor import SweepCursor, evaluate_sweep

    catalog_resource = CatalogResource(root=str(catalog_root))
    cursor: str | None = None
    times: list[float] = []
    requested = 0
    for _ in range(max_ticks):
        context = dg.build_sensor_context(instance=instance, cursor=cursor)
        began = time.perf_counter()
        result = evaluate_sweep(context, settings, catalog_resource, store)
        times.append(time.perf_counter() - began)
        requested += len(result.run_requests or [])
        cursor = result.cursor
        if SweepCursor.parse(cursor).sweeps >= 1:
            break
    return times, requested


def measure_sensor(stack: StackSettings, sizes: list[int], workers: int) -> list[dict[str, Any]]:
    """Tick timings over buckets of each size (the bucket grows from one size to the next)."""
    import dagster as dg

    from edvmp_pipeline.adapters.object_store import ObjectStoreResource
    from edvmp_pipeline.catalog.store import Catalog
    from edvmp_pipeline.defs.sensors.object_sensor import PAGE_SIZE, SensorSettings
    from edvmp_pipeline.domain.video_filter import DEFAULT_VIDEO_EXTENSIONS

    # The sensor's client reads credentials from the environment, like in the daemon.
    os.environ.update(
        {k: v for k, v in stack.env().items() if k.startswith("AWS_")}
        | {"AWS_DEFAULT_REGION": stack.region}
    )
    client = make_s3_client(stack, max_pool_connections=workers, retries={"max_attempts": 10})
    bucket = f"bench-sensor-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    store = ObjectStoreResource(endpoint_url=stack.endpoint_url, region=stack.region)
    defaults = SensorSettings(bucket=bucket, extensions=DEFAULT_VIDEO_EXTENSIONS)
    rows: list[dict[str, Any]] = []
    filled = 0
    try:
        for size in sorted(sizes):
            rate = fill_bucket(client, bucket, filled, size, workers)
            print(f"put {size - filled} objects at {rate:.0f}/s", file=sys.stderr)
            filled = size
            whole = SensorSettings(
                bucket=bucket, extensions=DEFAULT_VIDEO_EXTENSIONS, max_pages=size // PAGE_SIZE + 2
            )
            for label, settings in (
                (f"default ({defaults.max_pages} pages a tick)", defaults),
                ("whole bucket in one tick", whole),
            ):
                with tempfile.TemporaryDirectory(prefix="edvmp-bench-sensor-") as tmp:
                    catalog = Catalog(Path(tmp) / "catalog").ensure()
                    catalogue_everything(client, bucket, catalog)
                    # New content under keys that sort first, in the middle and last: new
                    # versions the sweep must find wherever they sort.
                    for key in NEW_KEYS:
                        client.put_object(Bucket=bucket, Key=key, Body=uuid.uuid4().bytes)
                    with dg.instance_for_test() as instance:
                        times, requested = run_sweep(
                            instance, settings, catalog.root, store, max_ticks=1000
                        )
                rows.append(
                    {
                        "objects": size,
                        "scenario": f"catalogued + 3 new, {label}",
                        "ticks": len(times),
                        "mean": statistics.fmean(times),
                        "max": max(times),
                        "sweep": sum(times),
                        "found": f"{requested} of {len(NEW_KEYS)} new",
                    }
                )
            # Cold: nothing catalogued, so the run-request cap (200 a tick) bounds each tick.
            with tempfile.TemporaryDirectory(prefix="edvmp-bench-cold-") as tmp:
                cold_catalog = Path(tmp) / "catalog"
                Catalog(cold_catalog).ensure()
                with dg.instance_for_test() as instance:
                    times, requested = run_sweep(instance, defaults, cold_catalog, store, 1)
                rows.append(
                    {
                        "objects": size,
                        "scenario": f"nothing catalogued, first tick ({defaults.max_runs}-run cap)",
                        "ticks": math.ceil((size + len(NEW_KEYS)) / defaults.max_runs),
                        "mean": times[0],
                        "max": times[0],
                        "sweep": float("nan"),
                        "found": f"{requested} requested",
                    }
                )
    finally:
        delete_bucket(client, bucket)
    return rows


def delete_bucket(client: Any, bucket: str) -> None:
    """SeaweedFS deletes a non-empty bucket in one call; other servers need it emptied."""
    try:
        client.delete_bucket(Bucket=bucket)
    except Exception as exc:  # teardown only
        print(f"could not delete bucket {bucket}: {exc}", file=sys.stderr)


# --- main ---------------------------------------------------------------------------------------


def main() -> int:
    """Run the selected measurements and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="videos to upload (default 20)")
    parser.add_argument(
        "--interval",
        type=float,
        default=5.0,
        help="mean seconds between upload starts (default 5; 0 = back to back)",
    )
    parser.add_argument("--sizes", default="10000,100000", help="bucket sizes for the sensor")
    parser.add_argument("--put-workers", type=int, default=32, help="parallel put_object")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-sensor", action="store_true")
    parser.add_argument(
        "--keep", action="store_true", help="keep the latency run's EDVMP_HOME and dagster log"
    )
    args = parser.parse_args()
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

    stack, private_home = stack_for_benchmark()
    try:
        latency = (
            None if args.skip_latency else measure_latency(stack, args.n, args.interval, args.keep)
        )
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        sensor = None if args.skip_sensor else measure_sensor(stack, sizes, args.put_workers)
    finally:
        stop_private_stack(private_home)

    print(f"\n# edvmp event path, {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores")
    if latency is not None:
        how = f"one every {args.interval:g} s on average" if args.interval > 0 else "back to back"
        print(f"\nupload → SUCCEEDED, {args.n} videos uploaded {how} (seconds)")
        print(f"{'stage':<42} {'P50':>6} {'P95':>6} {'max':>6}")
        for stage, values in latency.items():
            print(
                f"{stage:<42} {percentile(values, 50):6.2f} {percentile(values, 95):6.2f} "
                f"{max(values):6.2f}"
            )
    if sensor is not None:
        print("\nobject sensor, one evaluation (build_sensor_context, real S3 listing)")
        header = f"{'objects':>8}  {'scenario':<50} {'ticks/sweep':>11} {'tick mean':>9}"
        print(header + f" {'tick max':>8} {'sweep':>7}  found")
        for r in sensor:
            sweep = f"{r['sweep']:6.2f}s" if not math.isnan(r["sweep"]) else "      -"
            print(
                f"{r['objects']:>8,}  {r['scenario']:<50} {r['ticks']:>11} {r['mean']:8.2f}s "
                f"{r['max']:7.2f}s {sweep}  {r['found']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
