"""Scaling figures for docs/scaling.md: listing vs SQS sensor cost, and the cost of one run.

    .venv/bin/python benchmarks/sensor_scale.py [--sizes 1000,10000] [--dynamodb-sizes 200]
        [--messages 1000] [--event-runs 8] [--batch 100] [--only listing,sqs,runs]

Starts a private SeaweedFS on free ports (``edvmp_pipeline.devtools.stack``) and, for the
DynamoDB variants, moto's standalone server on a free port (HTTP, like the tests); both are
stopped at the end. Everything else (buckets, homes, Dagster instances) is private.

1. ``listing``: for each bucket size N, puts N tiny ``.mp4`` objects, then times (a) the bare
   listing (``list_objects_v2``, 1,000 keys a page, what one sweep sends to S3) and (b) the
   object sensor's own function ``evaluate_sweep`` through ``build_sensor_context``, with every
   object already catalogued (the steady state) and settings that list the whole bucket in one
   tick, once with SQLite state and (``--dynamodb-sizes``) once with DynamoDB state.
2. ``sqs``: the SQS sensor's function ``evaluate_queue`` over M EventBridge "Object Created"
   messages on an **in-process moto SQS** (no SQS server exists here), ticking with the
   cursor like the daemon until the queue is drained; ms per message and API calls. moto
   answers in-process, so its per-call latency is far below real SQS (a relative figure).
3. ``runs``: the cost of one run, in a fresh Python process as on a Fargate task: K
   event-style runs (one version each: the object sensor's tick in this process, then each
   run request executed by ``ingest_videos.execute_in_process`` in a new process on the same
   persistent SQLite Dagster instance) and one batch ``edvmp ingest s3://…`` of B versions.
   Wall time, the child's CPU (user+sys, ffprobe included) and peak RSS from ``wait4``, and
   every AWS API call the child makes (botocore ``_make_api_call`` counted, with DynamoDB
   request units estimated from item sizes). Two configurations: local (SQLite state,
   Parquet folder) and AWS-like (DynamoDB state on moto server, Parquet lake on SeaweedFS).
   Also counts ffprobe's own HTTP range requests on a presigned GET (``-v debug``).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import resource
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

# --- AWS call counting (installed in this process and in the children) ------------------------

CALLS: collections.Counter[str] = collections.Counter()
UNITS: collections.Counter[str] = collections.Counter()


def _item_kb(item: Any) -> float:
    """Rough DynamoDB item size: its low-level JSON, in KB."""
    return len(json.dumps(item, default=str)) / 1024


def _ddb_units(op: str, params: dict[str, Any], answer: dict[str, Any]) -> None:
    """Estimated on-demand request units (table only; GSI writes are extra, see the doc)."""
    if op in ("PutItem", "UpdateItem", "DeleteItem"):
        UNITS["WRU"] += max(1, math.ceil(_item_kb(params.get("Item", params.get("Key"))) or 1))
    elif op == "TransactWriteItems":
        UNITS["WRU"] += 2 * len(params.get("TransactItems", []))
    elif op == "BatchWriteItem":
        UNITS["WRU"] += sum(len(v) for v in params.get("RequestItems", {}).values())
    elif op == "GetItem":
        UNITS["RRU"] += 1.0 if params.get("ConsistentRead") else 0.5
    elif op == "BatchGetItem":
        for table in params.get("RequestItems", {}).values():
            per_key = 1.0 if table.get("ConsistentRead") else 0.5
            UNITS["RRU"] += len(table.get("Keys", [])) * per_key
    elif op == "TransactGetItems":
        UNITS["RRU"] += 2 * len(params.get("TransactItems", []))
    elif op in ("Query", "Scan"):
        kb = sum(_item_kb(i) for i in answer.get("Items", []))
        UNITS["RRU"] += max(1, math.ceil(kb / 4)) * (1.0 if params.get("ConsistentRead") else 0.5)


def install_counter() -> None:
    """Count every botocore API call of this process by service and operation."""
    import botocore.client

    original = botocore.client.BaseClient._make_api_call

    def counted(self: Any, op: str, params: dict[str, Any]) -> Any:
        service = self.meta.service_model.service_name
        CALLS[f"{service}.{op}"] += 1
        answer = original(self, op, params)
        if service == "dynamodb":
            _ddb_units(op, params, answer if isinstance(answer, dict) else {})
        return answer

    botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]


def counts_snapshot() -> dict[str, Any]:
    return {"calls": dict(CALLS), "units": dict(UNITS)}


# --- child modes -------------------------------------------------------------------------------


def child_run(pk: str, tags_json: str) -> None:
    """Execute one sensor run request in this (new) process, as a launched run would."""
    install_counter()
    t0 = time.perf_counter()
    import dagster as dg

    from edvmp_pipeline.definitions import build_resources, defs
    from edvmp_pipeline.defs.jobs import INGEST_JOB

    t1 = time.perf_counter()
    result = defs.resolve_job_def(INGEST_JOB).execute_in_process(
        instance=dg.DagsterInstance.get(),
        partition_key=pk,
        tags=json.loads(tags_json),
        resources=build_resources(),
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        raise_on_error=False,
    )
    t2 = time.perf_counter()
    print(json.dumps({"ok": result.success, "import_s": t1 - t0, "run_s": t2 - t1,
                      **counts_snapshot()}))  # fmt: skip


def child_ingest(source: str) -> None:
    """``edvmp ingest SOURCE`` in this process, with the AWS calls counted."""
    install_counter()
    from edvmp_pipeline.cli import main

    code = main(["ingest", source])
    print(json.dumps({"ok": code == 0, **counts_snapshot()}))


def timed_child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``sensor_scale.py <args>`` in a new process; wall, CPU and peak RSS from wait4."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {args[:2]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    data = json.loads(lines[-1])
    if not data.get("ok"):
        raise RuntimeError(f"child {args[:2]} reported failure: {err.decode()[-2000:]}")
    return {**data, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024}  # fmt: skip


# --- servers -----------------------------------------------------------------------------------


def start_moto_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """moto's standalone server on a free port (DynamoDB over HTTP, as in the tests)."""
    import httpx

    from edvmp_pipeline_tests.dagster_dev import free_port
    from edvmp_pipeline_tests.dynamodb_server import moto_server_binary

    port = free_port()
    log = (folder / "moto_server.log").open("wb")
    proc = subprocess.Popen(
        [moto_server_binary(), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/moto-api/", timeout=1)
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)


def base_env(stack: Any, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDVMP_", "DAGSTER_"))}
    env.update(stack.env())
    env.update({"AWS_DEFAULT_REGION": stack.region, "EDVMP_HOME": str(home),
                "DAGSTER_HOME": str(home / "dagster"), "DAGSTER_DISABLE_TELEMETRY": "1",
                "EDVMP_CATALOG": str(home / "catalog"), "EDVMP_STATE": "sqlite"})  # fmt: skip
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster" / "dagster.yaml")
    return env


def use_env(env: dict[str, str]) -> None:
    for k in [k for k in os.environ if k.startswith(("EDVMP_", "DAGSTER_"))]:
        del os.environ[k]
    os.environ.update(env)


# --- 1. listing sensor -------------------------------------------------------------------------


def measure_listing(
    stack: Any, sizes: list[int], ddb_sizes: list[int], ddb_url: str | None, workers: int
) -> list[tuple]:
    import dagster as dg
    from event_latency import catalogue_everything, fill_bucket, run_sweep

    from edvmp_pipeline.adapters.object_store import ObjectStoreResource
    from edvmp_pipeline.catalog.store import Catalog
    from edvmp_pipeline.defs.sensors.object_sensor import PAGE_SIZE, SensorSettings
    from edvmp_pipeline.devtools.stack import make_s3_client
    from edvmp_pipeline.domain.video_filter import DEFAULT_VIDEO_EXTENSIONS

    client = make_s3_client(stack, max_pool_connections=workers, retries={"max_attempts": 10})
    bucket = f"bench-list-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    store = ObjectStoreResource(endpoint_url=stack.endpoint_url, region=stack.region)
    rows: list[tuple] = []
    filled = 0
    for size in sorted(sizes):
        rate = fill_bucket(client, bucket, filled, size, workers)
        print(f"put {size - filled} objects at {rate:.0f}/s", file=sys.stderr)
        filled = size
        raw = []
        for _ in range(3):
            t0 = time.perf_counter()
            pages = 0
            for _page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, PaginationConfig={"PageSize": PAGE_SIZE}
            ):
                pages += 1
            raw.append(time.perf_counter() - t0)
        rows.append((size, "bare listing (list_objects_v2)", pages, statistics.median(raw),
                     f"{pages} LIST"))  # fmt: skip
        settings = SensorSettings(
            bucket=bucket, extensions=DEFAULT_VIDEO_EXTENSIONS, max_pages=size // PAGE_SIZE + 2
        )
        for state in ("sqlite", "dynamodb"):
            if state == "dynamodb" and (ddb_url is None or size not in ddb_sizes):
                continue
            with tempfile.TemporaryDirectory(prefix="edvmp-bench-list-") as tmp:
                env = base_env(stack, Path(tmp))
                if state == "dynamodb":
                    prefix = f"l{uuid.uuid4().hex[:6]}-"
                    env.update({"EDVMP_STATE": "dynamodb", "EDVMP_DYNAMODB_ENDPOINT_URL": ddb_url,
                                "EDVMP_DYNAMODB_TABLE_PREFIX": prefix})  # fmt: skip
                use_env(env)
                catalog = Catalog(Path(tmp) / "catalog").ensure()
                t0 = time.perf_counter()
                catalogue_everything(client, bucket, catalog)
                print(f"catalogued {size} ({state}) in {time.perf_counter() - t0:.1f}s",
                      file=sys.stderr)  # fmt: skip
                ticks = []
                for _ in range(3):
                    CALLS.clear()
                    with dg.instance_for_test() as instance:
                        times, requested = run_sweep(instance, settings, catalog.root, store, 5)
                    assert requested == 0 and len(times) == 1, (requested, times)
                    ticks.append(times[0])
                calls = ", ".join(f"{v} {k.split('.')[1]}" for k, v in sorted(CALLS.items()))
                rows.append((size, f"evaluate_sweep, all catalogued, {state} state", 1,
                             statistics.median(ticks), calls))  # fmt: skip
    client.delete_bucket(Bucket=bucket)
    return rows


# --- 2. SQS sensor -----------------------------------------------------------------------------


def measure_sqs(stack: Any, messages: int, max_messages: int) -> list[tuple]:
    import hashlib

    import boto3
    import dagster as dg
    from moto import mock_aws

    from edvmp_pipeline.defs.catalog_resource import CatalogResource
    from edvmp_pipeline.defs.sensors.sqs_sensor import SqsSettings, evaluate_queue
    from edvmp_pipeline_tests.test_s3_events import eventbridge_created

    rows = []
    with tempfile.TemporaryDirectory(prefix="edvmp-bench-sqs-") as tmp, mock_aws():
        use_env(base_env(stack, Path(tmp)))
        os.environ.update({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="edvmp-events")["QueueUrl"]
        for start in range(0, messages, 10):
            sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "MessageBody": eventbridge_created(
                    f"incoming/{i % 100:02d}/{i:07d}.mp4", bucket="uploads",
                    etag=hashlib.md5(b"%d" % i).hexdigest(), size=1000 + i)}
                for i in range(start, min(start + 10, messages))])  # fmt: skip
        settings = SqsSettings(queue_url=url, max_messages=max_messages, wait_time_s=0)
        resource_ = CatalogResource(root=str(Path(tmp) / "catalog"))
        resource_.catalog()
        CALLS.clear()
        cursor, times, requested = None, [], 0
        with dg.instance_for_test() as instance:
            for _ in range(messages // max_messages + 5):
                context = dg.build_sensor_context(instance=instance, cursor=cursor)
                t0 = time.perf_counter()
                result = evaluate_queue(context, settings, resource_)
                times.append(time.perf_counter() - t0)
                requested += len(getattr(result, "run_requests", None) or [])
                cursor = getattr(result, "cursor", None)
                if not getattr(result, "run_requests", None) and cursor == '{"delete_next": []}':
                    break
        busy = times[:-1]
        calls = ", ".join(f"{v} {k.split('.')[1]}" for k, v in sorted(CALLS.items()))
        rows.append((messages, f"evaluate_queue, {max_messages} a tick, moto in-process",
                     len(busy), statistics.fmean(busy), sum(times) / messages * 1000,
                     f"{requested} runs; {calls}"))  # fmt: skip
        rows.append((0, "evaluate_queue, empty queue (idle tick)", 1, times[-1], float("nan"),
                     "1 ReceiveMessage"))  # fmt: skip
    return rows


# --- 3. cost of one run ------------------------------------------------------------------------


def ffprobe_requests(stack: Any, work: Path) -> list[tuple]:
    """How many HTTP requests ffprobe sends for a presigned GET (its ``-v debug`` log)."""
    from event_latency import make_clips

    from edvmp_pipeline.devtools.stack import make_s3_client

    client = make_s3_client(stack, signature_version="s3v4")
    bucket = f"bench-probe-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    small = make_clips(work, 1)[0]
    big = work / "moov_at_end.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=30:duration=60", "-c:v", "libx264",
                    "-preset", "ultrafast", "-b:v", "4M", str(big)], check=True)  # fmt: skip
    rows = []
    for path in (small, big):
        client.upload_file(str(path), bucket, path.name)
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": path.name}, ExpiresIn=600
        )
        done = subprocess.run(["ffprobe", "-v", "debug", "-show_format", "-show_streams", "-i",
                               url], capture_output=True, text=True)  # fmt: skip
        n = sum(1 for line in done.stderr.splitlines() if "request: GET" in line)
        rows.append((path.name, path.stat().st_size, n))
    client.delete_bucket(Bucket=bucket)
    return rows


