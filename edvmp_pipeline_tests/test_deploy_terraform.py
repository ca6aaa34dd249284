"""deploy/terraform: the DynamoDB tables are the code's, and the configuration is well formed.

- ``dynamodb_tables.json`` (read by dynamodb.tf) is exactly ``table_definitions("")`` of
  edvmp_pipeline/catalog/dynamodb_tables.py;
  ``python -m edvmp_pipeline_tests.test_deploy_terraform`` prints it again after a change.
- ``terraform fmt -check`` when terraform is installed.
- ``terraform init`` / ``validate`` / ``test`` (tests/plan.tftest.hcl: a plan with dummy
  credentials, nothing sent to AWS) when the hashicorp/aws provider is available offline, in a
  plugin directory (``EDVMP_TF_PLUGIN_DIR``, default /opt/tf-plugins); the registry itself is
  not reachable from these machines, so without one these are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edvmp_pipeline.catalog.dynamodb_tables import table_definitions

TERRAFORM_DIR = Path(__file__).resolve().parent.parent / "deploy" / "terraform"
TABLES_JSON = TERRAFORM_DIR / "dynamodb_tables.json"
PROVIDER = Path("registry.terraform.io") / "hashicorp" / "aws"


def render_tables() -> str:
    """dynamodb_tables.json as it must read."""
    return json.dumps(table_definitions(""), indent=2) + "\n"


def test_terraform_tables_are_the_state_stores_tables() -> None:
    assert json.loads(TABLES_JSON.read_text()) == table_definitions(""), (
        "deploy/terraform/dynamodb_tables.json differs from table_definitions(''): regenerate "
        "with `.venv/bin/python -m edvmp_pipeline_tests.test_deploy_terraform "
        "> deploy/terraform/dynamodb_tables.json`"
    )
    tf = (TERRAFORM_DIR / "dynamodb.tf").read_text()
    assert 'file("${path.module}/dynamodb_tables.json")' in tf


def test_no_efs_left() -> None:
    for path in TERRAFORM_DIR.glob("*.tf"):
        text = path.read_text()
        assert "aws_efs_" not in text, path.name
        assert "efs_volume_configuration" not in text, path.name
        assert "aws_dynamodb_table.results" not in text, path.name


def _terraform() -> str:
    found = shutil.which("terraform")
    if not found:
        pytest.skip("terraform is not installed")
    return found


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", **(env or {})},
    )
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_terraform_fmt() -> None:
    terraform = _terraform()
    _run([terraform, "fmt", "-check", "-recursive", "-no-color", "."], TERRAFORM_DIR)


def test_terraform_validate_and_plan_tests(tmp_path: Path) -> None:
    terraform = _terraform()
    plugin_dir = Path(os.environ.get("EDVMP_TF_PLUGIN_DIR", "/opt/tf-plugins"))
    if not (plugin_dir / PROVIDER).is_dir():
        pytest.skip(
            f"no hashicorp/aws provider under {plugin_dir} (EDVMP_TF_PLUGIN_DIR) and "
            "registry.terraform.io is not reachable: terraform validate/test not run"
        )
    # A copy, so that .terraform/ and the lock file stay out of the work tree.
    work = tmp_path / "terraform"
    shutil.copytree(
        TERRAFORM_DIR, work, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl")
    )
    env = {"TF_DATA_DIR": str(tmp_path / "tf-data")}
    flags = ["-no-color", "-input=false"]
    _run([terraform, "init", "-backend=false", f"-plugin-dir={plugin_dir}", *flags], work, env)
    assert "The configuration is valid" in _run([terraform, "validate", "-no-color"], work, env)
    out = _run([terraform, "test", "-no-color"], work, env)
    assert " 0 failed" in out, out


if __name__ == "__main__":
    print(render_tables(), end="")
