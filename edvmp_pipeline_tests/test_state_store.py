"""The state store and the self-compacting result tables: real SQLite, real Parquet, real
processes racing each other, SIGKILL at bad moments, and the migration of a first-release
catalog (a committed fixture written by that release's code).

The state store's contract (conditional transitions, incidents, verdicts, counters, upload
jobs, racing writers) runs against both backends through the ``store`` fixture: SQLite, and
DynamoDB on a real DynamoDB-compatible server (moto's standalone server on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from edvmp_pipeline.catalog import schemas
from edvmp_pipeline.catalog.compaction import FANOUT_L0, file_budget, maybe_compact
from edvmp_pipeline.catalog.parquet_files import TMP_SUFFIX, append_rows, data_files
from edvmp_pipeline.catalog.state_store import (
    FAILED,
    OPEN,
    PENDING,
    RESOLVED,
    RUNNING,
    SUCCEEDED,
    SUPERSEDED,
    NewIncident,
    SqliteStateStore,
)
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.domain.records import ObjectVersion

FIXTURE = Path(__file__).parent / "fixtures" / "home_v0_1"
REPO = Path(__file__).resolve().parent.parent


def _v(key: str, etag: str = "e1") -> ObjectVersion:
    return ObjectVersion("s3://uploads", key, etag, 10, datetime(2026, 1, 1, tzinfo=UTC))


def _incident(pk: str, iid: str, *, retryable: bool = False, due: datetime | None = None):
    return NewIncident(
        incident_id=iid,
        partition_key=pk,
        version=_v(pk),
        failure_class="throttled" if retryable else "corrupt_media",
        retryable=retryable,
        fingerprint=f"fp-{iid}",
        message="boom",
        error_type=None,
        action="do it",
        runbook="runbooks/x.md",
        max_redrives=3,
        next_attempt_at=due,
    )


# --- the contract, on every backend --------------------------------------------------------


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        return SqliteStateStore(tmp_path / "s.sqlite")
    from edvmp_pipeline.catalog.dynamodb_state import DynamoDbStateStore

    request.getfixturevalue("dynamodb_env")
    return DynamoDbStateStore(
        table_prefix=os.environ["EDVMP_DYNAMODB_TABLE_PREFIX"],
        endpoint_url=os.environ["EDVMP_DYNAMODB_ENDPOINT_URL"],
        create_tables=True,
    )


def test_register_inserts_only_absent_versions(store) -> None:
    assert store.register([("a", _v("a")), ("b", _v("b"))], "sensor") == ["a", "b"]
    assert store.register([("a", _v("a", "other")), ("c", _v("c"))], "ingest") == ["c"]
    a = store.get("a")
    assert a is not None and (a.status, a.etag, a.registered_by) == (PENDING, "e1", "sensor")
    assert store.get("nope") is None
    assert set(store.get_many(["a", "c", "nope"])) == {"a", "c"}


def test_pending_versions_are_those_waiting_to_be_processed(store) -> None:
    store.register([("a", _v("a")), ("b", _v("b")), ("c", _v("c"))], "t")
    assert [s.partition_key for s in store.pending_versions()] == ["a", "b", "c"]
    store.claim(["a"], "run1")
    store.claim(["b"], "run1")
    store.mark_failed({"b": ("corrupt_media", "bad")}, "run1")
    (c,) = store.pending_versions()
    assert (c.partition_key, c.status, c.object_key) == ("c", PENDING, "c")


def test_claim_transitions_are_conditional(store) -> None:
    store.register([("a", _v("a")), ("b", _v("b"))], "t")
    assert set(store.claim(["a", "b"], "run1")) == {"a", "b"}
    # Held by a live claimant (this process): another run gets nothing.
    assert store.claim(["a", "b"], "run2") == {}
    # Only the holder records metadata and moves RUNNING → SUCCEEDED / FAILED.
    assert store.mark_probed(["a"], "run2", result_file="other") == []
    assert store.mark_probed(["a"], "run1", result_file="stem") == ["a"]
    probed = store.get("a")
    assert probed is not None and (probed.status, probed.result_file) == (RUNNING, "stem")
    assert store.mark_succeeded(["a"], "run2") == []
    assert store.mark_succeeded(["a"], "run1") == ["a"]
    assert store.mark_failed({"b": ("throttled", "slow")}, "run2") == []
    assert store.mark_failed({"b": ("throttled", "slow")}, "run1") == ["b"]
    a, b = store.get("a"), store.get("b")
    assert a is not None and b is not None
    assert (a.status, a.attempts, a.result_file, a.metadata_at is not None) == (
        SUCCEEDED, 1, "stem", True,
    )  # fmt: skip
    assert (b.status, b.error_class, b.error) == (FAILED, "throttled", "slow")
    # SUCCEEDED is not claimed again unless forced; FAILED is, unless the claimer says it
    # only takes what it saw PENDING (a racing ingest failed it meanwhile).
    assert store.claim(["a", "b"], "run3", retry_failed=False) == {}
    assert set(store.claim(["a", "b"], "run3")) == {"b"}
    assert set(store.claim(["a"], "run4", force=True)) == {"a"}
    again = store.get("a")
    assert again is not None and (again.status, again.attempts, again.run_id) == (
        RUNNING, 2, "run4",
    )  # fmt: skip
    # A run that did not do every asset hands its versions back as PENDING.
    assert store.release(["a"], "run3") == []
    assert store.release(["a"], "run4") == ["a"]
    back = store.get("a")
    assert back is not None and (back.status, back.claimed_by) == (PENDING, None)


def test_violations_are_an_index_of_the_current_verdicts(store) -> None:
    store.register([(k, _v(k)) for k in "abc"], "t")
    store.record_verdicts(["a", "b", "c"], ["has_audio", "landscape"], {"has_audio": ["a", "b"]})
    counts = store.violation_counts(["has_audio", "landscape", "never_checked"])
    assert counts["has_audio"] == (2, ["a", "b"])
    assert counts["landscape"] == (0, [])
    assert counts["never_checked"] == (0, [])
    # Re-checking a version replaces its verdict; others keep theirs.
    store.record_verdicts(["a"], ["has_audio"], {})
    assert store.violation_counts(["has_audio"])["has_audio"] == (1, ["b"])
    assert store.violation_counts(["has_audio"], sample=0)["has_audio"] == (1, [])


def test_fingerprints_are_kept_by_version_and_indexed_by_bucket(store) -> None:
    from edvmp_pipeline.domain.fingerprints import Fingerprint, bucket_ids

    a = Fingerprint(1.0, (0x1111_2222_3333_4444, 0, 0xFFFF_0000_FFFF_0001))
    b = Fingerprint(1.0, (0x1111_9999_9999_9999,))  # shares a's first 16-bit band
    c = Fingerprint(0.5, (0x1111_2222_7777_7777,))  # shares two of a's bands
    store.index_fingerprints({"a": a, "b": b, "c": c})
    store.index_fingerprints({"a": a})  # again: idempotent
    assert store.fingerprints(["a", "c", "nope"]) == {"a": a, "c": c}
    first, second = bucket_ids(Fingerprint(1.0, (a.hashes[0],)))[:2]
    assert store.bucket_members([first, second, 12345], limit=10) == {
        first: ["a", "b", "c"], second: ["a", "c"],
    }  # fmt: skip
    # A bucket holding more versions than the limit is left out, not truncated.
    assert store.bucket_members([first, second], limit=2) == {second: ["a", "c"]}
    assert store.bucket_members([], limit=2) == {}
    assert set(bucket_ids(a)) >= set(bucket_ids(Fingerprint(1.0, a.hashes[:1])))


def test_a_claim_held_by_a_dead_process_of_this_host_is_taken_over(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.sqlite")
    store.register([("a", _v("a"))], "t")
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            from edvmp_pipeline.catalog.state_store import SqliteStateStore
            SqliteStateStore({str(tmp_path / "s.sqlite")!r}).claim(["a"], "dead-run")
        """)],
        check=True,
    )  # fmt: skip
    assert child.returncode == 0
    held = store.get("a")
    assert held is not None and (held.status, held.run_id) == (RUNNING, "dead-run")
    assert set(store.claim(["a"], "next-run")) == {"a"}


