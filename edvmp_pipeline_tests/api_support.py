"""What the tests of the jobs API share: a users file and a real ``edvmp serve``."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from edvmp_pipeline.api.auth import hash_password
from edvmp_pipeline_tests.dagster_dev import free_port, prepare_homes, stack_env

EDVMP = str(Path(sys.executable).with_name("edvmp"))


def users_file(folder: Path, passwords: Mapping[str, str]) -> Path:
    """``folder/users.yaml`` (the ``EDVMP_API_USERS`` format) with an argon2id hash of
    each user's password."""
    path = folder / "users.yaml"
    lines = ["users:"]
    for name, password in passwords.items():
        lines += [f"  {name}:", f'    password_hash: "{hash_password(password)}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def api_env(
    tmp: Path,
    s3_env: Mapping[str, str],
    bucket: str,
    *,
    secret: str,
    passwords: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
) -> tuple[Path, dict[str, str]]:
    """A fresh home in ``tmp`` and the environment of an ``edvmp serve`` on it: the S3
    stack's settings with ``bucket`` for uploads, ``secret`` and a users file of
    ``passwords``, then ``extra``."""
    home = tmp / "home"
    prepare_homes(home)
    env = stack_env(
        home,
        {**s3_env, "EDVMP_BUCKET": bucket},
        {
            "EDVMP_API_SECRET": secret,
            "EDVMP_API_USERS": str(users_file(tmp, passwords)),
            **(extra or {}),
        },
    )
    return home, env


def wait_http(url: str, timeout: float = 60) -> None:
    """Poll ``url`` until it answers 200; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout}s")


@contextmanager
def serving(env: Mapping[str, str], log: Path) -> Iterator[str]:
    """``edvmp serve`` (uvicorn) on a free loopback port with ``env``, its output in ``log``;
    yields its base URL once ``/healthz`` answers, and stops it afterwards."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [EDVMP, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
