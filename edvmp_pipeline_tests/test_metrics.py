"""Metrics: counters bumped by real state changes in a real SQLite state store, and the
exposition ``/metrics`` serves (route templates as labels, the store's figures, a scrape
that still answers when the store cannot be read). The real Prometheus server scraping
``edvmp serve`` is in test_prometheus_dashboard.py."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from edvmp_pipeline.api.metrics import install_metrics
from edvmp_pipeline.catalog import operational_counters as counters
from edvmp_pipeline.catalog.state_store import (
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    NewIncident,
    utcnow,
)
from edvmp_pipeline.catalog.store import Catalog
from edvmp_pipeline.domain.records import ObjectVersion


def version(key: str, uploaded: datetime) -> tuple[str, ObjectVersion]:
    return f"pk-{key}", ObjectVersion("s3://uploads", key, "e1", 10, uploaded)


def incident(pk: str, iid: str, cls: str = "corrupt_media") -> NewIncident:
    return NewIncident(
        incident_id=iid,
        partition_key=pk,
        version=None,
        failure_class=cls,
        retryable=False,
        fingerprint=f"fp-{iid}",
        message="bad",
        error_type=None,
        action="look",
        runbook="runbooks/corrupt_media.md",
        max_redrives=0,
        next_attempt_at=None,
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "catalog")


def test_state_changes_bump_their_counters_once(catalog: Catalog) -> None:
    state = catalog.state
    now = utcnow()
    pairs = [version(f"v{i}.mp4", now - timedelta(seconds=40)) for i in range(3)]
    state.register(pairs, registered_by="test")
    keys = [pk for pk, _ in pairs]
    assert state.status_counts() == {PENDING: 3, RUNNING: 0, SUCCEEDED: 0, FAILED: 0}
    oldest = state.oldest_unprocessed()
    assert oldest is not None and abs((oldest - pairs[0][1].last_modified).total_seconds()) < 1

    state.claim(keys, "run-1")
    state.mark_probed(keys[:2], "run-1", probe_seconds={keys[0]: 0.04, keys[1]: 3.0})
    # A second call for the same versions by another run holds nothing: no observation.
    state.mark_probed(keys[:2], "run-2", probe_seconds={keys[0]: 9.0})
    assert state.mark_succeeded(keys[:2], "run-1") == keys[:2]
    assert state.mark_succeeded(keys[:2], "run-1") == []  # already SUCCEEDED: not counted
    state.mark_failed({keys[2]: ("corrupt_media", "moov atom not found")}, "run-1")
    state.record_incidents("run-1", [incident(keys[2], "inc-1")], {})
    state.record_incidents("run-1", [incident(keys[2], "inc-1")], {})  # same run: no-op
    state.record_incidents("run-2", [incident(keys[2], "inc-1")], {})  # still open: not new

    assert state.oldest_unprocessed() is None
    rows = state.operational_counters()
    by = {(r.name, tuple(sorted(r.labels.items()))): r.value for r in rows}
    assert by[(counters.FINISHED, (("status", SUCCEEDED),))] == 2
    assert by[(counters.FINISHED, (("status", FAILED),))] == 1
    assert by[(counters.INCIDENTS_OPENED, (("class", "corrupt_media"),))] == 1
    latency = counters.histogram(rows, counters.UPLOAD_TO_SUCCEEDED, counters.LATENCY_BUCKETS)
    assert latency.count == 2 and 80 <= latency.total <= 90
    assert dict(latency.buckets)[30.0] == 0 and dict(latency.buckets)[60.0] == 2
    probe = counters.histogram(rows, counters.PROBE_DURATION, counters.PROBE_BUCKETS)
    assert probe.count == 2 and math.isclose(probe.total, 3.04)
    assert dict(probe.buckets)[0.05] == 1 and dict(probe.buckets)[math.inf] == 2


def test_a_resolved_incident_that_comes_back_is_opened_again(catalog: Catalog) -> None:
    state = catalog.state
    pk, v = version("again.mp4", utcnow())
    state.register([(pk, v)], registered_by="test")
    state.claim([pk], "run-1")
    state.mark_failed({pk: ("throttled", "slow down")}, "run-1")
    state.record_incidents("run-1", [incident(pk, "inc-t", "throttled")], {})
    state.claim([pk], "run-2")
    state.mark_probed([pk], "run-2")
    state.mark_succeeded([pk], "run-2")  # resolves inc-t
    state.claim([pk], "run-3", force=True)
    state.mark_failed({pk: ("throttled", "slow down")}, "run-3")
    state.record_incidents("run-3", [incident(pk, "inc-t", "throttled")], {})
    by = {(r.name, tuple(r.labels.items())): r.value for r in state.operational_counters()}
    assert by[(counters.INCIDENTS_OPENED, (("class", "throttled"),))] == 2


def test_the_exposition_labels_routes_by_template(catalog: Catalog) -> None:
    state = catalog.state
    pk, v = version("a.mp4", utcnow() - timedelta(seconds=5))
    state.register([(pk, v)], registered_by="test")
    state.claim([pk], "r")
    state.mark_probed([pk], "r", probe_seconds={pk: 0.2})
    state.mark_succeeded([pk], "r")

    app = FastAPI()

    @app.get("/jobs/{job_id}")
    def job(job_id: str) -> dict[str, str]:
        if job_id.startswith("missing"):
            raise HTTPException(404, "no such job")
        return {"job_id": job_id}

    install_metrics(app, lambda: catalog)
    client = TestClient(app)
    for i in range(5):
        client.get(f"/jobs/job-{i}")
    client.get("/jobs/missing-1")
    client.get("/no/such/path/123")
    assert client.get("/openapi.json").status_code == 200  # FastAPI's own (Starlette) route
    got = samples(client.get("/metrics").text)

    route = (("method", "GET"), ("route", "/jobs/{job_id}"))
    assert got[("edvmp_api_requests_total", (*route, ("status", "200")))] == 5
    assert got[("edvmp_api_requests_total", (*route, ("status", "404")))] == 1
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert got[("edvmp_api_requests_total", unmatched)] == 1
    openapi = (("method", "GET"), ("route", "/openapi.json"), ("status", "200"))
    assert got[("edvmp_api_requests_total", openapi)] == 1
    assert not any("job-" in value for key in got for _, value in key[1])
    assert got[("edvmp_api_request_duration_seconds_count", route)] == 6

    assert got[("edvmp_catalog_up", ())] == 1
    assert got[("edvmp_versions", (("status", SUCCEEDED),))] == 1
    assert got[("edvmp_versions", (("status", PENDING),))] == 0
    assert got[("edvmp_versions_finished_total", (("status", SUCCEEDED),))] == 1
    assert got[("edvmp_versions_finished_total", (("status", FAILED),))] == 0
    assert got[("edvmp_upload_to_succeeded_seconds_count", ())] == 1
    assert got[("edvmp_upload_to_succeeded_seconds_bucket", (("le", "10.0"),))] == 1
    assert got[("edvmp_upload_to_succeeded_seconds_bucket", (("le", "+Inf"),))] == 1
    assert got[("edvmp_probe_duration_seconds_bucket", (("le", "0.25"),))] == 1
    assert got[("edvmp_oldest_unprocessed_upload_age_seconds", ())] == 0


def test_a_scrape_answers_when_the_store_cannot_be_read(tmp_path: Path) -> None:
    def broken() -> Catalog:
        raise OSError("disk gone")

    app = FastAPI()
    install_metrics(app, broken)
    response = TestClient(app).get("/metrics")
    assert response.status_code == 200
    got = samples(response.text)
    assert got[("edvmp_catalog_up", ())] == 0
    assert not any(name == "edvmp_versions" for name, _ in got)


def test_two_apps_in_one_process_keep_their_own_counts(catalog: Catalog) -> None:
    first, second = FastAPI(), FastAPI()
    install_metrics(first, lambda: catalog)
    install_metrics(second, lambda: catalog)
    TestClient(first).get("/nothing")
    got = samples(TestClient(second).get("/metrics").text)
    assert not any(name == "edvmp_api_requests_total" and "unmatched" in str(lab)
                   for name, lab in got)  # fmt: skip
