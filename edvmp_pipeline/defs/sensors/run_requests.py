"""Turning newly seen object versions into Dagster requests (shared by both sensors).

Idempotency: the ``run_key`` is ``bucket/key@etag``, so Dagster itself refuses to launch the
same object version twice, whatever re-lists, restarts or duplicate events happen. A version
is registered in the state store (PENDING, insert-if-absent) in the same tick that requests
its run; a version still PENDING on a later tick is requested again with its partition, which
is harmless (same run key, existing partition) and covers a daemon that died between writing
the store and storing the tick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import dagster as dg

from edvmp_pipeline.catalog.store import FAILED, PENDING, Catalog
from edvmp_pipeline.defs.partitions import videos_partitions
from edvmp_pipeline.defs.tags import RUN_KEY_TAG, TAG_ETAG, TAG_OBJECT_KEY, TAG_SOURCE, TAG_TRIGGER
from edvmp_pipeline.domain.partition_keys import partition_key_for
from edvmp_pipeline.domain.records import ObjectVersion
from edvmp_pipeline.services.ingest import missing_but_back

# Dagster tag values are limited in length; keys beyond this are in the catalog anyway.
_TAG_MAX = 1000


def run_key_for(version: ObjectVersion, attempt: int | None = None) -> str:
    """The idempotency key of one object version's run (``#attempt`` for a re-request of a
    version that failed as missing and is back)."""
    key = f"{version.source.removeprefix('s3://')}/{version.object_key}@{version.etag}"
    return key if attempt is None else f"{key}#{attempt}"


def run_request_for(
    pk: str, version: ObjectVersion, trigger: str, attempt: int | None = None
) -> dg.RunRequest:
    """A single-version run request with the raw identity in its tags."""
    return dg.RunRequest(
        run_key=run_key_for(version, attempt),
        partition_key=pk,
        tags={
            TAG_SOURCE: version.source,
            TAG_OBJECT_KEY: version.object_key[:_TAG_MAX],
            TAG_ETAG: version.etag,
            TAG_TRIGGER: trigger,
        },
    )


@dataclass
class Requests:
    """What one tick asks Dagster for, and what it already registered in the catalog."""

    run_requests: list[dg.RunRequest] = field(default_factory=list)
    new_partitions: list[str] = field(default_factory=list)
    new_versions: list[tuple[str, ObjectVersion]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.run_requests)

    def add_request(self) -> list[dg.AddDynamicPartitionsRequest]:
        """The dynamic-partition request for this tick (empty when nothing is new)."""
        if not self.new_partitions:
            return []
        return [videos_partitions.build_add_request(self.new_partitions)]


def known_states(catalog: Catalog, versions: Sequence[ObjectVersion]) -> dict[str, str]:
    """partition key → current job status of those of ``versions`` the catalog knows.

    One batched keyed lookup (a listing page is at most 1,000 versions): the cost of a tick
    follows what it lists, not how many versions the catalog holds.
    """
    keys = [partition_key_for(v.source, v.object_key, v.etag) for v in versions]
    return catalog.state.statuses(keys)


def missing_but_listed(catalog: Catalog, states: Mapping[str, str]) -> dict[str, int]:
    """partition key → attempt number, for the FAILED versions of ``states`` (all of them
    just listed, or announced by an event) that failed only because the object was missing
    (:func:`~edvmp_pipeline.services.ingest.missing_but_back`). One batched read, and only
    when the page has FAILED versions."""
    failed = [pk for pk, status in states.items() if status == FAILED]
    if not failed:
        return {}
    return {
        pk: state.attempts + 1
        for pk, state in catalog.job_states(failed).items()
        if missing_but_back(state)
    }


def plan_requests(
    versions: Sequence[ObjectVersion],
    states: dict[str, str],
    *,
    trigger: str,
    limit: int,
    launched: Callable[[Sequence[str]], set[str]] | None = None,
    retry: Mapping[str, int] | None = None,
) -> tuple[Requests, int]:
    """Requests for the versions not yet processed, at most ``limit`` of them.

    Returns the requests and how many of ``versions`` were consumed (all of them unless the
    limit stopped the plan early), so a caller can resume after the last consumed one.
    ``launched(run_keys)`` tells, in one batched lookup, which PENDING versions' runs
    already exist: those are consumed
    without a request, so that a backlog of queued runs does not use up ``limit`` on every
    sweep (which would stall finding new objects behind them).
    ``retry`` (partition key → attempt, from :func:`missing_but_listed`) names FAILED
    versions to request again, under the run key ``…#attempt``.
    """
    requests = Requests()
    consumed = 0
    retry = retry or {}
    keyed = [(partition_key_for(v.source, v.object_key, v.etag), v) for v in versions]

    def attempt_of(pk: str) -> int | None:
        return retry.get(pk) if states.get(pk) == FAILED else None

    asked = [
        run_key_for(v, attempt_of(pk))
        for pk, v in keyed
        if states.get(pk) == PENDING or attempt_of(pk) is not None
    ]
    already = launched(asked) if launched is not None and asked else set()
    for pk, version in keyed:
        status = states.get(pk)
        attempt = attempt_of(pk)
        if (status == PENDING or attempt is not None) and run_key_for(version, attempt) in already:
            consumed += 1
            continue
        if status is None or status == PENDING or attempt is not None:
            if len(requests) >= limit:
                break
            requests.run_requests.append(run_request_for(pk, version, trigger, attempt))
            # A PENDING version asks for its partition again: the tick that registered it
            # may have died before Dagster added the partition, and a run request for an
            # unknown partition fails the whole tick. Adding an existing one is a no-op.
            requests.new_partitions.append(pk)
            if status is None:
                requests.new_versions.append((pk, version))
                states[pk] = PENDING
        consumed += 1
    return requests, consumed


def launched_run_keys(instance: dg.DagsterInstance | None, run_keys: Sequence[str]) -> set[str]:
    """Those of ``run_keys`` the instance already has a run for, whoever created it.

    One query for a whole page (a tag filter with a list of values): the cost follows the
    PENDING versions a tick sees, not how many runs the instance holds.
    """
    wanted = {k for k in run_keys if k}
    if not wanted or instance is None:
        return set()
    runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: sorted(wanted)}))
    return {run.tags.get(RUN_KEY_TAG, "") for run in runs} & wanted


def drop_already_launched(instance: dg.DagsterInstance | None, requests: Requests) -> None:
    """Drop re-requests of PENDING versions whose run already exists.

    Dagster dedupes run keys per sensor only, so with both sensors (or a sensor and
    ``edvmp ingest``) running, a re-requested PENDING version could get a second run.
    """
    new = {pk for pk, _ in requests.new_versions}
    already = launched_run_keys(
        instance,
        [rr.run_key for rr in requests.run_requests if rr.partition_key not in new and rr.run_key],
    )
    requests.run_requests = [rr for rr in requests.run_requests if rr.run_key not in already]
    kept = {rr.partition_key for rr in requests.run_requests}
    requests.new_partitions = [pk for pk in requests.new_partitions if pk in kept]


def register(catalog: Catalog, requests: Requests, registered_by: str) -> None:
    """Record the tick's new versions as PENDING jobs before Dagster sees the requests."""
    catalog.register(requests.new_versions, registered_by=registered_by)
