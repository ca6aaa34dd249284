"""What the tests of the jobs API share: a users file and waiting for a real server."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from edvmp_pipeline.api.auth import hash_password


def users_file(folder: Path, passwords: Mapping[str, str]) -> Path:
    """``folder/users.yaml`` (the ``EDVMP_API_USERS`` format) with an argon2id hash of
    each user's password."""
    path = folder / "users.yaml"
    lines = ["users:"]
    for name, password in passwords.items():
        lines += [f"  {name}:", f'    password_hash: "{hash_password(password)}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


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
