"""Prometheus metrics of ``edvmp serve``: the pipeline's figures from the state store, and the
API's own requests.

The pipeline side is read at scrape time from the state store (counts by status, the oldest
unprocessed upload, and the counters that state changes bump in the same transaction), so a
run process that exits loses nothing and every API replica reports the same figures. The API
side lives in this process: requests and latency labelled by *route template*
(``/jobs/{job_id}``), never by the raw path, whose job ids would make the label set unbounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from edvmp_pipeline.catalog import operational_counters as counters
from edvmp_pipeline.catalog.state_store import utcnow
from edvmp_pipeline.catalog.store import Catalog

log = logging.getLogger(__name__)

PREFIX = "edvmp"
# API latency: a point read is milliseconds; presigning and a cold catalog open, more.
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UNMATCHED = "unmatched"


def _histogram_family(
    name: str, documentation: str, data: counters.HistogramData
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation)
    family.add_metric(
        [],
        buckets=[("+Inf" if b == float("inf") else repr(b), c) for b, c in data.buckets],
        sum_value=data.total,
    )
    return family


class PipelineCollector(Collector):
    """The pipeline's figures, read from the state store on each scrape."""

    def __init__(self, open_catalog: Callable[[], Catalog]) -> None:
        self._open_catalog = open_catalog

    def collect(self) -> Iterator[Metric]:
        """Yield the pipeline metrics, and ``edvmp_catalog_up`` 0 when the store is unreadable."""
        up = GaugeMetricFamily(
            f"{PREFIX}_catalog_up", "1 when the state store could be read for this scrape"
        )
        try:
            state = self._open_catalog().state
            statuses = state.status_counts()
            oldest = state.oldest_unprocessed()
            rows = state.operational_counters()
        except Exception as exc:  # a scrape must answer; the gauge says what went wrong
            log.warning("metrics: state store unreadable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        versions = GaugeMetricFamily(
            f"{PREFIX}_versions", "Object versions in the catalog by status", labels=["status"]
        )
        for status, n in sorted(statuses.items()):
            versions.add_metric([status], n)
        yield versions

        lag = GaugeMetricFamily(
            f"{PREFIX}_oldest_unprocessed_upload_age_seconds",
            "Age of the oldest registered upload not yet SUCCEEDED or FAILED (0 when none): "
            "how far the pipeline lags behind uploads",
        )
        lag.add_metric([], max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0)
        yield lag

        finished = CounterMetricFamily(
            f"{PREFIX}_versions_finished",
            "Versions that reached SUCCEEDED or FAILED (each time they did)",
            labels=["status"],
        )
        opened = CounterMetricFamily(
            f"{PREFIX}_incidents_opened",
            "Incidents opened (new or re-opened) by failure class",
            labels=["failure_class"],
        )
        finished_by = {"SUCCEEDED": 0.0, "FAILED": 0.0}
        for row in rows:
            if row.name == counters.FINISHED:
                finished_by[row.labels.get("status", "")] = row.value
            elif row.name == counters.INCIDENTS_OPENED:
                opened.add_metric([row.labels.get("class", "")], row.value)
        for status, value in sorted(finished_by.items()):
            finished.add_metric([status], value)
        yield finished
        yield opened

        yield _histogram_family(
            f"{PREFIX}_upload_to_succeeded_seconds",
            "From the object's upload (S3 LastModified, or registration) to SUCCEEDED",
            counters.histogram(rows, counters.UPLOAD_TO_SUCCEEDED, counters.LATENCY_BUCKETS),
        )
        yield _histogram_family(
            f"{PREFIX}_probe_duration_seconds",
            "One version's ffprobe, in-step retries included (versions whose metadata landed)",
            counters.histogram(rows, counters.PROBE_DURATION, counters.PROBE_BUCKETS),
        )


def route_template(request: Request) -> str:
    """The template of the route that served ``request`` (``/jobs/{job_id}``), or
    ``unmatched`` (a 404 for a path no route has must not add a label value per path)."""
    route = request.scope.get("route")
    endpoint = request.scope.get("endpoint")
    if route is None and endpoint is not None:
        # Starlette's own routes (FastAPI's /docs, /openapi.json) leave only their endpoint
        # in the scope; FastAPI's API routes leave the route itself.
        route = next(
            (r for r in request.app.router.routes if getattr(r, "endpoint", None) is endpoint),
            None,
        )
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def install_metrics(
    app: FastAPI,
    open_catalog: Callable[[], Catalog],
    *,
    responses: dict[int | str, dict[str, Any]] | None = None,
) -> CollectorRegistry:
    """Add request metrics and ``GET /metrics`` to ``app``; returns the app's registry.
    ``responses``: the error answers to declare for ``/metrics`` in the OpenAPI schema.

    Each app has its own registry, so several apps in one process (tests) never share or
    double-register collectors.
    """
    registry = CollectorRegistry(auto_describe=True)
    registry.register(PipelineCollector(open_catalog))
    requests = Counter(
        f"{PREFIX}_api_requests",
        "API requests by method, route template and status code",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        f"{PREFIX}_api_request_duration_seconds",
        "API request latency by method and route template",
        ["method", "route"],
        buckets=API_BUCKETS,
        registry=registry,
    )

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = route_template(request)
            requests.labels(request.method, route, str(status)).inc()
            latency.labels(request.method, route).observe(time.perf_counter() - started)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition",
                "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
            },
            **(responses or {}),
        },
    )
    def metrics() -> Response:
        """Prometheus text exposition of this app's registry."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry
