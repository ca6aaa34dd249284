"""The dashboard against a real Prometheus server (Debian's ``prometheus``) scraping a real
``edvmp serve`` on 127.0.0.1: after a small ingest (good and broken videos) and some API
traffic, every expression of every panel returns data through Prometheus's query API."""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edvmp_pipeline.devtools.sample_media import generate_samples
from edvmp_pipeline_tests.cli_support import run_edvmp
from edvmp_pipeline_tests.dagster_dev import free_port
from edvmp_pipeline_tests.media_factory import ffmpeg_available

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS = shutil.which("prometheus")

pytestmark = [
    pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed"),
    pytest.mark.skipif(
        PROMETHEUS is None and not os.environ.get("CI"),
        reason="prometheus not installed (make test installs Debian's package)",
    ),
]


def dashboard_module():
    spec = importlib.util.spec_from_file_location(
        "build_dashboard", REPO / "observability" / "build_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for(url: str, *, timeout: float = 60, ok: tuple[int, ...] = (200,)) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code in ok:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise AssertionError(f"{url} not ready after {timeout}s: {last}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    scrubbed = {k: v for k, v in os.environ.items() if not k.startswith(("EDVMP_", "DAGSTER_"))}
    return {**scrubbed, "EDVMP_HOME": str(home)}


@pytest.fixture
def api(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    exe = Path(sys.executable).with_name("edvmp")
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [str(exe), "serve", "--dev", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/metrics")
        yield url
    finally:
        stop(proc)
        log.close()


@pytest.fixture
def prometheus(api: str, tmp_path: Path) -> Iterator[str]:
    assert PROMETHEUS is not None, "prometheus is required here (make test installs it)"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    target = api.removeprefix("http://")
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: edvmp\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['{target}']\n",
        encoding="utf-8",
    )
    log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/-/ready")
        yield url
    finally:
        stop(proc)
        log.close()


def query(prometheus: str, expr: str) -> list[dict]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def scrapes(prometheus: str) -> int:
    result = query(prometheus, 'count_over_time(up{job="edvmp"}[10m])')
    return int(float(result[0]["value"][1])) if result else 0


def wait_scrapes(prometheus: str, more: int, timeout: float = 60) -> None:
    target = scrapes(prometheus) + more
    deadline = time.monotonic() + timeout
    while scrapes(prometheus) < target:
        assert time.monotonic() < deadline, "Prometheus did not scrape edvmp serve"
        time.sleep(0.5)


def api_traffic(api: str) -> None:
    """Requests on a few routes (rates over a window need them before and after a scrape)."""
    assert (
        httpx.post(f"{api}/auth/login", json={"username": "x", "password": "y"}).status_code == 401
    )
    assert httpx.get(f"{api}/jobs/not-a-job").status_code == 401
    assert httpx.get(f"{api}/healthz").status_code == 200


def test_the_committed_dashboard_is_what_the_generator_writes() -> None:
    module = dashboard_module()
    committed = (REPO / "observability" / "grafana-dashboard.json").read_text(encoding="utf-8")
    assert committed == module.render(), "run .venv/bin/python observability/build_dashboard.py"
    titles = [p["title"] for p in module.dashboard()["panels"]]
    for needed in ("Throughput", "latency", "Incidents", "Sensor lag", "API errors"):
        assert any(needed in t for t in titles), needed


def test_every_dashboard_expression_returns_data(
    prometheus: str, api: str, env: dict[str, str], tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    generate_samples(first, broken=False)
    done = run_edvmp("ingest", str(first / "marketing"), env=env)
    assert done.returncode == 0, done.stderr
    api_traffic(api)
    wait_scrapes(prometheus, 2)

    # More work after Prometheus has seen the first state: rates and increases have data.
    generate_samples(second, broken=True)
    done = run_edvmp("ingest", str(second), env=env)
    assert done.returncode == 1, done.stderr  # the broken samples fail on purpose
    api_traffic(api)
    wait_scrapes(prometheus, 3)

    empty = []
    for expr in dashboard_module().expressions():
        result = query(prometheus, expr)
        values = [float(r["value"][1]) for r in result]
        if not values or any(math.isnan(v) for v in values):
            empty.append((expr, result))
    assert empty == [], empty

    # The figures are the catalog's: 1 + 5 good versions finished, 2 broken ones opened
    # incidents, and every ingest's run process had exited before its figures were scraped.
    finished = query(prometheus, 'edvmp_versions_finished_total{status="SUCCEEDED"}')
    assert float(finished[0]["value"][1]) == 6
    opened = query(prometheus, "sum(edvmp_incidents_opened_total)")
    assert float(opened[0]["value"][1]) == 2
    routes = {r["metric"]["route"] for r in query(prometheus, "edvmp_api_requests_total")}
    assert "/jobs/{job_id}" in routes and not any("not-a-job" in r for r in routes)
