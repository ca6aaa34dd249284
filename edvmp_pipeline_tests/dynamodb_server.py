"""A real DynamoDB-compatible server for the tests: moto's standalone server (``moto_server``)
in its own process on 127.0.0.1, started once per session and stopped at its end. Nothing is
patched in-process: the store talks HTTP to it exactly as it would to DynamoDB."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edvmp_pipeline_tests.dagster_dev import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "edvmp-test",
    "AWS_SECRET_ACCESS_KEY": "edvmp-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# moto's server, one request at a time. DynamoDB applies each conditional write and
# transaction atomically; moto's threaded server does not (two TransactWriteItems racing on
# one item can both pass their condition), so a threaded server would fail the race tests
# for moto's sake. The clients still race: their reads and writes interleave freely.
_SERIAL_SERVER = """
import sys
from werkzeug.serving import run_simple
from moto.server import DomainDispatcherApplication, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=False, use_reloader=False)
"""


def moto_server_binary() -> str:
    found = Path(sys.executable).with_name("moto_server")
    return str(found) if found.exists() else (shutil.which("moto_server") or "moto_server")


@pytest.fixture(scope="session")
def dynamodb_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a DynamoDB-compatible server for this session."""
    port = free_port()
    log = tmp_path_factory.mktemp("dynamodb") / "moto_server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERIAL_SERVER, str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"moto_server did not start: {log.read_text()[-500:]}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def dynamodb_env(dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment naming the server and a fresh table prefix (tables of one test only)."""
    env = {
        **CREDENTIALS,
        "EDVMP_STATE": "dynamodb",
        "EDVMP_DYNAMODB_ENDPOINT_URL": dynamodb_endpoint,
        "EDVMP_DYNAMODB_TABLE_PREFIX": f"t{uuid.uuid4().hex[:10]}-",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