def test_incidents_upsert_supersede_resolve_and_are_recorded_once_per_run(store) -> None:
    store.register([("a", _v("a"))], "t")
    store.claim(["a"], "r1")
    store.mark_failed({"a": ("corrupt_media", "boom")}, "r1")
    assert store.record_incidents("r1", [_incident("a", "i1")], {}) == ["i1"]
    # The same run recorded again (the sensor re-evaluated) changes nothing.
    assert store.record_incidents("r1", [_incident("a", "i1")], {}) == ["i1"]
    assert store.get_incident("i1").attempts == 1  # type: ignore[union-attr]
    store.claim(["a"], "r2")
    store.mark_failed({"a": ("corrupt_media", "boom")}, "r2")
    store.record_incidents("r2", [_incident("a", "i1")], {})
    assert store.get_incident("i1").attempts == 2  # type: ignore[union-attr]
    assert store.failed_runs_of(["a"]) == {"a": 2}
    # Another kind of failure of the same version supersedes the open one.
    store.claim(["a"], "r3")
    store.mark_failed({"a": ("throttled", "slow")}, "r3")
    store.record_incidents("r3", [_incident("a", "i2", retryable=True)], {})
    assert store.get_incident("i1").status == SUPERSEDED  # type: ignore[union-attr]
    assert store.latest_incident("a").incident_id == "i2"  # type: ignore[union-attr]
    assert [i.incident_id for i in store.open_incidents(failure_class="corrupt_media")] == []
    # The version succeeding resolves its incidents.
    store.claim(["a"], "r4")
    store.mark_succeeded(["a"], "r4")
    assert {store.get_incident(i).status for i in ("i1", "i2")} == {RESOLVED}  # type: ignore[union-attr]


