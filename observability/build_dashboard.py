"""Writes observability/grafana-dashboard.json: the edvmp on-call dashboard for Grafana.

Run ``.venv/bin/python observability/build_dashboard.py`` after changing a panel; a test
checks the committed JSON is what this script writes, and evaluates every expression below
against a real Prometheus scraping ``edvmp serve``.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("grafana-dashboard.json")

# (title, unit, [(expression, legend)]): one time-series panel each, two per row.
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "Throughput: versions finished per minute",
        "short",
        [("sum by (status) (rate(edvmp_versions_finished_total[5m])) * 60", "{{status}}")],
    ),
    (
        "Versions by status",
        "short",
        [("max by (status) (edvmp_versions)", "{{status}}")],
    ),
    (
        "Failure ratio of finished versions (15 min)",
        "percentunit",
        [
            (
                'sum(rate(edvmp_versions_finished_total{status="FAILED"}[15m])) '
                "/ clamp_min(sum(rate(edvmp_versions_finished_total[15m])), 1e-9)",
                "failed / finished",
            )
        ],
    ),
    (
        "Upload → SUCCEEDED latency",
        "s",
        [
            (
                "histogram_quantile(0.5, sum by (le) "
                "(rate(edvmp_upload_to_succeeded_seconds_bucket[15m])))",
                "P50",
            ),
            (
                "histogram_quantile(0.95, sum by (le) "
                "(rate(edvmp_upload_to_succeeded_seconds_bucket[15m])))",
                "P95",
            ),
        ],
    ),
    (
        "ffprobe duration per version",
        "s",
        [
            (
                "histogram_quantile(0.5, sum by (le) "
                "(rate(edvmp_probe_duration_seconds_bucket[15m])))",
                "P50",
            ),
            (
                "histogram_quantile(0.95, sum by (le) "
                "(rate(edvmp_probe_duration_seconds_bucket[15m])))",
                "P95",
            ),
        ],
    ),
    (
        "Incidents opened by class (1 h)",
        "short",
        [
            (
                "sum by (failure_class) (increase(edvmp_incidents_opened_total[1h]))",
                "{{failure_class}}",
            )
        ],
    ),
    (
        "Sensor lag: age of the oldest unprocessed upload",
        "s",
        [("max(edvmp_oldest_unprocessed_upload_age_seconds)", "oldest waiting")],
    ),
    (
        "State store readable",
        "short",
        [("min(edvmp_catalog_up)", "up")],
    ),
    (
        "API requests by route",
        "reqps",
        [("sum by (route) (rate(edvmp_api_requests_total[5m]))", "{{route}}")],
    ),
    (
        "API errors (4xx and 5xx) by route and status",
        "reqps",
        [
            (
                'sum by (route, status) (rate(edvmp_api_requests_total{status=~"4..|5.."}[5m]))',
                "{{route}} {{status}}",
            ),
            (
                'sum(rate(edvmp_api_requests_total{status=~"5.."}[5m])) or vector(0)',
                "5xx, all routes",
            ),
        ],
    ),
    (
        "API latency P95 by route",
        "s",
        [
            (
                "histogram_quantile(0.95, sum by (le, route) "
                "(rate(edvmp_api_request_duration_seconds_bucket[5m])))",
                "{{route}}",
            )
        ],
    ),
]


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard, in panel order."""
    return [expr for _, _, targets in PANELS for expr, _ in targets]


def dashboard() -> dict:
    """The Grafana dashboard model (schema of Grafana 10/11, Prometheus data source input)."""
    panels = []
    for i, (title, unit, targets) in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {
                        "refId": chr(ord("A") + j),
                        "datasource": {"type": "prometheus", "uid": "${datasource}"},
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for j, (expr, legend) in enumerate(targets)
                ],
            }
        )
    return {
        "title": "edvmp — video metadata pipeline",
        "uid": "edvmp-pipeline",
        "tags": ["edvmp", "dagster"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                }
            ]
        },
        "panels": panels,
    }


def render() -> str:
    """The dashboard JSON exactly as committed."""
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT} ({len(PANELS)} panels, {len(expressions())} expressions)")
