"""The state store on DynamoDB (``EDVMP_STATE=dynamodb``): the same contract as SQLite.

Every conditional transition of :class:`SqliteStateStore` is a conditional write here: a
version is put only ``attribute_not_exists(partition_key)``; a claim, a finish or a release
updates it only while its status (and run id) are what the caller read, inside a
``TransactWriteItems`` that also moves the status counters and the operational counters,
so a count can never disagree with the items it counts. Two writers racing on one version:
one transaction wins, the other's condition fails and it re-reads (optimistic concurrency).

Tables (``<prefix>`` = ``EDVMP_DYNAMODB_TABLE_PREFIX``, default ``edvmp-``), all keyed so that
every hot path is a ``GetItem``/``BatchGetItem`` or a ``Query`` on an index, never a scan:

=====================  =====================  ==============================================
table                  key                    indexes (partition key, sort key)
=====================  =====================  ==============================================
``versions``           ``partition_key``      ``by_object`` (source_object, registered_at),
                                              ``by_run`` (run_id), ``by_status`` (status,
                                              age_us)
``incidents``          ``incident_id``        ``by_version`` (partition_key, last_seen),
                                              ``by_due`` (status, next_attempt_at),
                                              ``by_fingerprint`` (fingerprint),
                                              ``by_class`` (failure_class), ``by_recency``
                                              (feed, last_seen), ``by_object`` (source_object,
                                              last_seen)
``incident_runs``      ``run_id`` +           ``by_version`` (partition_key, run_id)
                       ``incident_id``
``violations``         ``rule_id`` +          —
                       ``partition_key``
``fingerprints``       ``partition_key``      — (rate_hz, hashes as binary: 8 bytes a frame)
``fingerprint_buckets`` ``bucket`` +          — (one Query per bucket of a new version's
                       ``partition_key``      fingerprint: near-duplicate candidates)
``upload_jobs``        ``job_id``             ``by_owner`` (owner, created_at)
``meta``               ``name``               — (status counts, operational counters,
                                              bookkeeping)
=====================  =====================  ==============================================

Times are integer microseconds since the epoch (exact, sortable), as in SQLite. Throttling
(``ProvisionedThroughputExceededException``, ``ThrottlingException``, throttled or
conflicting transactions) is retried with jittered exponential backoff by :func:`retrying`.

The whole-table reads (``iter_jobs``, ``iter_incidents``: the ``jobs`` and ``incidents``
views of ``edvmp query``) are scans: analytic queries, never on a hot path.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from edvmp_pipeline.catalog import operational_counters as counters
from edvmp_pipeline.catalog.claimants import pid_alive
from edvmp_pipeline.catalog.state_store import (
    FAILED,
    INCIDENT_COLUMNS,
    INCIDENT_TIME_COLUMNS,
    JOB_COLUMNS,
    JOB_TIME_COLUMNS,
    OPEN,
    PENDING,
    RESOLVED,
    RUNNING,
    STEP_COLUMNS,
    SUCCEEDED,
    SUPERSEDED,
    Incident,
    JobState,
    NewIncident,
    claimant,
    datetime_to_us,
    us_to_datetime,
    utcnow,
)
from edvmp_pipeline.catalog.upload_jobs import COLUMNS as UPLOAD_COLUMNS
from edvmp_pipeline.catalog.upload_jobs import TIMES as UPLOAD_TIMES
from edvmp_pipeline.catalog.upload_jobs import UploadJob
from edvmp_pipeline.domain.errors import ConfigError, StoreUnreachable
from edvmp_pipeline.domain.fingerprints import Fingerprint, bucket_ids
from edvmp_pipeline.domain.records import ObjectVersion

T = TypeVar("T")
TABLES = (
    "versions", "incidents", "incident_runs", "violations", "fingerprints",
    "fingerprint_buckets", "upload_jobs", "meta",
)  # fmt: skip
STATUSES = (PENDING, RUNNING, SUCCEEDED, FAILED)
_THROTTLED = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
}
# Cancellation reasons of a transaction worth trying again (not a failed condition).
_RETRY_REASONS = {"ThrottlingError", "TransactionConflict", "ProvisionedThroughputExceeded"}
MAX_ATTEMPTS = 8
# BatchGetItem takes 100 keys; TransactWriteItems 100 actions.
_BATCH = 100
# Only the feed of every incident (by_recency) shares one index partition key.
_FEED = "all"


class ConditionLost(Exception):
    """A conditional write's condition did not hold (another writer got there first)."""


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _cancel_reasons(exc: Exception) -> list[str]:
    response = getattr(exc, "response", None) or {}
    return [str(r.get("Code", "")) for r in response.get("CancellationReasons", []) or []]