def test_a_good_new_version_supersedes_the_open_incidents_of_older_ones(store) -> None:
    """clip.mp4 uploaded broken, then fixed: once the fixed version succeeds, the broken
    one's incident is over (a redrive could only fail: the object has changed)."""

    def version(etag: str, day: int) -> ObjectVersion:
        return ObjectVersion(
            "s3://uploads", "clip.mp4", etag, 10, datetime(2026, 1, day, tzinfo=UTC)
        )

    store.register(
        [("broken", version("e1", 1)), ("fixed", version("e2", 2)), ("later", version("e3", 3)),
         ("other", _v("other"))],
        "t",
    )  # fmt: skip
    store.claim(["broken", "later", "other"], "r1")
    store.mark_failed({k: ("corrupt_media", "cut") for k in ("broken", "later", "other")}, "r1")
    store.record_incidents(
        "r1", [_incident("broken", "i1"), _incident("later", "i3"), _incident("other", "i4")], {}
    )
    store.claim(["fixed"], "r2")
    assert store.mark_succeeded(["fixed"], "r2") == ["fixed"]
    status = {i: store.get_incident(i).status for i in ("i1", "i3", "i4")}  # type: ignore[union-attr]
    # Older version superseded; a newer version of it, and another object, still open.
    assert status == {"i1": SUPERSEDED, "i3": OPEN, "i4": OPEN}
    assert [i.incident_id for i in store.open_incidents(failure_class="corrupt_media")] in (
        ["i3", "i4"], ["i4", "i3"],
    )  # fmt: skip


def test_a_crash_marks_unfinished_versions_failed_and_due_redrives_are_bounded(store) -> None:
    store.register([("a", _v("a")), ("b", _v("b")), ("c", _v("c"))], "t")
    store.claim(["a", "b"], "crashed")
    store.claim(["c"], "other")
    past = datetime.now(UTC) - timedelta(seconds=1)
    store.record_incidents(
        "crashed",
        [_incident("a", "ia", retryable=True, due=past)],
        # c is held by another run: the crash of "crashed" must not touch it.
        {"a": ("throttled", "killed"), "c": ("throttled", "killed")},
    )
    assert store.get("a").status == FAILED  # type: ignore[union-attr]
    assert store.get("b").status == RUNNING  # type: ignore[union-attr]
    assert store.get("c").status == RUNNING  # type: ignore[union-attr]
    due = store.due_redrives(datetime.now(UTC))
    assert [i.incident_id for i in due] == ["ia"] and due[0].status == OPEN
    store.record_redrives(["ia"])
    assert store.due_redrives(datetime.now(UTC)) == []


# --- two processes on the same versions --------------------------------------------------

RACER = textwrap.dedent(
    """
    import sys, uuid
    from edvmp_pipeline.services.processing import process_batch
    from edvmp_pipeline.catalog.store import Catalog
    from edvmp_pipeline.adapters.object_store import ObjectStoreResource
    from edvmp_pipeline_tests.test_state_store import CannedProber, KEYS
    cat = Catalog(sys.argv[1]).ensure()
    out = process_batch(KEYS, catalog=cat, store=ObjectStoreResource(), prober=CannedProber(),
                        run_id=str(uuid.uuid4()), workers=2)
    print(len(out.succeeded), len(out.skipped), len(out.failed))
    """
)
KEYS = [f"race-{i:03d}" for i in range(60)]


