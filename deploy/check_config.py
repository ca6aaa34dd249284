"""Offline checks of deploy/dagster.yaml and deploy/workspace.yaml against the Dagster libraries.

Validates the instance file against Dagster's instance schema and each configured class
(QueuedRunCoordinator, EcsRunLauncher, S3ComputeLogManager) against its own config schema,
with every ``env:`` reference resolved from dummy values; validates the workspace file against
the workspace schema. No AWS access, no database: nothing is constructed that would call out.

Needs the libraries the image installs (deploy/Dockerfile); the project's dev extra has them
(``.venv/bin/python deploy/check_config.py``, run by edvmp_pipeline_tests/test_ecs_launcher.py),
or in a venv of their own:
    python -m venv /tmp/deploy-venv
    /tmp/deploy-venv/bin/pip install "dagster>=1.13,<1.14" "dagster-aws==0.29.*" \
        "dagster-postgres==0.29.*"
    /tmp/deploy-venv/bin/python deploy/check_config.py
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def env_names(node: Any) -> Iterator[str]:
    """Every NAME in an ``{env: NAME}`` mapping, anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            yield node["env"]
        for value in node.values():
            yield from env_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from env_names(value)


def dummy_value(name: str) -> str:
    """A plausible value per variable, so that IntSource fields resolve too."""
    if name.endswith(("_PORT", "_RUNS")):
        return "5432" if name.endswith("_PORT") else "10"
    if name == "DAGSTER_RUN_TASK_DEFINITION":
        return "arn:aws:ecs:us-east-1:123456789012:task-definition/edvmp-run:1"
    return f"dummy-{name.lower()}"


def check_class(section: str, data: dict[str, Any]) -> list[str]:
    """Validate one ``module``/``class``/``config`` section against the class's schema."""
    from dagster._config import process_config
    from dagster._serdes.config_class import ConfigurableClassData

    # As Dagster does: public module names (dagster.core...) map to private ones (dagster._core).
    module_name = ConfigurableClassData(data["module"], data["class"], "").module_name
    cls = getattr(importlib.import_module(module_name), data["class"])
    result = process_config(cls.config_type(), data.get("config") or {})
    if result.success:
        return []
    return [f"{section} ({data['class']}): {err.message}" for err in result.errors]


def main() -> int:
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.workspace.config_schema import process_workspace_config

    instance_doc = yaml.safe_load((HERE / "dagster.yaml").read_text())
    workspace_doc = yaml.safe_load((HERE / "workspace.yaml").read_text())
    names = sorted(set(env_names(instance_doc)) | set(env_names(workspace_doc)))
    for name in names:
        os.environ.setdefault(name, dummy_value(name))

    problems: list[str] = []
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / "dagster.yaml").write_text((HERE / "dagster.yaml").read_text())
        try:
            config, _ = dagster_instance_config(home)
        except Exception as exc:  # DagsterInvalidConfigError lists every error
            problems.append(f"dagster.yaml: {exc}")
            config = {}

    for section in ("run_coordinator", "run_launcher", "compute_logs"):
        if section in instance_doc:
            problems.extend(check_class(section, instance_doc[section]))

    if config and "postgres" not in (config.get("storage") or {}):
        problems.append("dagster.yaml: storage is not postgres")
    importlib.import_module("dagster_postgres")  # the storage classes exist in the image

    result = process_workspace_config(workspace_doc)
    if not result.success:
        problems.extend(f"workspace.yaml: {err.message}" for err in result.errors)

    print("env variables the containers must set:", ", ".join(names))
    if problems:
        print("\n".join(problems))
        print(f"0 passed, {len(problems)} failed")
        return 1
    print("dagster.yaml and workspace.yaml are valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