def measure_runs(
    stack: Any, ddb_url: str | None, event_runs: int, batch: int, work: Path
) -> list[dict[str, Any]]:
    import dagster as dg
    from event_latency import make_clips

    from edvmp_pipeline.adapters.object_store import ObjectStoreResource
    from edvmp_pipeline.defs.catalog_resource import CatalogResource
    from edvmp_pipeline.defs.sensors.object_sensor import SensorSettings, evaluate_sweep
    from edvmp_pipeline.devtools.stack import make_s3_client
    from edvmp_pipeline.domain.video_filter import DEFAULT_VIDEO_EXTENSIONS

    clips = make_clips(work, max(event_runs, batch))
    client = make_s3_client(stack, signature_version="s3v4")
    configs = [("local (SQLite state, Parquet folder)", None)]
    if ddb_url:
        configs.append(("AWS-like (DynamoDB on moto, lake on SeaweedFS)", ddb_url))
    out = []
    for label, url in configs:
        home = work / f"home-{uuid.uuid4().hex[:6]}"
        env = base_env(stack, home)
        if url:
            lake = f"bench-lake-{uuid.uuid4().hex[:8]}"
            client.create_bucket(Bucket=lake)
            env.update({"EDVMP_STATE": "dynamodb", "EDVMP_DYNAMODB_ENDPOINT_URL": url,
                        "EDVMP_DYNAMODB_TABLE_PREFIX": f"r{uuid.uuid4().hex[:6]}-",
                        "EDVMP_CATALOG": f"s3://{lake}/lake"})  # fmt: skip
        use_env(env)
        events = f"bench-ev-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=events)
        instance = dg.DagsterInstance.get()
        catalog = CatalogResource(root=env["EDVMP_CATALOG"])
        store = ObjectStoreResource(endpoint_url=stack.endpoint_url, region=stack.region)
        settings = SensorSettings(bucket=events, extensions=DEFAULT_VIDEO_EXTENSIONS)
        ev = []
        for i in range(event_runs + 1):  # the first run warms caches and creates tables
            client.upload_file(str(clips[i % len(clips)]), events, f"up/{i:04d}.mp4")
            CALLS.clear()
            UNITS.clear()
            context = dg.build_sensor_context(instance=instance, cursor=None)
            result = evaluate_sweep(context, settings, catalog, store)
            sensor_calls = counts_snapshot()
            for req in result.dynamic_partitions_requests:
                instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
            (rr,) = [r for r in result.run_requests if r.partition_key not in {
                e.get("pk") for e in ev}]  # fmt: skip
            got = timed_child(["_run", rr.partition_key, json.dumps(rr.tags)], env)
            got.update(pk=rr.partition_key, sensor=sensor_calls)
            ev.append(got)
            print(f"{label}: event run {i} {got['wall_s']:.2f}s", file=sys.stderr)
        ev = ev[1:]
        src = f"bench-batch-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=src)
        for i, clip in enumerate(clips[:batch]):
            client.upload_file(str(clip), src, f"lib/{i:05d}.mp4")
        b = timed_child(["_ingest", f"s3://{src}"], env)
        print(f"{label}: batch of {batch} {b['wall_s']:.2f}s", file=sys.stderr)
        instance.dispose()
        out.append({"label": label, "event": ev, "batch": b, "n_batch": batch})
    return out