class CannedProber:
    """Stands in for ffprobe: a fixed record, slowly enough that the racers overlap."""

    def probe(self, target: str, *, size_bytes: int, leading_bytes: bytes = b""):
        from edvmp_pipeline_tests.test_catalog import _record

        time.sleep(0.01)
        return _record()


def test_two_processes_claiming_the_same_versions_process_each_once(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    cat = Catalog(tmp_path / "catalog").ensure()
    pairs = []
    for pk in KEYS:
        (lib / f"{pk}.mp4").write_bytes(b"x" * 10)
        pairs.append((pk, ObjectVersion(str(lib), f"{pk}.mp4", pk, 10, None)))
    cat.register(pairs, registered_by="test")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(cat.root)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    succeeded = sum(int(o[0]) for o in outs)
    assert succeeded == len(KEYS), outs
    assert sum(int(o[2]) for o in outs) == 0
    states = cat.job_states(KEYS)
    # Metadata landed once per version; the summary and checks (not run here) are still due,
    # so each stays RUNNING under the run that probed it.
    assert {s.status for s in states.values()} == {RUNNING}
    assert all(s.metadata_at is not None and s.result_file for s in states.values())
    assert {s.attempts for s in states.values()} == {1}, "a version was processed twice"
    raw = duckdb.execute(
        "SELECT count(*), count(DISTINCT partition_key) FROM read_parquet(?)",
        [str(cat.root / "videos" / "*.parquet")],
    ).fetchall()
    assert raw == [(len(KEYS), len(KEYS))], "no lost and no doubled result rows"


OPENER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from edvmp_pipeline.catalog.state_store import SqliteStateStore
    from edvmp_pipeline.domain.records import ObjectVersion
    root, start, tag = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    time.sleep(max(0.0, start - time.time()))
    for i in range(int(sys.argv[4])):
        store = SqliteStateStore(root / f"fresh-{i}" / "state.db")
        store.register([(f"{tag}-{i}", ObjectVersion("src", f"{tag}.mp4", tag, 1, None))], tag)
    """
)


def test_processes_racing_to_create_a_fresh_store_all_succeed(tmp_path: Path) -> None:
    # Two ingests on a fresh home create the state store at the same moment: switching a
    # new file to WAL can answer "database is locked" whatever the busy timeout.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start, n_files, n_procs = time.time() + 2.0, 15, 6
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(tmp_path), str(start), f"p{j}", str(n_files)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for j in range(n_procs)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * n_procs, errors
    for i in range(n_files):
        store = SqliteStateStore(tmp_path / f"fresh-{i}" / "state.db")
        assert len(store.get_many([f"p{j}-{i}" for j in range(n_procs)])) == n_procs


# --- compaction -----------------------------------------------------------------------------

APPENDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edvmp_pipeline.catalog import schemas
    from edvmp_pipeline.catalog.compaction import maybe_compact
    from edvmp_pipeline.catalog.parquet_files import append_rows
    root, tag, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for i in range(n):
        append_rows(root, "checks", schemas.CHECKS,
                    [{"partition_key": f"{tag}-{i}", "rule_id": "r", "passed": True}])
        maybe_compact(root, "checks")
    """
)


def test_compaction_racing_writers_and_readers_loses_and_doubles_nothing(tmp_path: Path) -> None:
    cat = Catalog(tmp_path).ensure()
    per_writer, writers = 150, 3
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(tmp_path), f"w{i}", str(per_writer)])
        for i in range(writers)
    ]
    seen, reads = 0, 0
    while any(p.poll() is None for p in procs):
        # Readers never fail, never see a row twice and never see the count go down.
        _, rows = cat.query("SELECT count(*), count(DISTINCT partition_key) FROM checks")
        count, distinct = rows[0]
        assert count == distinct
        assert count >= seen
        seen, reads = count, reads + 1
    assert all(p.returncode == 0 for p in procs)
    assert reads > 3
    _, rows = cat.query("SELECT count(*), count(DISTINCT partition_key) FROM checks")
    assert rows == [(per_writer * writers, per_writer * writers)]
    files = data_files(tmp_path / "checks")
    assert len(files) <= file_budget(per_writer * writers)
    assert len(files) < per_writer * writers / 4, "the writers compacted as they went"


