"""Probing ahead of the runs: the scheduler on its own, then ``edvmp ingest`` with real
ffprobe and a real Dagster instance, where every version is probed once, ahead of its run."""

import threading
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from edvmp_pipeline.adapters.prober import FfprobeProber
from edvmp_pipeline.defs.in_process_runs import ingest_in_process as ingest
from edvmp_pipeline.defs.tags import TAG_FAILED, TAG_SUCCEEDED
from edvmp_pipeline.domain.errors import PipelineError
from edvmp_pipeline.domain.records import ObjectVersion, VideoRecord
from edvmp_pipeline.services.probe_ahead import ProbeAhead
from edvmp_pipeline_tests.cli_support import SAMPLE_BROKEN, SAMPLE_GOOD


def _version(i: int) -> ObjectVersion:
    return ObjectVersion("/lib", f"clip_{i}.mp4", f"etag{i}", 100 + i)


class _Recorder:
    """A probe whose calls are recorded; each returns a distinct (fake) record marker."""

    def __init__(self, delay_s: float = 0.0, fail: set[str] = frozenset()) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, version: ObjectVersion, log: Callable[[str], None]) -> VideoRecord:
        with self.lock:
            self.calls.append(version.object_key)
        time.sleep(self.delay_s)
        if version.object_key in self.fail:
            log(f"{version.object_key}: attempt 1 failed (throttled); retrying in 0.01s")
            raise PipelineError(f"{version.object_key}: not a video", error_class="corrupt_media")
        return version.object_key  # type: ignore[return-value]  # stands for a record


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_results_are_taken_once_each_and_errors_come_back_as_errors() -> None:
    probe = _Recorder(fail={"clip_3.mp4"})
    ahead = ProbeAhead(probe, workers=2, window=10)
    items = [(f"pk{i}", _version(i)) for i in range(6)]
    ahead.start(items)
    try:
        _wait_for(lambda: len(probe.calls) == len(items))  # all begun: take waits for each
        results = [ahead.take(pk, v) for pk, v in items]
        assert all(r is not None for r in results)
        assert [r.record for r in results if r.error is None] == [
            f"clip_{i}.mp4" for i in (0, 1, 2, 4, 5)
        ]
        failed = results[3]
        assert isinstance(failed.error, PipelineError) and failed.record is None
        assert failed.retries == ["clip_3.mp4: attempt 1 failed (throttled); retrying in 0.01s"]
        assert all(r.seconds >= 0 for r in results)
        # Taken results are gone: a second take (or another run) probes for itself.
        assert ahead.take("pk0", _version(0)) is None
        assert sorted(probe.calls) == sorted(v.object_key for _, v in items)
    finally:
        ahead.close()


def test_a_different_version_or_an_unscheduled_key_is_not_answered() -> None:
    ahead = ProbeAhead(_Recorder(), workers=1, window=4)
    ahead.start([("pk0", _version(0))])
    try:
        assert ahead.take("pk0", _version(9)) is None  # same key, other content
        assert ahead.take("other", _version(0)) is None
        assert ProbeAhead().take("pk0", _version(0)) is None  # the default probes nothing
    finally:
        ahead.close()


def test_probing_stays_within_the_window_until_results_are_taken_or_dropped() -> None:
    probe = _Recorder()
    ahead = ProbeAhead(probe, workers=2, window=3)
    items = [(f"pk{i}", _version(i)) for i in range(10)]
    ahead.start(items)
    try:
        _wait_for(lambda: len(probe.calls) == 3)
        time.sleep(0.2)
        assert len(probe.calls) == 3  # three results held, none taken: the pool waits
        assert ahead.take("pk0", _version(0)) is not None
        _wait_for(lambda: len(probe.calls) == 4)
        # A finished run drops what it did not take; the room goes to the next versions.
        ahead.drop(["pk1", "pk2"])
        _wait_for(lambda: len(probe.calls) == 6)
        assert ahead.take("pk1", _version(1)) is None
    finally:
        ahead.close()


def test_a_version_the_pool_has_not_reached_is_left_to_the_caller() -> None:
    probe = _Recorder(delay_s=0.3)
    ahead = ProbeAhead(probe, workers=1, window=5)
    ahead.start([(f"pk{i}", _version(i)) for i in range(3)])
    try:
        _wait_for(lambda: len(probe.calls) == 1)
        assert ahead.take("pk2", _version(2)) is None  # not begun: the caller probes it
        assert ahead.take("pk0", _version(0)) is not None  # under way: waited for
        assert ahead.take("pk1", _version(1)) is not None
        time.sleep(0.4)
        assert "clip_2.mp4" not in probe.calls  # never probed twice
    finally:
        ahead.close()


def test_close_stops_the_pool() -> None:
    probe = _Recorder(delay_s=0.05)
    ahead = ProbeAhead(probe, workers=2, window=2)
    ahead.start([(f"pk{i}", _version(i)) for i in range(50)])
    _wait_for(lambda: len(probe.calls) >= 2)
    ahead.close()
    time.sleep(0.3)
    assert len(probe.calls) <= 4
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("probe-ahead"))


def test_ingest_probes_every_version_once_ahead_of_its_run(
    library: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    real_probe = FfprobeProber.probe

    def recording_probe(self: FfprobeProber, target: str, **kwargs: object) -> VideoRecord:
        calls.append((Path(target).name, threading.current_thread().name))
        return real_probe(self, target, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(FfprobeProber, "probe", recording_probe)
    report = ingest(str(library), batch_size=3)
    assert len(report.run_ids) == 3  # 7 versions in runs of at most 3
    assert {report.versions[pk].object_key for pk in report.succeeded} == SAMPLE_GOOD
    failed = {report.versions[pk].object_key: report.states[pk].error_class for pk in report.failed}
    assert failed == SAMPLE_BROKEN
    # Each of the 7 versions probed once, by the pool, while Dagster created the runs.
    probed = sorted(name for name, _ in calls)
    assert len(probed) == 7 and len(set(probed)) == 7
    assert all(thread.startswith("probe-ahead-") for _, thread in calls)

    # What Dagster records is unchanged: Materialized for the good versions, and the runs'
    # counts (test_dagster_ui_truth reads the partitions view itself).
    instance = dg.DagsterInstance.get()
    metadata = dg.AssetKey("video_metadata")
    assert instance.get_materialized_partitions(metadata) == set(report.succeeded)
    runs = [instance.get_run_by_id(run_id) for run_id in report.run_ids]
    assert sum(int(r.tags[TAG_FAILED]) for r in runs if r is not None) == len(SAMPLE_BROKEN)
    assert sum(int(r.tags[TAG_SUCCEEDED]) for r in runs if r is not None) == len(SAMPLE_GOOD)
