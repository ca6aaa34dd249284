"""``edvmp ingest``: catalogue every new version of a folder or bucket through Dagster.

It lists the source, registers each new version (catalog + dynamic partition), then
materialises ``video_metadata`` in a few large runs on the persistent instance, so that a big
folder is not paid for in run start-ups and the runs show in ``dagster dev`` afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from edvmp_pipeline.adapters.content_hash import ContentHashCache
from edvmp_pipeline.adapters.object_store import (
    ObjectStoreResource,
    SkippedEntry,
    list_folder,
    object_store_from_env,
)
from edvmp_pipeline.catalog.opening import open_catalog
from edvmp_pipeline.catalog.state_store import utcnow
from edvmp_pipeline.catalog.store import FAILED, SUCCEEDED, Catalog, JobState
from edvmp_pipeline.domain.errors import ObjectMissing
from edvmp_pipeline.domain.partition_keys import partition_key_for
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.domain.source_uri import SourceSpec, parse_source
from edvmp_pipeline.services.pipeline_runs import PipelineRuns
from edvmp_pipeline.settings import (
    DEFAULT_BATCH_SIZE,
    analysis_enabled,
    catalog_root,
    dagster_home,
    edvmp_home,
)

ADD_PARTITIONS_BATCH = 1000
# A version that failed as object_missing and is listed again is taken again up to this
# many attempts in all: enough for a delete-and-restore, bounded should a store list a key
# that its HEAD keeps answering 404 for.
MISSING_RETRY_ATTEMPTS = 3


def missing_but_back(state: JobState) -> bool:
    """Whether a version just listed (or announced by an event) failed only because its
    object was missing: being listed proves the object is back with that ETag (deleted and
    restored, or replaced and replaced back), so the failure no longer holds, and without
    another attempt the version would never be catalogued. The ingest and both sensors
    take such a version again, a bounded number of times."""
    return (
        state.status == FAILED
        and state.error_class == ObjectMissing.error_class
        and state.attempts < MISSING_RETRY_ATTEMPTS
    )


@dataclass
class IngestReport:
    """What one ingest saw and did."""

    source: str
    prefix: str = ""
    """The part of the bucket listed (the source of its versions is the bucket)."""
    listed: int = 0
    new: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    to_analyse: list[str] = field(default_factory=list)
    """SUCCEEDED versions taken again only for the media analysis (EDVMP_ANALYSIS=on)."""
    known_failures: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    """FAILED versions taken again (``--retry-failed``)."""
    pending: list[str] = field(default_factory=list)
    """Versions registered but not processed yet (by `edvmp register`, or an ingest or run
    that stopped first), processed now."""
    unlisted: list[str] = field(default_factory=list)
    """PENDING versions of the source registered before this listing whose object it did not
    list as that version (deleted, or replaced, since): processed, so that their run records
    what became of them instead of leaving them PENDING for ever."""
    processed: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    versions: dict[str, ObjectVersion] = field(default_factory=dict)
    states: dict[str, JobState] = field(default_factory=dict)
    skipped_entries: list[SkippedEntry] = field(default_factory=list)
    """Folder entries that are not objects (symlinks out of the folder, loops, FIFOs,
    folders that could not be listed ...), each with its reason. Not to be confused with
    ``skipped``, the versions already catalogued."""

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
    def incomplete(self) -> list[SkippedEntry]:
        """Skipped entries that may hide objects: the listing was not the whole source."""
        return [e for e in self.skipped_entries if e.incomplete]

    @property
    def all_ok(self) -> bool:
        """Every object of the source is catalogued: nothing failed, nothing left unlisted."""
        return not self.failed and not self.known_failures and not self.incomplete


def list_versions(
    spec: SourceSpec, store: ObjectStoreResource
) -> tuple[list[ObjectVersion], list[SkippedEntry]]:
    """Every object version currently in the source, and the folder entries that are not
    objects (always none for a bucket)."""
    if spec.kind == "folder":
        assert spec.folder is not None
        home = edvmp_home()
        with ContentHashCache(home / "content_hashes.sqlite") as cache:
            listing = list_folder(spec.folder, cache, (home, dagster_home(), catalog_root()))
        return listing.versions, listing.skipped
    store.check_bucket(spec)
    return list(store.iter_s3(spec)), []


def _analysed(state: JobState) -> bool:
    return state.analysed_at is not None and (
        state.metadata_at is None or state.analysed_at >= state.metadata_at
    )


def ingest(
    source_text: str,
    *,
    runs: PipelineRuns,
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
    # Before anything is listed or registered: a bad setting must not leave versions behind.
    runs.check_settings()
    store = object_store_from_env()
    listing_started = utcnow()
    versions, skipped_entries = list_versions(spec, store)
    report = IngestReport(
        source=spec.source,
        prefix=spec.prefix,
        listed=len(versions),
        skipped_entries=skipped_entries,
    )
    by_key = {partition_key_for(v.source, v.object_key, v.etag): v for v in versions}
    report.versions = by_key
    catalog = open_catalog(create=True)
    # First, so that versions an earlier ingest left RUNNING when it was killed are FAILED
    # by their dead run, and this pass can tell them from versions that failed on their own.
    reaped = set(runs.reap_dead_runs(catalog))
    states = catalog.job_states(list(by_key))
    analysis = analysis_enabled()

    todo = []
    interrupted = []
    for pk in by_key:
        state = states.get(pk)
        if state is None:
            report.new.append(pk)
            todo.append(pk)
        elif state.status == SUCCEEDED and analysis and not _analysed(state):
            # Catalogued before the analysis was on: only its analysis (and checks) are due.
            report.to_analyse.append(pk)
            todo.append(pk)
        elif state.status == SUCCEEDED:
            report.skipped.append(pk)
        elif state.status == FAILED and state.run_id in reaped and not retry_failed:
            # Interrupted (its process was killed), not failed: finish it now.
            interrupted.append(pk)
            report.pending.append(pk)
            todo.append(pk)
        elif missing_but_back(state):
            # Passed as interrupted: taken even without --retry-failed.
            interrupted.append(pk)
            report.retried.append(pk)
            todo.append(pk)
        elif state.status == FAILED and not retry_failed:
            report.known_failures.append(pk)
        elif state.status == FAILED:
            report.retried.append(pk)
            todo.append(pk)
        else:
            # PENDING/RUNNING: registered by an ingest that stopped before its run finished.
            report.pending.append(pk)
            todo.append(pk)
    if not report.incomplete:
        for state in unlisted_pending(catalog, spec, set(by_key), listing_started):
            report.unlisted.append(state.partition_key)
            report.versions[state.partition_key] = state.version
            todo.append(state.partition_key)
    if on_listed is not None:
        on_listed(len(todo))

    catalog.register(((pk, by_key[pk]) for pk in report.new), registered_by="edvmp-ingest")
    runs.add_partitions(todo)
    report.processed = todo
    if register_only:
        report.states = catalog.job_states(list(report.versions))
        return report
    if todo:
        report.run_ids = runs.run_batches(
            todo,
            source=spec.source,
            batch_size=batch_size,
            workers=workers,
            retry_failed=retry_failed,
            interrupted=interrupted,
            on_done=on_done,
        )
    report.states = catalog.job_states(list(report.versions))
    catalog.write_database_file()
    return report


def unlisted_pending(
    catalog: Catalog, spec: SourceSpec, listed: set[str], listing_started: datetime
) -> list[JobState]:
    """PENDING versions in the part of the source just listed, registered before the
    listing began, that the listing did not return: their object was deleted or replaced
    in between (an ingest or ``edvmp register`` stopped before processing them). No later
    listing would return them either. The cost is the number of PENDING versions."""
    return [
        state
        for state in catalog.state.pending_versions()
        if state.source == spec.source
        and state.object_key.startswith(spec.prefix)
        and state.partition_key not in listed
        and state.registered_at is not None
        and state.registered_at < listing_started
    ]