def retrying(
    call: Callable[[], T],
    *,
    attempts: int = MAX_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, retried with jittered exponential backoff while DynamoDB throttles it.

    A transaction cancelled only by throttling or a conflicting transaction is retried; one
    cancelled by a failed condition raises :class:`ConditionLost` at once (the caller
    re-reads). Other errors propagate; an unreachable endpoint becomes
    :class:`StoreUnreachable`.
    """
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    for attempt in range(attempts):
        try:
            return call()
        except ClientError as exc:
            code = _code(exc)
            if code == "ConditionalCheckFailedException":
                raise ConditionLost(str(exc)) from None
            if code == "TransactionCanceledException":
                reasons = {r for r in _cancel_reasons(exc) if r and r != "None"}
                if "ConditionalCheckFailed" in reasons or not reasons <= _RETRY_REASONS:
                    raise ConditionLost(str(exc)) from None
            elif code not in _THROTTLED:
                raise
            if attempt == attempts - 1:
                raise StoreUnreachable(
                    f"DynamoDB kept throttling after {attempts} attempts ({code})"
                ) from None
        except EndpointConnectionError as exc:
            raise StoreUnreachable(f"DynamoDB endpoint unreachable: {exc}") from None
        except BotoCoreError as exc:
            if attempt == attempts - 1:
                raise StoreUnreachable(f"DynamoDB request failed: {exc}") from None
        sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random() / 2))  # nosec B311
    raise AssertionError("unreachable")


def _num(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _num(v) for k, v in item.items()}


def _job(item: Mapping[str, Any]) -> JobState:
    item = _plain(item)
    values = {c: item.get(c) for c in JOB_COLUMNS}
    for c in JOB_TIME_COLUMNS:
        values[c] = us_to_datetime(values[c])
    values["attempts"] = int(values.get("attempts") or 0)
    return JobState(**values)


def _age_order(state: JobState) -> tuple[int, int]:
    """Versions of one object in upload order (the SQLite store's): upload time, none
    first, then registration."""
    return (datetime_to_us(state.last_modified) or 0, datetime_to_us(state.registered_at) or 0)


def _incident(item: Mapping[str, Any]) -> Incident:
    item = _plain(item)
    values = {c: item.get("failure_class" if c == "class" else c) for c in INCIDENT_COLUMNS}
    for c in INCIDENT_TIME_COLUMNS:
        values[c] = us_to_datetime(values[c])
    values["failure_class"] = values.pop("class")
    values["retryable"] = bool(values["retryable"])
    values["redrives"] = int(values.get("redrives") or 0)
    return Incident(**values)


def _clean(item: Mapping[str, Any]) -> dict[str, Any]:
    """Without None values (DynamoDB stores absent attributes, and index keys must be)."""
    return {k: (Decimal(str(v)) if isinstance(v, float) else v) for k, v in item.items()
            if v is not None}  # fmt: skip


def _age(item: Mapping[str, Any]) -> int:
    return int(item.get("last_modified") or item.get("registered_at") or 0)


class DynamoDbStateStore:
    """The state store in DynamoDB tables (see the module doc for the key design)."""

    def __init__(
        self,
        *,
        table_prefix: str = "edvmp-",
        endpoint_url: str | None = None,
        region: str | None = None,
        create_tables: bool = False,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.prefix = table_prefix
        config = Config(
            connect_timeout=5,
            read_timeout=20,
            # botocore's own throttling retries first; transactions get ours on top.
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=32,
        )
        session = boto3.session.Session()
        kwargs: dict[str, Any] = {
            "endpoint_url": endpoint_url or None,
            "region_name": region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            "config": config,
        }
        self._resource = session.resource("dynamodb", **kwargs)
        # A plain client: the resource's own client serialises attribute values itself,
        # and the transactions here are written in DynamoDB's typed form.
        self._client = session.client("dynamodb", **kwargs)
        from boto3.dynamodb.types import TypeSerializer

        self._ser = TypeSerializer()
        self.t = {name: self._resource.Table(f"{table_prefix}{name}") for name in TABLES}
        if create_tables:
            self.ensure_tables()

    # -- set-up ---------------------------------------------------------------------------
    def ensure_tables(self) -> None:
        """Create the tables and indexes that do not exist yet (local servers, tests);
        on AWS the Terraform in deploy/ creates them."""
        from edvmp_pipeline.catalog.dynamodb_tables import table_definitions

        existing = set(retrying(lambda: self._client.list_tables()["TableNames"]))
        for _name, definition in table_definitions(self.prefix).items():
            if definition["TableName"] in existing:
                continue
            try:
                retrying(lambda d=definition: self._client.create_table(**d))
            except ConditionLost:
                continue
            except Exception as exc:
                if _code(exc) != "ResourceInUseException":  # a racing creator won
                    raise
            self._client.get_waiter("table_exists").wait(TableName=definition["TableName"])

    def _serialize(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._ser.serialize(v) for k, v in _clean(item).items()}

    def _transact(self, actions: list[dict[str, Any]]) -> None:
        for i in range(0, len(actions), _BATCH):
            chunk = actions[i : i + _BATCH]
            retrying(lambda c=chunk: self._client.transact_write_items(TransactItems=c))

    def _counter_actions(
        self, deltas: Iterable[tuple[str, Mapping[str, str] | None, float]]
    ) -> list[dict[str, Any]]:
        merged: dict[str, float] = {}
        for name, labels, by in deltas:
            key = f"c|{name}|{counters.label_text(labels)}"
            merged[key] = merged.get(key, 0.0) + by
        return [
            {
                "Update": {
                    "TableName": self.t["meta"].name,
                    "Key": {"name": {"S": key}},
                    "UpdateExpression": "ADD #v :by",
                    "ExpressionAttributeNames": {"#v": "value"},
                    "ExpressionAttributeValues": {":by": {"N": repr(by)}},
                }
            }
            for key, by in merged.items()
            if by
        ]

    def _failed_counter(self, _item: Any = None) -> list[dict[str, Any]]:
        """The counter update of one version finishing FAILED (joins its transition)."""
        return self._counter_actions([(counters.FINISHED, {"status": FAILED}, 1.0)])

    def _status_moves(self, moves: Mapping[str, int]) -> list[dict[str, Any]]:
        return self._counter_actions((f"status|{s}", None, float(n)) for s, n in moves.items())

    # -- meta -----------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """A value of the store's own bookkeeping."""
        item = retrying(lambda: self.t["meta"].get_item(Key={"name": f"m|{key}"})).get("Item")
        return str(item["text"]) if item else None

    def set_meta(self, key: str, value: str) -> None:
        """Set a bookkeeping value."""
        retrying(lambda: self.t["meta"].put_item(Item={"name": f"m|{key}", "text": value}))

    # -- versions -------------------------------------------------------------------------
    def _version_item(self, pk: str, v: ObjectVersion, registered_by: str, now: int) -> dict:
        item = {
            "partition_key": pk,
            "source": v.source,
            "object_key": v.object_key,
            "source_object": f"{v.source}|{v.object_key}",
            "etag": v.etag,
            "size_bytes": v.size_bytes,
            "last_modified": datetime_to_us(v.last_modified),
            "registered_at": now,
            "registered_by": registered_by,
            "status": PENDING,
            "attempts": 0,
            "updated_at": now,
        }
        item["age_us"] = _age(item)
        return item

    def register(
        self, versions: Iterable[tuple[str, ObjectVersion]], registered_by: str
    ) -> list[str]:
        """Put versions that are absent as PENDING; returns the keys actually inserted."""
        now = datetime_to_us(utcnow())
        assert now is not None
        pairs = list(dict(versions).items())
        if not pairs:
            return []
        known = set(self.statuses([pk for pk, _ in pairs]))

        def put(pair: tuple[str, ObjectVersion]) -> str | None:
            pk, v = pair
            item = self._version_item(pk, v, registered_by, now)
            try:
                self._transact(
                    [
                        {
                            "Put": {
                                "TableName": self.t["versions"].name,
                                "Item": self._serialize(item),
                                "ConditionExpression": "attribute_not_exists(partition_key)",
                            }
                        },
                        *self._status_moves({PENDING: 1}),
                    ]
                )
            except ConditionLost:
                return None
            return pk

        fresh = [p for p in pairs if p[0] not in known]
        return [pk for pk in self._map(put, fresh) if pk is not None]

    def _map(self, fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
        if len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
            return list(pool.map(fn, items))

    def _get_items(self, partition_keys: Sequence[str], projection: str | None = None) -> list:
        keys = list(dict.fromkeys(partition_keys))
        out: list[dict[str, Any]] = []
        for i in range(0, len(keys), _BATCH):
            request: dict[str, Any] = {"Keys": [{"partition_key": k} for k in keys[i : i + _BATCH]]}
            if projection:
                request["ProjectionExpression"] = projection
                request["ExpressionAttributeNames"] = {"#s": "status"}
            pending = {self.t["versions"].name: request}
            while pending:
                answer = retrying(lambda p=pending: self._resource.batch_get_item(RequestItems=p))
                out += answer["Responses"].get(self.t["versions"].name, [])
                pending = answer.get("UnprocessedKeys") or {}
                if pending:
                    time.sleep(0.05)
        return out

    def get(self, partition_key: str) -> JobState | None:
        """One version by partition key (a GetItem)."""
        answer = retrying(
            lambda: self.t["versions"].get_item(
                Key={"partition_key": partition_key}, ConsistentRead=True
            )
        )
        return _job(answer["Item"]) if "Item" in answer else None

    def get_many(self, partition_keys: Sequence[str]) -> dict[str, JobState]:
        """Versions by partition key, in BatchGetItem calls of 100 keys."""
        return {i["partition_key"]: _job(i) for i in self._get_items(partition_keys)}

    def statuses(self, partition_keys: Sequence[str]) -> dict[str, str]:
        """Only the status of each known version (what a sensor tick needs), batched."""
        items = self._get_items(partition_keys, projection="partition_key, #s")
        return {i["partition_key"]: i["status"] for i in items}

    def _move(
        self,
        pk: str,
        *,
        expect: Callable[[dict[str, Any]], bool],
        update: str,
        values: Mapping[str, Any],
        new_status: str | None,
        also_write: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None,
        remove: Sequence[str] = (),
    ) -> dict[str, Any] | None:
        """Read a version, and while ``expect(item)`` holds, apply ``update`` conditioned on
        the status (and run id) read; re-read when another writer got there first. Returns
        the item as read before the move, or None when there was nothing to move."""
        for _ in range(MAX_ATTEMPTS):
            got = retrying(
                lambda: self.t["versions"].get_item(Key={"partition_key": pk}, ConsistentRead=True)
            )
            item = got.get("Item")
            if item is None or not expect(_plain(item)):
                return None
            item = _plain(item)
            names = {"#s": "status", "#r": "run_id", "#e": "error"}
            attr_values = {f":{k}": v for k, v in values.items()}
            attr_values[":was"] = item["status"]
            condition = "#s = :was"
            if item.get("run_id") is None:
                condition += " AND attribute_not_exists(#r)"
            else:
                attr_values[":was_run"] = item["run_id"]
                condition += " AND #r = :was_run"
            expression = update + (f" REMOVE {', '.join(remove)}" if remove else "")
            action = {
                "Update": {
                    "TableName": self.t["versions"].name,
                    "Key": {"partition_key": {"S": pk}},
                    "UpdateExpression": expression,
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {
                        k: v for k, v in names.items() if k in expression + condition
                    },
                    "ExpressionAttributeValues": {
                        k: self._ser.serialize(_clean({"v": v}).get("v"))
                        for k, v in attr_values.items()
                    },
                }
            }
            moves: dict[str, int] = {}
            if new_status is not None and new_status != item["status"]:
                moves = {item["status"]: -1, new_status: 1}
            actions = [
                action,
                *self._status_moves(moves),
                *(also_write(item) if also_write else []),
            ]
            try:
                self._transact(actions)
            except ConditionLost:
                continue
            return item
        raise StoreUnreachable(f"version {pk}: too many concurrent writers, gave up")

    def claim(
        self,
        partition_keys: Sequence[str],
        run_id: str,
        *,
        force: bool = False,
        retry_failed: bool = True,
    ) -> dict[str, JobState]:
        """Move the claimable versions to RUNNING for ``run_id`` (the SQLite rules)."""
        host = socket.gethostname()
        me = claimant()

        def takeable(item: dict[str, Any]) -> bool:
            status, holder = item["status"], item.get("claimed_by") or ""
            if status == PENDING or (status == FAILED and retry_failed):
                return True
            if force and status == SUCCEEDED:
                return True
            if status == RUNNING:
                holder_host, _, pid = holder.rpartition(":")
                dead = holder_host == host and pid.isdigit() and not pid_alive(int(pid))
                return item.get("run_id") == run_id or dead or not holder
            return False

        def one(pk: str) -> tuple[str, JobState] | None:
            now = datetime_to_us(utcnow())
            before = self._move(
                pk,
                expect=takeable,
                update="SET #s = :status, #r = :run, claimed_by = :me, started_at = :now, "
                "updated_at = :now ADD attempts :one",
                values={"status": RUNNING, "run": run_id, "me": me, "now": now, "one": 1},
                new_status=RUNNING,
                remove=("finished_at", "error_class", "#e"),
            )
            if before is None:
                return None
            state = self.get(pk)
            return (pk, state) if state is not None else None

        results = self._map(one, list(dict.fromkeys(partition_keys)))
        return dict(r for r in results if r is not None)

    def _held(self, run_id: str, statuses: Sequence[str] = (RUNNING,)) -> Callable[[dict], bool]:
        return lambda item: item["status"] in statuses and item.get("run_id") == run_id

    def mark_probed(
        self,
        partition_keys: Sequence[str],
        run_id: str,
        *,
        result_file: str | None = None,
        probe_seconds: Mapping[str, float] | None = None,
    ) -> list[str]:
        """Record that this run landed the metadata of versions it holds (still RUNNING)."""
        now = datetime_to_us(utcnow())

        def one(pk: str) -> str | None:
            seconds = (probe_seconds or {}).get(pk)
            deltas = (
                counters.histogram_deltas(
                    counters.PROBE_DURATION, [seconds], counters.PROBE_BUCKETS
                )
                if seconds is not None
                else []
            )
            update = "SET metadata_at = :now, updated_at = :now"
            values: dict[str, Any] = {"now": now}
            if result_file is not None:
                update += ", result_file = :file"
                values["file"] = result_file
            moved = self._move(
                pk,
                expect=self._held(run_id),
                update=update,
                values=values,
                new_status=None,
                also_write=lambda _item: self._counter_actions(deltas),
            )
            return pk if moved is not None else None

        return [pk for pk in self._map(one, list(dict.fromkeys(partition_keys))) if pk]

    def mark_succeeded(self, partition_keys: Sequence[str], run_id: str) -> list[str]:
        """RUNNING → SUCCEEDED, only for versions this run holds; resolves their incidents."""

        def one(pk: str) -> str | None:
            now = datetime_to_us(utcnow())
            assert now is not None

            def also_write(item: dict[str, Any]) -> list[dict[str, Any]]:
                latency = (now - _age(item)) / 1e6
                return self._counter_actions(
                    [
                        (counters.FINISHED, {"status": SUCCEEDED}, 1.0),
                        *counters.histogram_deltas(
                            counters.UPLOAD_TO_SUCCEEDED, [latency], counters.LATENCY_BUCKETS
                        ),
                    ]
                )

            moved = self._move(
                pk,
                expect=self._held(run_id),
                update="SET #s = :status, finished_at = :now, updated_at = :now",
                values={"status": SUCCEEDED, "now": now},
                new_status=SUCCEEDED,
                also_write=also_write,
                remove=("claimed_by",),
            )
            if moved is None:
                return None
            for inc in self._incidents_of_version(pk):
                if inc["status"] != RESOLVED:
                    self._set_incident_status(inc["incident_id"], RESOLVED)
            # A good new version of the object replaces the broken older ones.
            for older in self._older_versions(_job(moved)):
                for inc in self._incidents_of_version(older):
                    if inc["status"] == OPEN:
                        self._set_incident_status(inc["incident_id"], SUPERSEDED)
            return pk

        return [pk for pk in self._map(one, list(dict.fromkeys(partition_keys))) if pk]

    def release(self, partition_keys: Sequence[str], run_id: str) -> list[str]:
        """RUNNING → PENDING for versions this run holds but did not finish."""
        now = datetime_to_us(utcnow())

        def one(pk: str) -> str | None:
            moved = self._move(
                pk,
                expect=self._held(run_id),
                update="SET #s = :status, updated_at = :now",
                values={"status": PENDING, "now": now},
                new_status=PENDING,
                remove=("claimed_by",),
            )
            return pk if moved is not None else None

        return [pk for pk in self._map(one, list(dict.fromkeys(partition_keys))) if pk]

    def mark_failed(self, failures: Mapping[str, tuple[str, str]], run_id: str) -> list[str]:
        """→ FAILED with (class, message), only for versions this run holds or finished."""
        now = datetime_to_us(utcnow())

        def one(pair: tuple[str, tuple[str, str]]) -> str | None:
            pk, (error_class, error) = pair
            moved = self._move(
                pk,
                expect=self._held(run_id, (RUNNING, SUCCEEDED)),
                update="SET #s = :status, error_class = :cls, #e = :err, finished_at = :now, "
                "updated_at = :now",
                values={"status": FAILED, "cls": error_class, "err": error, "now": now},
                new_status=FAILED,
                also_write=self._failed_counter,
                remove=("claimed_by",),
            )
            return pk if moved is not None else None

        return [pk for pk in self._map(one, list(failures.items())) if pk]

    def mark_done(self, step: str, partition_keys: Sequence[str]) -> None:
        """Record that ``step`` ("summary", "checked" or "analysis") finished for these
        versions."""
        column = STEP_COLUMNS[step]
        now = datetime_to_us(utcnow())

        def one(pk: str) -> None:
            with contextlib.suppress(ConditionLost):
                retrying(
                    lambda: self.t["versions"].update_item(
                        Key={"partition_key": pk},
                        UpdateExpression=f"SET {column} = :now, updated_at = :now",
                        ConditionExpression="attribute_exists(partition_key)",
                        ExpressionAttributeValues={":now": now},
                    )
                )

        self._map(one, list(dict.fromkeys(partition_keys)))

    def _query(self, table: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            answer = retrying(lambda k=dict(kwargs): self.t[table].query(**k))
            yield from answer.get("Items", [])
            if "LastEvaluatedKey" not in answer or kwargs.get("Limit"):
                return
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def _versions_on_index(self, index: str, attribute: str, value: str) -> list[JobState]:
        """The versions a Query on ``index`` finds under ``attribute = value``, read again by
        key and kept only where that still holds (the index is eventually consistent)."""
        from boto3.dynamodb.conditions import Key

        keys = [
            i["partition_key"]
            for i in self._query(
                "versions", IndexName=index, KeyConditionExpression=Key(attribute).eq(value)
            )
        ]
        states = self.get_many(keys)
        return [states[k] for k in sorted(states) if getattr(states[k], attribute) == value]

    def in_run(self, run_id: str) -> list[JobState]:
        """The versions whose latest processing is this run (a Query on ``by_run``)."""
        return self._versions_on_index("by_run", "run_id", run_id)

    def pending_versions(self) -> list[JobState]:
        """Every PENDING version (a Query on ``by_status``: as many as wait)."""
        return self._versions_on_index("by_status", "status", PENDING)

    def iter_jobs(
        self, columns: Sequence[str] = JOB_COLUMNS, batch: int = 10_000
    ) -> Iterator[list[tuple]]:
        """Every version as raw rows of ``columns`` (a scan: the ``jobs`` view only)."""
        unknown = set(columns) - set(JOB_COLUMNS)
        if unknown:
            raise ValueError(f"not a versions column: {sorted(unknown)}")
        rows: list[tuple] = []
        for item in self._scan("versions"):
            item = _plain(item)
            rows.append(tuple(item.get(c) for c in columns))
            if len(rows) >= batch:
                yield rows
                rows = []
        if rows:
            yield rows

    def _scan(self, table: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        while True:
            answer = retrying(lambda k=dict(kwargs): self.t[table].scan(**k))
            yield from answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    # -- verdicts -------------------------------------------------------------------------
    def record_verdicts(
        self,
        checked: Sequence[str],
        rule_ids: Sequence[str],
        failing: Mapping[str, Sequence[str]],
    ) -> None:
        """Replace the verdicts of ``rule_ids`` for the ``checked`` versions."""
        keys = list(dict.fromkeys(checked))
        objects = {pk: s.object_key for pk, s in self.get_many(keys).items()}
        with self.t["violations"].batch_writer(
            overwrite_by_pkeys=["rule_id", "partition_key"]
        ) as w:
            for rule_id in dict.fromkeys(rule_ids):
                bad = set(failing.get(rule_id, ()))
                for pk in keys:
                    if pk in bad:
                        w.put_item(
                            Item={"rule_id": rule_id, "partition_key": pk,
                                  "object_key": objects.get(pk, pk)}
                        )  # fmt: skip
                    else:
                        w.delete_item(Key={"rule_id": rule_id, "partition_key": pk})

    # -- fingerprint index ----------------------------------------------------------------
    def index_fingerprints(self, fingerprints: Mapping[str, Fingerprint]) -> None:
        """Store each version's fingerprint (one item, hashes as binary) and index its
        buckets (idempotent puts)."""
        with self.t["fingerprints"].batch_writer(overwrite_by_pkeys=["partition_key"]) as w:
            for pk, fp in fingerprints.items():
                w.put_item(Item={"partition_key": pk, "rate_hz": Decimal(str(fp.rate_hz)),
                                 "hashes": fp.to_bytes()})  # fmt: skip
        with self.t["fingerprint_buckets"].batch_writer(
            overwrite_by_pkeys=["bucket", "partition_key"]
        ) as w:
            for pk, fp in fingerprints.items():
                for b in bucket_ids(fp):
                    w.put_item(Item={"bucket": b, "partition_key": pk})

    def fingerprints(self, partition_keys: Sequence[str]) -> dict[str, Fingerprint]:
        """The stored fingerprint of each of these versions that has one (BatchGetItem)."""
        keys = list(dict.fromkeys(partition_keys))
        name = self.t["fingerprints"].name
        out: dict[str, Fingerprint] = {}
        for i in range(0, len(keys), _BATCH):
            pending = {name: {"Keys": [{"partition_key": k} for k in keys[i : i + _BATCH]]}}
            while pending:
                answer = retrying(lambda p=pending: self._resource.batch_get_item(RequestItems=p))
                for item in answer["Responses"].get(name, []):
                    data = item["hashes"]
                    out[str(item["partition_key"])] = Fingerprint.from_bytes(
                        float(item["rate_hz"]), bytes(getattr(data, "value", data))
                    )
                pending = answer.get("UnprocessedKeys") or {}
                if pending:
                    time.sleep(0.05)
        return out

    def bucket_members(self, buckets: Sequence[int], *, limit: int) -> dict[int, list[str]]:
        """The versions in each bucket (one Query per bucket, at most ``limit + 1`` items
        read); a bucket holding more than ``limit`` versions is left out."""
        from boto3.dynamodb.conditions import Key

        def one(bucket: int) -> tuple[int, list[str]]:
            answer = retrying(
                lambda: self.t["fingerprint_buckets"].query(
                    KeyConditionExpression=Key("bucket").eq(bucket),
                    ProjectionExpression="partition_key",
                    Limit=limit + 1,
                )
            )
            members = [str(i["partition_key"]) for i in answer.get("Items", [])]
            return bucket, members if len(members) <= limit else []

        found = self._map(one, [int(b) for b in dict.fromkeys(buckets)])
        return {b: members for b, members in found if members}

    def violation_counts(
        self, rule_ids: Sequence[str], *, sample: int = 100
    ) -> dict[str, tuple[int, list[str]]]:
        """Per rule: how many versions fail it now and up to ``sample`` object keys (a Query
        per rule: the cost is the number of violations, not the catalog)."""
        from boto3.dynamodb.conditions import Key

        def one(rule_id: str) -> tuple[str, tuple[int, list[str]]]:
            items = list(
                self._query("violations", KeyConditionExpression=Key("rule_id").eq(rule_id))
            )
            keys = sorted(str(i.get("object_key")) for i in items)[:sample]
            return rule_id, (len(items), keys)

        return dict(self._map(one, list(dict.fromkeys(rule_ids))))

    # -- incidents ------------------------------------------------------------------------
    def _incidents_of_version(self, pk: str) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        return [
            _plain(i)
            for i in self._query(
                "incidents",
                IndexName="by_version",
                KeyConditionExpression=Key("partition_key").eq(pk),
            )
        ]

    def _set_incident_status(self, incident_id: str, status: str) -> None:
        retrying(
            lambda: self.t["incidents"].update_item(
                Key={"incident_id": incident_id},
                UpdateExpression="SET #s = :s",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": status},
            )
        )

    def incidents_of_run(self, run_id: str) -> list[str]:
        """Incident ids already recorded for a run (recording it again is a no-op)."""
        from boto3.dynamodb.conditions import Key

        items = self._query("incident_runs", KeyConditionExpression=Key("run_id").eq(run_id))
        return sorted(str(i["incident_id"]) for i in items)

    def failed_runs_of(self, partition_keys: Sequence[str]) -> dict[str, int]:
        """How many distinct failed runs each version has had (a Query per version)."""
        from boto3.dynamodb.conditions import Key

        def one(pk: str) -> tuple[str, int]:
            items = self._query(
                "incident_runs",
                IndexName="by_version",
                KeyConditionExpression=Key("partition_key").eq(pk),
            )
            return pk, len({i["run_id"] for i in items})

        return {pk: n for pk, n in self._map(one, list(dict.fromkeys(partition_keys))) if n}

    def record_incidents(
        self,
        run_id: str,
        incidents: Sequence[NewIncident],
        unfinished: Mapping[str, tuple[str, str]],
    ) -> list[str]:
        """Record one failed run's incidents; returns their ids.

        Each (run, incident) is one transaction: the ``incident_runs`` marker (put only if
        absent), the incident upsert and its counter. A run recorded again, or a recording
        interrupted half way and repeated, counts each incident of the run exactly once.
        """
        now = datetime_to_us(utcnow())
        for pk, (error_class, error) in unfinished.items():
            self._move(
                pk,
                expect=lambda item: (
                    item["status"] == PENDING
                    or (item["status"] == RUNNING and item.get("run_id") == run_id)
                ),
                update="SET #s = :status, error_class = :cls, #e = :err, finished_at = :now, "
                "updated_at = :now",
                values={"status": FAILED, "cls": error_class, "err": error, "now": now},
                new_status=FAILED,
                also_write=self._failed_counter,
                remove=("claimed_by",),
            )
        for inc in incidents:
            self._record_one(run_id, inc, now)
        return [inc.incident_id for inc in incidents] or self.incidents_of_run(run_id)

    def _record_one(self, run_id: str, inc: NewIncident, now: int | None) -> None:
        for _ in range(MAX_ATTEMPTS):
            got = retrying(
                lambda: self.t["incidents"].get_item(
                    Key={"incident_id": inc.incident_id}, ConsistentRead=True
                )
            ).get("Item")
            v = inc.version
            marker = {
                "Put": {
                    "TableName": self.t["incident_runs"].name,
                    "Item": self._serialize(
                        {
                            "run_id": run_id,
                            "incident_id": inc.incident_id,
                            "partition_key": inc.partition_key,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(run_id)",
                }
            }
            fresh = {
                "incident_id": inc.incident_id,
                "partition_key": inc.partition_key,
                "source": v.source if v else None,
                "object_key": v.object_key if v else None,
                "source_object": f"{v.source}|{v.object_key}" if v else None,
                "etag": v.etag if v else None,
                "failure_class": inc.failure_class,
                "retryable": inc.retryable,
                "fingerprint": inc.fingerprint,
                "message": inc.message,
                "error_type": inc.error_type,
                "action": inc.action,
                "runbook": inc.runbook,
                "max_redrives": inc.max_redrives,
                "last_run_id": run_id,
                "next_attempt_at": datetime_to_us(inc.next_attempt_at),
                "attempts": 1,
                "first_seen": now,
                "last_seen": now,
                "redrives": 0,
                "status": OPEN,
                "feed": _FEED,
            }
            if got is None:
                upsert = {
                    "Put": {
                        "TableName": self.t["incidents"].name,
                        "Item": self._serialize(fresh),
                        "ConditionExpression": "attribute_not_exists(incident_id)",
                    }
                }
            else:
                held = _plain(got)
                merged = {**held, **{k: fresh[k] for k in (
                    "message", "error_type", "last_run_id", "next_attempt_at", "max_redrives",
                    "status", "last_seen")}}  # fmt: skip
                merged["attempts"] = int(held.get("attempts") or 0) + 1
                if fresh["next_attempt_at"] is None:
                    merged.pop("next_attempt_at", None)
                upsert = {
                    "Put": {
                        "TableName": self.t["incidents"].name,
                        "Item": self._serialize(merged),
                        "ConditionExpression": "attempts = :seen",
                        "ExpressionAttributeValues": {
                            ":seen": {"N": str(int(held.get("attempts") or 0))}
                        },
                    }
                }
            opened = got is None or got.get("status") != OPEN
            count = self._counter_actions(
                [(counters.INCIDENTS_OPENED, {"class": inc.failure_class}, 1.0)] if opened else []
            )
            try:
                self._transact([marker, upsert, *count])
            except ConditionLost:
                if inc.incident_id in self.incidents_of_run(run_id):
                    return  # recorded already (a repeated recording of this run)
                continue
            for other in self._incidents_of_version(inc.partition_key):
                if other["incident_id"] != inc.incident_id and other["status"] == OPEN:
                    self._set_incident_status(other["incident_id"], SUPERSEDED)
            return
        raise StoreUnreachable(f"incident {inc.incident_id}: too many concurrent writers")

    def get_incident(self, incident_id: str) -> Incident | None:
        """One incident by id."""
        got = retrying(lambda: self.t["incidents"].get_item(Key={"incident_id": incident_id}))
        return _incident(got["Item"]) if "Item" in got else None

    def latest_incident(self, partition_key: str) -> Incident | None:
        """The newest incident of one version (a Query on ``by_version``, newest first)."""
        from boto3.dynamodb.conditions import Key

        items = list(
            self._query(
                "incidents",
                IndexName="by_version",
                KeyConditionExpression=Key("partition_key").eq(partition_key),
                ScanIndexForward=False,
                Limit=1,
            )
        )
        return self.get_incident(items[0]["incident_id"]) if items else None

    def open_incidents(
        self,
        *,
        incident_id: str | None = None,
        failure_class: str | None = None,
        fingerprint: str | None = None,
    ) -> list[Incident]:
        """OPEN incidents by id, class or fingerprint (a GetItem or an index Query)."""
        from boto3.dynamodb.conditions import Key

        if incident_id is not None:
            found = self.get_incident(incident_id)
            return [found] if found is not None and found.status == OPEN else []
        if fingerprint is not None:
            index, condition = "by_fingerprint", Key("fingerprint").eq(fingerprint)
        elif failure_class is not None:
            index, condition = "by_class", Key("failure_class").eq(failure_class)
        else:
            raise ValueError("name an incident id, a class or a fingerprint")
        items = [
            _incident(i)
            for i in self._query("incidents", IndexName=index, KeyConditionExpression=condition)
        ]
        return sorted((i for i in items if i.status == OPEN), key=lambda i: i.partition_key)

    def due_redrives(self, now: datetime, *, limit: int = 100) -> list[Incident]:
        """Open retryable incidents whose backoff has elapsed and not redriven since they
        last failed, soonest first (a Query on ``by_due``)."""
        from boto3.dynamodb.conditions import Key

        out: list[Incident] = []
        for item in self._query(
            "incidents",
            IndexName="by_due",
            KeyConditionExpression=Key("status").eq(OPEN)
            & Key("next_attempt_at").lte(datetime_to_us(now)),
        ):
            inc = _incident(item)
            if inc.retryable and (
                inc.last_redrive_at is None or inc.last_redrive_at < inc.last_seen
            ):
                out.append(inc)
                if len(out) >= limit:
                    break
        return out

    def record_redrives(self, incident_ids: Sequence[str]) -> None:
        """Count one redrive of each incident."""
        now = datetime_to_us(utcnow())
        for iid in incident_ids:
            retrying(
                lambda i=iid: self.t["incidents"].update_item(
                    Key={"incident_id": i},
                    UpdateExpression="SET last_redrive_at = :now ADD redrives :one",
                    ConditionExpression="attribute_exists(incident_id)",
                    ExpressionAttributeValues={":now": now, ":one": 1},
                )
            )

    def iter_incidents(self, batch: int = 10_000) -> Iterator[list[tuple]]:
        """Every incident as raw rows in ``INCIDENT_COLUMNS`` order (a scan: the view only)."""
        rows: list[tuple] = []
        for item in self._scan("incidents"):
            item = _plain(item)
            item["retryable"] = int(bool(item.get("retryable")))  # raw rows as SQLite gives them
            rows.append(
                tuple(item.get("failure_class" if c == "class" else c) for c in INCIDENT_COLUMNS)
            )
            if len(rows) >= batch:
                yield rows
                rows = []
        if rows:
            yield rows

    def recent_incidents(
        self, *, limit: int, owner: str | None = None, open_only: bool = False
    ) -> list[Incident]:
        """The newest incidents (by last seen); with ``owner``, of that owner's uploads."""
        from boto3.dynamodb.conditions import Key

        if owner is None:
            items = self._query(
                "incidents",
                IndexName="by_recency",
                KeyConditionExpression=Key("feed").eq(_FEED),
                ScanIndexForward=False,
            )
            out = []
            for item in items:
                inc = _incident(item)
                if not open_only or inc.status == OPEN:
                    out.append(inc)
                    if len(out) >= limit:
                        break
            return out
        found: list[Incident] = []
        for job in self.upload_jobs_of(owner, limit=10_000):
            for item in self._query(
                "incidents",
                IndexName="by_object",
                KeyConditionExpression=Key("source_object").eq(
                    f"s3://{job.bucket}|{job.object_key}"
                ),
            ):
                inc = _incident(item)
                if not open_only or inc.status == OPEN:
                    found.append(inc)
        found.sort(key=lambda i: (i.last_seen, i.incident_id), reverse=True)
        return found[:limit]

    # -- what /metrics reads ----------------------------------------------------------------
    def _counter_items(self) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Attr

        # The meta table holds a few dozen items (counters, bookkeeping), never per version.
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"FilterExpression": Attr("name").begins_with("c|")}
        while True:
            answer = retrying(lambda k=dict(kwargs): self.t["meta"].scan(**k))
            items += answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return items
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def status_counts(self) -> dict[str, int]:
        """Versions by status (counters moved in each transition's own transaction)."""
        found = {s: 0 for s in STATUSES}
        for item in self._counter_items():
            # c|status|<STATUS>|{}: the counters _status_moves keeps.
            parts = str(item["name"]).split("|")
            if len(parts) == 4 and parts[1] == "status":
                found[parts[2]] = int(_num(item["value"]))
        return found

    def oldest_unprocessed(self) -> datetime | None:
        """When the oldest upload not yet finished was made (one Query per status)."""
        from boto3.dynamodb.conditions import Key

        ages = []
        for status in (PENDING, RUNNING):
            items = list(
                self._query(
                    "versions",
                    IndexName="by_status",
                    KeyConditionExpression=Key("status").eq(status),
                    Limit=1,
                )
            )
            if items:
                ages.append(int(_num(items[0]["age_us"])))
        return us_to_datetime(min(ages)) if ages else None

    def operational_counters(self) -> list[counters.CounterRow]:
        """The counters bumped by state changes (status counts excluded)."""
        rows = []
        for item in self._counter_items():
            _, name, labels = str(item["name"]).split("|", 2)
            if name == "status":
                continue
            rows.append(counters.CounterRow(name, json.loads(labels), float(_num(item["value"]))))
        return sorted(rows, key=lambda r: (r.name, json.dumps(r.labels, sort_keys=True)))

    # -- upload jobs ----------------------------------------------------------------------
    def create_upload_job(self, job: UploadJob) -> None:
        """Record a job handed out by the API (put only if its id is new)."""
        item = {
            c: datetime_to_us(getattr(job, c)) if c in UPLOAD_TIMES else getattr(job, c)
            for c in UPLOAD_COLUMNS
        }
        try:
            retrying(
                lambda: self.t["upload_jobs"].put_item(
                    Item=_clean(item), ConditionExpression="attribute_not_exists(job_id)"
                )
            )
        except ConditionLost:
            raise ConfigError(f"upload job {job.job_id} exists already") from None

    def _upload_job(self, item: Mapping[str, Any]) -> UploadJob:
        item = _plain(item)
        return UploadJob(
            **{c: us_to_datetime(item.get(c)) if c in UPLOAD_TIMES else item.get(c)
               for c in UPLOAD_COLUMNS}
        )  # fmt: skip

    def upload_job(self, job_id: str) -> UploadJob | None:
        """One API job by id (a GetItem)."""
        got = retrying(lambda: self.t["upload_jobs"].get_item(Key={"job_id": job_id}))
        return self._upload_job(got["Item"]) if "Item" in got else None

    def upload_jobs_of(self, owner: str, *, limit: int) -> list[UploadJob]:
        """An owner's newest API jobs, newest first (a Query on ``by_owner``)."""
        from boto3.dynamodb.conditions import Key

        out = []
        for item in self._query(
            "upload_jobs",
            IndexName="by_owner",
            KeyConditionExpression=Key("owner").eq(owner),
            ScanIndexForward=False,
        ):
            out.append(self._upload_job(item))
            if len(out) >= limit:
                break
        return out

    def _versions_of(self, source: str, object_key: str) -> list[JobState]:
        from boto3.dynamodb.conditions import Key

        items = self._query(
            "versions",
            IndexName="by_object",
            KeyConditionExpression=Key("source_object").eq(f"{source}|{object_key}"),
        )
        return [_job(i) for i in items]

    def _older_versions(self, state: JobState) -> list[str]:
        """The partition keys of the versions of ``state``'s object registered before it."""
        mine = _age_order(state)
        return [
            s.partition_key
            for s in self._versions_of(state.source, state.object_key)
            if s.partition_key != state.partition_key and _age_order(s) < mine
        ]

    def newest_versions_of(self, source: str, object_keys: Sequence[str]) -> dict[str, JobState]:
        """The newest registered version of each object (a Query on ``by_object`` each)."""

        def one(key: str) -> tuple[str, JobState] | None:
            states = self._versions_of(source, key)
            return (key, max(states, key=_age_order)) if states else None

        found = self._map(one, list(dict.fromkeys(object_keys)))
        return dict(r for r in found if r is not None)

    # -- migration ------------------------------------------------------------------------
    def import_rows(
        self, versions: Sequence[Mapping[str, Any]], incidents: Sequence[Mapping[str, Any]],
        incident_runs: Sequence[tuple[str, str, str]],
    ) -> None:  # fmt: skip
        """Put rows of an older catalog whose keys are absent (each a conditional put)."""
        for row in versions:
            item = {c: (datetime_to_us(row.get(c)) if c in JOB_TIME_COLUMNS else row.get(c))
                    for c in JOB_COLUMNS}  # fmt: skip
            item["source_object"] = f"{item['source']}|{item['object_key']}"
            item["age_us"] = _age(item)
            with contextlib.suppress(ConditionLost):
                self._transact(
                    [
                        {
                            "Put": {
                                "TableName": self.t["versions"].name,
                                "Item": self._serialize(item),
                                "ConditionExpression": "attribute_not_exists(partition_key)",
                            }
                        },
                        *self._status_moves({str(item["status"]): 1}),
                    ]
                )
        for row in incidents:
            item = {
                ("failure_class" if c == "class" else c): (
                    datetime_to_us(row.get(c)) if c in INCIDENT_TIME_COLUMNS else row.get(c)
                )
                for c in INCIDENT_COLUMNS
            }
            item["retryable"] = bool(item["retryable"])
            item["feed"] = _FEED
            if item.get("source") and item.get("object_key"):
                item["source_object"] = f"{item['source']}|{item['object_key']}"
            with contextlib.suppress(ConditionLost):
                retrying(
                    lambda i=item: self.t["incidents"].put_item(
                        Item=_clean(i), ConditionExpression="attribute_not_exists(incident_id)"
                    )
                )
        with self.t["incident_runs"].batch_writer(
            overwrite_by_pkeys=["run_id", "incident_id"]
        ) as w:
            for run_id, incident_id, pk in incident_runs:
                w.put_item(Item={"run_id": run_id, "incident_id": incident_id, "partition_key": pk})
