"""The DynamoDB tables of the state store: names, keys and indexes (see ``dynamodb_state``).

One definition, used to create the tables on a local server and mirrored by the Terraform in
``deploy/terraform/dynamodb.tf``; on-demand capacity (PAY_PER_REQUEST), so throttling only
happens past a table's burst limits and is retried by the store.
"""

from __future__ import annotations

from typing import Any


def _attrs(**types: str) -> list[dict[str, str]]:
    return [{"AttributeName": n, "AttributeType": t} for n, t in types.items()]


def _key(hash_key: str, range_key: str | None = None) -> list[dict[str, str]]:
    key = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        key.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return key


def _index(name: str, hash_key: str, range_key: str | None = None) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": _key(hash_key, range_key),
        "Projection": {"ProjectionType": "ALL"},
    }


def table_definitions(prefix: str) -> dict[str, dict[str, Any]]:
    """``{logical name: create_table arguments}`` for every table of the store."""
    on_demand = {"BillingMode": "PAY_PER_REQUEST"}
    return {
        "versions": {
            "TableName": f"{prefix}versions",
            "KeySchema": _key("partition_key"),
            "AttributeDefinitions": _attrs(
                partition_key="S",
                source_object="S",
                registered_at="N",
                run_id="S",
                status="S",
                age_us="N",
            ),
            "GlobalSecondaryIndexes": [
                _index("by_object", "source_object", "registered_at"),
                _index("by_run", "run_id"),
                _index("by_status", "status", "age_us"),
            ],
            **on_demand,
        },
        "incidents": {
            "TableName": f"{prefix}incidents",
            "KeySchema": _key("incident_id"),
            "AttributeDefinitions": _attrs(
                incident_id="S",
                partition_key="S",
                last_seen="N",
                status="S",
                next_attempt_at="N",
                fingerprint="S",
                failure_class="S",
                feed="S",
                source_object="S",
            ),
            "GlobalSecondaryIndexes": [
                _index("by_version", "partition_key", "last_seen"),
                _index("by_due", "status", "next_attempt_at"),
                _index("by_fingerprint", "fingerprint"),
                _index("by_class", "failure_class"),
                _index("by_recency", "feed", "last_seen"),
                _index("by_object", "source_object", "last_seen"),
            ],
            **on_demand,
        },
        "incident_runs": {
            "TableName": f"{prefix}incident_runs",
            "KeySchema": _key("run_id", "incident_id"),
            "AttributeDefinitions": _attrs(run_id="S", incident_id="S", partition_key="S"),
            "GlobalSecondaryIndexes": [_index("by_version", "partition_key", "run_id")],
            **on_demand,
        },
        "violations": {
            "TableName": f"{prefix}violations",
            "KeySchema": _key("rule_id", "partition_key"),
            "AttributeDefinitions": _attrs(rule_id="S", partition_key="S"),
            **on_demand,
        },
        "fingerprints": {
            "TableName": f"{prefix}fingerprints",
            "KeySchema": _key("partition_key"),
            "AttributeDefinitions": _attrs(partition_key="S"),
            **on_demand,
        },
        "fingerprint_buckets": {
            "TableName": f"{prefix}fingerprint_buckets",
            "KeySchema": _key("bucket", "partition_key"),
            "AttributeDefinitions": _attrs(bucket="N", partition_key="S"),
            **on_demand,
        },
        "upload_jobs": {
            "TableName": f"{prefix}upload_jobs",
            "KeySchema": _key("job_id"),
            "AttributeDefinitions": _attrs(job_id="S", owner="S", created_at="N"),
            "GlobalSecondaryIndexes": [_index("by_owner", "owner", "created_at")],
            **on_demand,
        },
        "meta": {
            "TableName": f"{prefix}meta",
            "KeySchema": _key("name"),
            "AttributeDefinitions": _attrs(name="S"),
            **on_demand,
        },
    }