def per_item(calls: dict[str, int], n: int) -> str:
    return ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(calls.items()))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        child_run(sys.argv[2], sys.argv[3])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_ingest":
        child_ingest(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument(
        "--dynamodb-sizes",
        default="",
        help="sizes also timed with DynamoDB state (moto server may 500 under the bulk fill)",
    )
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sqs-max-messages", type=int, default=100)
    parser.add_argument("--event-runs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--put-workers", type=int, default=32)
    parser.add_argument("--only", default="listing,sqs,runs")
    args = parser.parse_args()
    only = set(args.only.split(","))
    install_counter()

    from event_latency import stack_for_benchmark, stop_private_stack

    work = Path(tempfile.mkdtemp(prefix="edvmp-bench-scale-"))
    stack, private = stack_for_benchmark()
    moto, ddb_url = start_moto_server(work)
    listing = sqs = runs = probes = None
    try:
        if "listing" in only:
            listing = measure_listing(stack, [int(s) for s in args.sizes.split(",")],
                                      [int(s) for s in args.dynamodb_sizes.split(",") if s],
                                      ddb_url, args.put_workers)  # fmt: skip
        if "sqs" in only:
            sqs = measure_sqs(stack, args.messages, args.sqs_max_messages)
        if "runs" in only:
            probes = ffprobe_requests(stack, work)
            runs = measure_runs(stack, ddb_url, args.event_runs, args.batch, work)
    finally:
        moto.terminate()
        moto.wait(10)
        stop_private_stack(private)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n# edvmp scaling figures, {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores")
    if listing:
        print("\nlisting sensor: one sweep of the whole bucket (median of 3), SeaweedFS")
        print(f"{'objects':>8}  {'what':<48} {'ticks':>5} {'seconds':>8}  S3/DynamoDB calls")
        for n, what, ticks, secs, calls in listing:
            print(f"{n:>8,}  {what:<48} {ticks:>5} {secs:8.3f}  {calls}")
    if sqs:
        print("\nSQS sensor (moto in-process: relative figure, real SQS calls take longer)")
        print(f"{'messages':>8}  {'what':<48} {'ticks':>5} {'tick s':>8} {'ms/msg':>7}  notes")
        for n, what, ticks, secs, ms, note in sqs:
            print(f"{n:>8,}  {what:<48} {ticks:>5} {secs:8.3f} {ms:7.2f}  {note}")
    if probes:
        print("\nffprobe over a presigned GET: HTTP requests it sends")
        for name, size, n in probes:
            print(f"  {name:<24} {size / 1e6:8.2f} MB  {n} GET")
    if runs:
        print("\ncost of one run in a new process (wall, CPU user+sys incl. ffprobe, peak RSS)")
        print(f"{'config':<48} {'kind':<22} {'wall s':>7} {'CPU s':>6} {'RSS MB':>7}")
        for r in runs:
            ev = r["event"]
            for key, name in (("wall_s", "wall"), ("cpu_s", "cpu"), ("rss_mb", "rss")):
                r[name] = statistics.median(e[key] for e in ev)
            print(f"{r['label']:<48} {'event (1 version/run)':<22} {r['wall']:7.2f} "
                  f"{r['cpu']:6.2f} {r['rss']:7.0f}   median of {len(ev)}; "
                  f"import {statistics.median(e['import_s'] for e in ev):.2f}s, "
                  f"run {statistics.median(e['run_s'] for e in ev):.2f}s")  # fmt: skip
            b, n = r["batch"], r["n_batch"]
            print(f"{'':<48} {f'batch ({n} in 1 run)':<22} {b['wall_s']:7.2f} "
                  f"{b['cpu_s']:6.2f} {b['rss_mb']:7.0f}   per version: "
                  f"{b['wall_s'] / n:.3f}s wall, {b['cpu_s'] / n:.3f}s CPU")  # fmt: skip
        print("\nAWS API calls per version (counted; DynamoDB units estimated, table only)")
        for r in runs:
            ev = r["event"]
            last = ev[-1]
            print(f"{r['label']}")
            print(f"  event run : {per_item(last['calls'], 1)}; units {last['units']}")
            print(f"  its tick  : {per_item(last['sensor']['calls'], 1)}; "
                  f"units {last['sensor']['units']}")  # fmt: skip
            b, n = r["batch"], r["n_batch"]
            units = {k: round(v / n, 2) for k, v in b["units"].items()}
            print(f"  batch/ver : {per_item(b['calls'], n)}; units/version {units}")
    print(f"\nload average at the end: {os.getloadavg()}; self CPU "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_utime:.1f}s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
