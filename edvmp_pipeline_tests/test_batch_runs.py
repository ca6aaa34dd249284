"""How ``edvmp ingest`` cuts its versions into Dagster runs (a real ephemeral instance)."""

import dagster as dg

from edvmp_pipeline.defs.batch_runs import contiguous_batches, list_tail, partition_range

KEYS = [f"k{i:05d}" for i in range(2500)]


def _instance() -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("videos", KEYS)
    return instance


def test_the_tail_of_the_partition_list_is_read_from_the_newest_key() -> None:
    instance = _instance()
    assert list_tail(instance, {"k02499"}) == ["k02499"]
    tail = list_tail(instance, {"k00100", "k02000"})
    assert tail == KEYS[100:]
    assert list_tail(instance, {"not-a-partition"}) == []
    assert partition_range(instance, ["k02000", "k00100"]) == "k00100...k02000"


def test_runs_cover_unbroken_stretches_only() -> None:
    """A run's range never spans a version it does not process (Dagster would plan it and,
    when the run fails, mark it Failed)."""
    wanted = {"k00100", "k00101", "k00102", "k02000", "k02001"}
    tail = list_tail(_instance(), wanted)
    assert contiguous_batches(tail, wanted, 500) == [
        ["k00100", "k00101", "k00102"],
        ["k02000", "k02001"],
    ]
    assert contiguous_batches(tail, wanted, 2) == [
        ["k00100", "k00101"],
        ["k00102"],
        ["k02000", "k02001"],
    ]
    everything = set(KEYS)
    batches = contiguous_batches(KEYS, everything, 1000)
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [k for b in batches for k in b] == KEYS
