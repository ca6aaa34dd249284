"""The persistent Dagster instance that ``edvmp`` commands and ``dagster dev`` share."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from edvmp_pipeline.settings import dagster_home

# The repo's dagster.yaml is the instance configuration for local use.
_REPO_INSTANCE_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
_FALLBACK_YAML = "telemetry:\n  enabled: false\n"


def ensure_dagster_home() -> Path:
    """Create ``DAGSTER_HOME`` with the project's dagster.yaml and export it."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        if _REPO_INSTANCE_YAML.exists():
            shutil.copyfile(_REPO_INSTANCE_YAML, target)
        else:
            target.write_text(_FALLBACK_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance() -> dg.DagsterInstance:
    """The persistent instance under ``DAGSTER_HOME`` (created on first use)."""
    ensure_dagster_home()
    return dg.DagsterInstance.get()