def test_the_file_count_stays_bounded_by_itself(tmp_path: Path) -> None:
    for i in range(FANOUT_L0 * 9):
        append_rows(tmp_path, "checks", schemas.CHECKS, [{"partition_key": f"k{i}"}])
        maybe_compact(tmp_path, "checks")
    files = data_files(tmp_path / "checks")
    assert len(files) < FANOUT_L0 + 8, [f.name for f in files]
    assert any(f.name.startswith("L2-") for f in files)


COMPACTOR = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from edvmp_pipeline.catalog import compaction
    os.fsync = lambda fd: time.sleep(60)  # stall after the merged bytes, before the rename
    compaction.compact_table(Path(sys.argv[1]), "checks")
    """
)


def test_sigkill_during_compaction_loses_nothing(tmp_path: Path) -> None:
    cat = Catalog(tmp_path).ensure()
    for i in range(10):
        append_rows(tmp_path, "checks", schemas.CHECKS, [{"partition_key": f"k{i}"}])
    proc = subprocess.Popen([sys.executable, "-c", COMPACTOR, str(tmp_path)])
    deadline = time.monotonic() + 60
    while not list((tmp_path / "checks").glob(f".*{TMP_SUFFIX}")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, rows = cat.query("SELECT count(*), count(DISTINCT partition_key) FROM checks")
    assert rows == [(10, 10)]
    # The lock died with the process: the next compaction runs and merges everything.
    from edvmp_pipeline.catalog.compaction import compact_table

    assert compact_table(tmp_path, "checks").rows == 10
    assert cat.query("SELECT count(*) FROM checks")[1] == [(10,)]


# --- migration ----------------------------------------------------------------------------


def _expected(name: str) -> list[dict]:
    return json.loads((FIXTURE / f"expected_{name}.json").read_text())


def _close(a: str, b: str) -> bool:
    return abs(datetime.fromisoformat(a) - datetime.fromisoformat(b)) < timedelta(seconds=1)


def test_a_first_release_catalog_is_migrated_with_nothing_lost(tmp_path: Path) -> None:
    root = Path(shutil.copytree(FIXTURE / "catalog", tmp_path / "catalog"))
    cat = Catalog(root)
    for view in ("jobs", "objects", "incidents"):
        cols, rows = cat.query(f"SELECT * FROM {view} ORDER BY 1")
        got = [dict(zip(cols, r, strict=True)) for r in rows]
        want = _expected(view)
        assert len(got) == len(want), view
        for g, w in zip(got, want, strict=True):
            for col, value in w.items():
                have = g[col].isoformat() if isinstance(g[col], datetime) else g[col]
                if col == "registered_at":
                    # One fact now: the first release had two stamps microseconds apart.
                    assert _close(have, value), (view, col)
                else:
                    assert have == value, (view, col, have, value)
    assert cat.query("SELECT count(*) FROM videos")[1] == [(5,)]
    assert not any((root / t).exists() for t in ("objects", "job_events", "incident_events"))
    assert list(root.glob(".migrated-*/job_events"))
    # What the migration brings over keeps working: the failed versions' incidents are open,
    # the good ones are done (summary and checks recorded), nothing is claimed.
    succeeded = [r["partition_key"] for r in _expected("jobs") if r["status"] == SUCCEEDED]
    for state in cat.job_states(succeeded).values():
        assert state.metadata_at and state.summary_at and state.checked_at
    assert len(cat.state.open_incidents(failure_class="corrupt_media")) == 1
    assert cat.state.failed_runs_of([r["partition_key"] for r in _expected("incidents")])


def test_two_processes_opening_an_old_catalog_migrate_it_once(tmp_path: Path) -> None:
    root = Path(shutil.copytree(FIXTURE / "catalog", tmp_path / "catalog"))
    code = "import sys; from edvmp_pipeline.catalog.store import Catalog; " \
        "print(Catalog(sys.argv[1]).query('SELECT count(*) FROM jobs')[1][0][0])"  # fmt: skip
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert outs == [str(len(_expected("jobs")))] * 3
    assert len(list(root.glob(".migrated-*"))) == 1


def test_database_file_opens_in_another_duckdb_client(tmp_path: Path) -> None:
    from edvmp_pipeline_tests.test_catalog import _record

    cat = Catalog(tmp_path).ensure()
    cat.register([("pk-a", _v("a.mp4"))], registered_by="t")
    cat.write_results([("pk-a", _v("a.mp4"), _record())], run_id="r1")
    assert cat.write_database_file()
    con = duckdb.connect(str(cat.db_path), read_only=True)
    try:
        assert con.execute("SELECT object_key FROM videos").fetchall() == [("a.mp4",)]
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
        assert {"videos", "videos_latest", "streams", "summaries", "checks"} <= views
        # State lives in state.sqlite, not in a stale copy here.
        assert "jobs" not in views
    finally:
        con.close()


@pytest.mark.parametrize("view", ["jobs", "objects", "incidents"])
def test_state_views_keep_their_columns(tmp_path: Path, view: str) -> None:
    """The first release's columns, in its order: every documented query still works."""
    cols, _ = Catalog(tmp_path).query(f"SELECT * FROM {view}")
    assert cols == list(_expected(view)[0])


