"""Where things live and how they are reached: one place that reads ``EDVMP_*`` variables.

Every setting has a local default, so ``edvmp ingest ./videos`` works with no configuration.
Dagster resources read the same variables through ``EnvVar`` in ``definitions.py``; this
module is for the CLI and for defaults that must agree with those.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from edvmp_pipeline.domain.errors import ConfigError

# Versions per Dagster run for `edvmp ingest`: large enough that run start-up (~0.3 s
# in-process) is noise next to probing, small enough that progress is visible in the UI.
DEFAULT_BATCH_SIZE = 500

# Every float setting is a duration in seconds (a timeout, a delay); a week is more than any
# needs. The bound is not cosmetic: Python's timers overflow near 9.2e9 s (int64
# nanoseconds), so a larger timeout would fail each probe with OverflowError at run time.
MAX_SECONDS = 7 * 86_400.0


def edvmp_home() -> Path:
    """``EDVMP_HOME`` (default ``./.edvmp``), absolute; a ConfigError when it names
    something that is not a directory (a file in the way)."""
    home = Path(os.environ.get("EDVMP_HOME") or ".edvmp").expanduser().resolve()
    if home.exists() and not home.is_dir():
        raise ConfigError(f"EDVMP_HOME {home} is not a directory")
    return home


def catalog_root() -> Path:
    """``EDVMP_CATALOG`` (default ``$EDVMP_HOME/catalog``)."""
    value = os.environ.get("EDVMP_CATALOG")
    return Path(value).expanduser().resolve() if value else edvmp_home() / "catalog"


def dagster_home() -> Path:
    """``DAGSTER_HOME`` (default ``$EDVMP_HOME/dagster``)."""
    value = os.environ.get("DAGSTER_HOME")
    return Path(value).expanduser().resolve() if value else edvmp_home() / "dagster"


def env_float(
    name: str, default: float, *, minimum: float = 0.0, maximum: float = MAX_SECONDS
) -> float:
    """A finite number greater than ``minimum`` and at most ``maximum`` from the environment,
    or a ConfigError naming the variable.

    float() reads "nan" and "inf" as numbers; neither is a usable timeout or delay (a NaN
    compares false with every bound, so it would pass the range check and then fail every
    probe at run time), so they are refused here, at start-up.
    """
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} must be a finite number")
    if value <= minimum:
        raise ConfigError(f"{name}={raw!r} must be greater than {minimum:g}")
    if value > maximum:
        raise ConfigError(f"{name}={raw!r} must be at most {maximum:g}")
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
