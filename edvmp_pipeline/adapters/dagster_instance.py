"""The persistent Dagster instance that ``edvmp`` commands and the local stack share."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import dagster as dg

from edvmp_pipeline.domain.errors import ConfigError
from edvmp_pipeline.settings import dagster_home

# The repo's dagster.yaml is the instance configuration for local use.
_REPO_INSTANCE_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
_FALLBACK_YAML = "telemetry:\n  enabled: false\n"
# Present once the instance's storage schema has been created (see get_instance).
_READY_MARKER = ".edvmp-instance-ready"


def ensure_dagster_home() -> Path:
    """Create ``DAGSTER_HOME`` with the project's dagster.yaml and export it.

    Raises :class:`ConfigError` naming the path when it cannot be a directory (a file is in
    the way, no permission, read-only file system).
    """
    home = dagster_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
        target = home / "dagster.yaml"
        if not target.exists():
            if _REPO_INSTANCE_YAML.exists():
                shutil.copyfile(_REPO_INSTANCE_YAML, target)
            else:
                target.write_text(_FALLBACK_YAML)
    except OSError as exc:
        raise ConfigError(
            f"DAGSTER_HOME {home} is not usable: {exc.strerror or exc} "
            "(set DAGSTER_HOME or EDVMP_HOME to a writable directory)"
        ) from exc
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _open_instance(home: Path) -> dg.DagsterInstance:
    try:
        return dg.DagsterInstance.get()
    except OSError as exc:
        raise ConfigError(f"DAGSTER_HOME {home}: {exc.strerror or exc}") from exc
    except Exception as exc:
        # A malformed dagster.yaml (YAML or config errors) is the user's configuration.
        if isinstance(exc, dg.DagsterInvalidConfigError) or type(exc).__module__.startswith("yaml"):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{home / 'dagster.yaml'} is not a valid instance: {first}") from exc
        raise


def get_instance() -> dg.DagsterInstance:
    """The persistent instance under ``DAGSTER_HOME`` (created on first use).

    The first creation is serialised with a lock file: Dagster's SQLite storages create
    their schema on first open, and two processes doing that at once (two ``edvmp ingest``
    on a fresh home) can fail with "table runs already exists" or an alembic version error.
    """
    home = ensure_dagster_home()
    if (home / _READY_MARKER).exists():
        return _open_instance(home)
    try:
        lock = (home / ".edvmp-instance.lock").open("a")
    except OSError as exc:
        raise ConfigError(f"DAGSTER_HOME {home}: {exc.strerror or exc}") from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = _open_instance(home)
        # Touch each storage so its schema exists before the lock is released.
        instance.get_runs(limit=1)
        instance.get_dynamic_partitions("videos")
        instance.all_instigator_state()
        (home / _READY_MARKER).touch()
    return instance