# --- more of the contract: API jobs, what /metrics reads, racing writers ---------------------


def test_upload_jobs_and_the_newest_version_of_their_objects(store) -> None:
    from edvmp_pipeline.catalog.upload_jobs import UploadJob

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    for i, owner in enumerate(["alice", "bob", "alice"]):
        store.create_upload_job(
            UploadJob(f"job{i}", owner, "uploads", f"api/job{i}/c.mp4", "c.mp4", "video/mp4",
                      None, t0 + timedelta(seconds=i), t0 + timedelta(hours=1))
        )  # fmt: skip
    assert [j.job_id for j in store.upload_jobs_of("alice", limit=10)] == ["job2", "job0"]
    assert [j.job_id for j in store.upload_jobs_of("alice", limit=1)] == ["job2"]
    job = store.upload_job("job1")
    assert job is not None and (job.owner, job.created_at) == ("bob", t0 + timedelta(seconds=1))
    assert store.upload_job("nope") is None
    # The same key uploaded twice: the newer version (by upload time) is the job's.
    old = ObjectVersion("s3://uploads", "api/job0/c.mp4", "e1", 5, t0)
    new = ObjectVersion("s3://uploads", "api/job0/c.mp4", "e2", 6, t0 + timedelta(minutes=1))
    store.register([("v-new", new), ("v-old", old)], "sensor")
    found = store.newest_versions_of("s3://uploads", ["api/job0/c.mp4", "api/job1/c.mp4"])
    assert list(found) == ["api/job0/c.mp4"] and found["api/job0/c.mp4"].etag == "e2"
    # Incidents of an owner's uploads only.
    store.claim(["v-new"], "r1")
    store.mark_failed({"v-new": ("corrupt_media", "bad")}, "r1")
    incident = _incident("v-new", "i-new")
    store.record_incidents("r1", [dataclasses.replace(incident, version=new)], {})
    assert [i.incident_id for i in store.recent_incidents(limit=10, owner="alice")] == ["i-new"]
    assert store.recent_incidents(limit=10, owner="bob") == []
    assert [i.incident_id for i in store.recent_incidents(limit=10)] == ["i-new"]
    assert store.recent_incidents(limit=10, open_only=True)[0].status == OPEN


def test_counts_lag_and_counters_follow_every_transition(store) -> None:
    from edvmp_pipeline.catalog import operational_counters as counters

    uploaded = datetime.now(UTC) - timedelta(minutes=10)
    store.register([(k, ObjectVersion("s3://u", k, "e", 1, uploaded)) for k in "abcd"], "t")
    assert store.status_counts() == {PENDING: 4, RUNNING: 0, SUCCEEDED: 0, FAILED: 0}
    lag = store.oldest_unprocessed()
    assert lag is not None and abs((lag - uploaded).total_seconds()) < 1
    store.claim(["a", "b", "c"], "r1")
    store.mark_probed(["a"], "r1", result_file="f", probe_seconds={"a": 0.07})
    store.mark_succeeded(["a"], "r1")
    store.mark_failed({"b": ("corrupt_media", "x")}, "r1")
    store.release(["c"], "r1")
    assert store.status_counts() == {PENDING: 2, RUNNING: 0, SUCCEEDED: 1, FAILED: 1}
    rows = store.operational_counters()
    finished = {r.labels["status"]: r.value for r in rows if r.name == counters.FINISHED}
    assert finished == {SUCCEEDED: 1.0, FAILED: 1.0}
    probe = counters.histogram(rows, counters.PROBE_DURATION, counters.PROBE_BUCKETS)
    assert probe.count == 1 and abs(probe.total - 0.07) < 1e-9
    latency = counters.histogram(rows, counters.UPLOAD_TO_SUCCEEDED, counters.LATENCY_BUCKETS)
    assert latency.count == 1 and 590 < latency.total < 700
    store.claim(["c", "d"], "r2")
    store.mark_succeeded(["c", "d"], "r2")
    assert store.oldest_unprocessed() is None
    assert store.status_counts()[SUCCEEDED] == 3


