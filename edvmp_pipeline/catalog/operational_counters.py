"""Counters of what the pipeline did, kept in the state store for ``/metrics``.

Run processes come and go (a sensor run lives seconds), so a Prometheus counter held in their
memory would be lost with them. Each counter is bumped in the same transaction as the state
change it counts (a version finishing, an incident opening, metadata landing), so it can never
disagree with the state it counts, and a scrape reads a few dozen rows, whatever the size of
the catalog. Histograms are kept as per-bucket (non-cumulative) counts plus a sum and a count;
the collector makes them cumulative.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS metric_counters (
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (name, labels)
);
"""

FINISHED = "versions_finished_total"
INCIDENTS_OPENED = "incidents_opened_total"
UPLOAD_TO_SUCCEEDED = "upload_to_succeeded_seconds"
PROBE_DURATION = "probe_duration_seconds"

# Upload → SUCCEEDED spans a sensor interval plus a run start (seconds) up to a backlog.
LATENCY_BUCKETS: tuple[float, ...] = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
# One ffprobe call: ~50 ms for a small local file, seconds for a remote or huge one.
PROBE_BUCKETS: tuple[float, ...] = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True)
class CounterRow:
    """One stored counter: its name, labels and value."""

    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class HistogramData:
    """A histogram read back: cumulative ``(upper bound, count)`` pairs ending with +Inf."""

    buckets: list[tuple[float, float]]
    total: float
    count: float


def _labels(labels: Mapping[str, str] | None) -> str:
    return json.dumps(dict(sorted((labels or {}).items())), separators=(",", ":"))


def bump(
    con: sqlite3.Connection, name: str, by: float = 1.0, labels: Mapping[str, str] | None = None
) -> None:
    """Add ``by`` to a counter, inside the caller's transaction."""
    con.execute(
        "INSERT INTO metric_counters (name, labels, value) VALUES (?, ?, ?) "
        "ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
        [name, _labels(labels), by],
    )


def bucket_of(value: float, bounds: Sequence[float]) -> str:
    """The ``le`` label of the first bucket holding ``value`` ("+Inf" past the last)."""
    for bound in bounds:
        if value <= bound:
            return repr(float(bound))
    return "+Inf"


def histogram_deltas(
    name: str, values: Sequence[float], bounds: Sequence[float]
) -> list[tuple[str, dict[str, str], float]]:
    """The counter increments (name, labels, by) that observing ``values`` makes: one per
    bucket hit, the sum and the count. Pure, so every state store backend records the same."""
    clean = [max(0.0, v) for v in values if math.isfinite(v)]
    if not clean:
        return []
    per_bucket: dict[str, int] = {}
    for v in clean:
        le = bucket_of(v, bounds)
        per_bucket[le] = per_bucket.get(le, 0) + 1
    deltas: list[tuple[str, dict[str, str], float]] = [
        (f"{name}_bucket", {"le": le}, float(n)) for le, n in per_bucket.items()
    ]
    deltas.append((f"{name}_sum", {}, sum(clean)))
    deltas.append((f"{name}_count", {}, float(len(clean))))
    return deltas


def label_text(labels: Mapping[str, str] | None) -> str:
    """The stored form of a label set (sorted JSON), shared by the backends."""
    return _labels(labels)


def observe(
    con: sqlite3.Connection, name: str, values: Sequence[float], bounds: Sequence[float]
) -> None:
    """Record observations of a histogram, inside the caller's transaction."""
    for counter, labels, by in histogram_deltas(name, values, bounds):
        bump(con, counter, by, labels)


def read_all(con: sqlite3.Connection) -> list[CounterRow]:
    """Every stored counter (a few rows per class and bucket, never per version)."""
    rows = con.execute("SELECT name, labels, value FROM metric_counters ORDER BY name, labels")
    return [CounterRow(r[0], json.loads(r[1]), float(r[2])) for r in rows]


def histogram(rows: Sequence[CounterRow], name: str, bounds: Sequence[float]) -> HistogramData:
    """Cumulative buckets of histogram ``name`` from the stored per-bucket counts."""
    per = {r.labels.get("le"): r.value for r in rows if r.name == f"{name}_bucket"}
    cumulative: list[tuple[float, float]] = []
    running = 0.0
    for bound in bounds:
        running += per.get(repr(float(bound)), 0.0)
        cumulative.append((float(bound), running))
    running += per.get("+Inf", 0.0)
    cumulative.append((math.inf, running))
    total = next((r.value for r in rows if r.name == f"{name}_sum"), 0.0)
    count = next((r.value for r in rows if r.name == f"{name}_count"), 0.0)
    return HistogramData(cumulative, total, count)
