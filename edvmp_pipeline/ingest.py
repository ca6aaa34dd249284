"""``edvmp ingest``: catalogue every new version of a folder or bucket through Dagster.

It lists the source, registers each new version (catalog + dynamic partition), then
materialises ``video_metadata`` in a few large runs on the persistent instance, so that a big
folder is not paid for in run start-ups and the runs show in ``dagster dev`` afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg

from edvmp_pipeline.assets.partitions import TAG_SOURCE, TAG_TRIGGER, videos_partitions
from edvmp_pipeline.catalog.store import FAILED, SUCCEEDED, Catalog, JobState
from edvmp_pipeline.dead_runs import process_tags, reap_dead_runs
from edvmp_pipeline.domain.content_hash import ContentHashCache
from edvmp_pipeline.domain.partition_keys import partition_key_for
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.domain.source_uri import SourceSpec, parse_source
from edvmp_pipeline.incidents import record_run_failure
from edvmp_pipeline.instance_home import get_instance
from edvmp_pipeline.resources.object_store import ObjectStoreResource, iter_folder
from edvmp_pipeline.resources.progress import ProgressReporter
from edvmp_pipeline.settings import DEFAULT_BATCH_SIZE, catalog_root, edvmp_home

ADD_PARTITIONS_BATCH = 1000


@dataclass
class IngestReport:
    """What one ingest saw and did."""

    source: str
    listed: int = 0
    new: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    known_failures: list[str] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    versions: dict[str, ObjectVersion] = field(default_factory=dict)
    states: dict[str, JobState] = field(default_factory=dict)

    @property
    def succeeded(self) -> list[str]:
        return [pk for pk in self.processed if self._status(pk) == SUCCEEDED]

    @property
    def failed(self) -> list[str]:
        return [pk for pk in self.processed if self._status(pk) != SUCCEEDED]

    def _status(self, pk: str) -> str | None:
        state = self.states.get(pk)
        return state.status if state else None

    @property
    def all_ok(self) -> bool:
        return not self.failed and not self.known_failures


def list_versions(spec: SourceSpec, store: ObjectStoreResource) -> list[ObjectVersion]:
    """Every object version currently in the source."""
    if spec.kind == "folder":
        assert spec.folder is not None
        with ContentHashCache(edvmp_home() / "content_hashes.sqlite") as cache:
            return list(iter_folder(spec.folder, cache))
    store.check_bucket(spec)
    return list(store.iter_s3(spec))


def add_partitions(instance: dg.DagsterInstance, keys: Sequence[str]) -> None:
    """Add dynamic partitions in batches (SQLite chokes on tens of thousands at once).

    Dagster's ``add_dynamic_partitions`` skips keys it has (a keyed lookup per batch), so
    nothing here reads the whole partition list.
    """
    wanted = list(dict.fromkeys(keys))
    for i in range(0, len(wanted), ADD_PARTITIONS_BATCH):
        instance.add_dynamic_partitions(
            videos_partitions.name, wanted[i : i + ADD_PARTITIONS_BATCH]
        )


def run_batches(
    instance: dg.DagsterInstance,
    keys: Sequence[str],
    *,
    source: str,
    batch_size: int,
    workers: int,
    force: bool = False,
    trigger: str = "edvmp-ingest",
    extra_tags: dict[str, str] | None = None,
    on_done: Callable[[str, bool], None] | None = None,
) -> list[str]:
    """Materialise ``video_metadata`` for ``keys`` in runs of up to ``batch_size`` versions.

    Each run targets the range of the dynamic partition list spanning its keys and is told,
    through run config, to touch only its own keys: other versions in that range belong to
    someone else (an earlier ingest, the sensor). A failed run's versions are classified
    into incidents right here, so this path needs no daemon.
    """
    from edvmp_pipeline.definitions import build_resources, defs
    from edvmp_pipeline.jobs import INGEST_JOB

    order = {k: i for i, k in enumerate(instance.get_dynamic_partitions(videos_partitions.name))}
    ordered = sorted(dict.fromkeys(keys), key=lambda k: order[k])
    job = defs.resolve_job_def(INGEST_JOB)
    run_ids = []
    for i in range(0, len(ordered), batch_size):
        batch = ordered[i : i + batch_size]
        result = job.execute_in_process(
            run_config={
                "ops": {
                    "video_metadata": {
                        "config": {"only": batch, "force": force, "workers": workers}
                    }
                },
                "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
            },
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": batch[0],
                "dagster/asset_partition_range_end": batch[-1],
                TAG_SOURCE: source,
                TAG_TRIGGER: trigger,
                **process_tags(),
                **(extra_tags or {}),
            },
            # Resources from the environment as it is now (the module-level Definitions read
            # it at import), plus this process's progress bar.
            resources={**build_resources(), "progress": ProgressReporter(on_done)},
            raise_on_error=False,
        )
        run_ids.append(result.run_id)
        if not result.success:
            run = instance.get_run_by_id(result.run_id)
            if run is not None:
                record_run_failure(instance, run, Catalog(catalog_root()))
    return run_ids


def partition_range(instance: dg.DagsterInstance, keys: Sequence[str]) -> str | None:
    """``FIRST...LAST``: the smallest range of the partition list covering ``keys``."""
    wanted = set(keys)
    ordered = [k for k in instance.get_dynamic_partitions(videos_partitions.name) if k in wanted]
    return f"{ordered[0]}...{ordered[-1]}" if ordered else None


def ingest(
    source_text: str,
    *,
    retry_failed: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 0,
    register_only: bool = False,
    on_listed: Callable[[int], None] | None = None,
    on_done: Callable[[str, bool], None] | None = None,
) -> IngestReport:
    """List ``source_text``, register new versions and process them. See module docstring.

    With ``register_only`` nothing is run: the versions to process are registered (catalog
    and dynamic partitions) and left for ``dagster asset materialize`` or a backfill.
    """
    spec = parse_source(source_text)
    from edvmp_pipeline.definitions import build_resources

    store = build_resources()["object_store"]
    assert isinstance(store, ObjectStoreResource)
    versions = list_versions(spec, store)
    report = IngestReport(source=spec.source, listed=len(versions))
    by_key = {partition_key_for(v.source, v.object_key, v.etag): v for v in versions}
    report.versions = by_key
    catalog = Catalog(catalog_root()).ensure()
    states = catalog.job_states(list(by_key))

    todo = []
    for pk in by_key:
        state = states.get(pk)
        if state is None:
            report.new.append(pk)
            todo.append(pk)
        elif state.status == SUCCEEDED:
            report.skipped.append(pk)
        elif state.status == FAILED and not retry_failed:
            report.known_failures.append(pk)
        else:
            # FAILED with --retry-failed, or PENDING/RUNNING left by an interrupted run.
            todo.append(pk)
    if on_listed is not None:
        on_listed(len(todo))

    instance = get_instance()
    reap_dead_runs(instance, catalog)
    catalog.register(((pk, by_key[pk]) for pk in report.new), registered_by="edvmp-ingest")
    add_partitions(instance, todo)
    report.processed = todo
    if register_only:
        report.states = catalog.job_states(list(by_key))
        return report
    if todo:
        report.run_ids = run_batches(
            instance,
            todo,
            source=spec.source,
            batch_size=batch_size,
            workers=workers,
            on_done=on_done,
        )
    report.states = catalog.job_states(list(by_key))
    catalog.write_database_file()
    return report