def test_late_and_duplicated_writes_never_overwrite_a_newer_state(store) -> None:
    store.register([("a", _v("a"))], "sensor")
    # A duplicated (or late) event registers nothing new.
    assert store.register([("a", _v("a"))], "sqs") == []
    store.claim(["a"], "r1")
    store.mark_failed({"a": ("store_unreachable", "500")}, "r1")
    assert set(store.claim(["a"], "redrive")) == {"a"}
    assert store.mark_succeeded(["a"], "redrive") == ["a"]
    # The first run, late, cannot move the version again.
    assert store.mark_failed({"a": ("unknown", "late")}, "r1") == []
    assert store.mark_succeeded(["a"], "r1") == []
    state = store.get("a")
    assert state is not None and (state.status, state.run_id, state.attempts) == (
        SUCCEEDED, "redrive", 2,
    )  # fmt: skip


def test_writers_racing_on_the_same_versions_leave_one_outcome(store, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    keys = [f"k{i}" for i in range(12)]
    store.register([(k, _v(k)) for k in keys], "t")

    def contender(n: int) -> set[str]:
        # Each thread its own store object (its own connection or client), as processes are.
        mine = _same_store(store, tmp_path)
        claimed = set(mine.claim(keys, f"run{n}"))
        mine.mark_succeeded(sorted(claimed), f"run{n}")
        return claimed

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(contender, range(4)))
    winners = [k for claimed in results for k in claimed]
    assert sorted(winners) == sorted(keys), "every version claimed exactly once"
    states = store.get_many(keys)
    assert {s.status for s in states.values()} == {SUCCEEDED}
    assert {s.attempts for s in states.values()} == {1}
    assert store.status_counts()[SUCCEEDED] == len(keys)


def _same_store(store, tmp_path: Path):
    if isinstance(store, SqliteStateStore):
        return SqliteStateStore(store.path)
    from edvmp_pipeline.catalog.dynamodb_state import DynamoDbStateStore

    return DynamoDbStateStore(
        table_prefix=store.prefix, endpoint_url=os.environ["EDVMP_DYNAMODB_ENDPOINT_URL"]
    )


def test_throttling_is_retried_with_backoff_and_lost_conditions_are_not() -> None:
    from botocore.exceptions import ClientError

    from edvmp_pipeline.catalog.dynamodb_state import ConditionLost, retrying
    from edvmp_pipeline.domain.errors import StoreUnreachable

    def error(code: str, reasons: list[str] | None = None) -> ClientError:
        response: dict = {"Error": {"Code": code, "Message": code}}
        if reasons is not None:
            response["CancellationReasons"] = [{"Code": r} for r in reasons]
        return ClientError(response, "TransactWriteItems")

    naps: list[float] = []
    answers = iter(
        [
            error("ProvisionedThroughputExceededException"),
            error("ThrottlingException"),
            error("TransactionCanceledException", ["ThrottlingError", "None"]),
            "done",
        ]
    )

    def call() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retrying(call, sleep=naps.append) == "done"
    assert len(naps) == 3 and naps[0] < naps[2], "exponential backoff"
    with pytest.raises(ConditionLost):
        retrying(
            lambda: (_ for _ in ()).throw(
                error("TransactionCanceledException", ["ConditionalCheckFailed", "None"])
            ),
            sleep=naps.append,
        )
    with pytest.raises(StoreUnreachable, match="kept throttling"):
        retrying(
            lambda: (_ for _ in ()).throw(error("ThrottlingException")),
            attempts=3,
            sleep=lambda _s: None,
        )
