"""Where things live and how they are reached: one place that reads ``EDVMP_*`` variables.

Every setting has a local default, so ``edvmp ingest ./videos`` works with no configuration.
Dagster resources read the same variables through ``EnvVar`` in ``definitions.py``; this
module is for the CLI and for defaults that must agree with those.
"""

from __future__ import annotations

import os
from pathlib import Path

from edvmp_pipeline.domain.errors import ConfigError

# Versions per Dagster run for `edvmp ingest`: large enough that run start-up (~0.3 s
# in-process) is noise next to probing, small enough that progress is visible in the UI.
DEFAULT_BATCH_SIZE = 500


def edvmp_home() -> Path:
    """``EDVMP_HOME`` (default ``./.edvmp``), absolute."""
    return Path(os.environ.get("EDVMP_HOME") or ".edvmp").expanduser().resolve()


def catalog_root() -> Path:
    """``EDVMP_CATALOG`` (default ``$EDVMP_HOME/catalog``)."""
    value = os.environ.get("EDVMP_CATALOG")
    return Path(value).expanduser().resolve() if value else edvmp_home() / "catalog"


def dagster_home() -> Path:
    """``DAGSTER_HOME`` (default ``$EDVMP_HOME/dagster``)."""
    value = os.environ.get("DAGSTER_HOME")
    return Path(value).expanduser().resolve() if value else edvmp_home() / "dagster"


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    """A positive number from the environment, or a ConfigError naming the variable."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= minimum:
        raise ConfigError(f"{name}={raw!r} must be greater than {minimum:g}")
    return value


def env_int(name: str, default: int, *, minimum: int = 1) -> int:
    """An integer >= ``minimum`` from the environment, or a ConfigError naming the variable."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def probe_workers_default() -> int:
    """Parallel ffprobe processes: one per core (more do not help, see ARCHITECTURE.md)."""
    return max(1, os.cpu_count() or 1)
