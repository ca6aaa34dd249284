"""The code location loads the way `dagster dev` loads it (workspace.yaml at the repo root)."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from edvmp_pipeline.definitions import defs

REPO = Path(__file__).resolve().parent.parent


def test_dagster_validates_the_workspace(tmp_path: Path) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "PATH": str(Path(sys.executable).parent),
            "DAGSTER_HOME": str(tmp_path),
            "EDVMP_HOME": str(tmp_path / "home"),
        },
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Validation successful for code location edvmp" in done.stdout + done.stderr


def test_definitions_hold_the_assets_jobs_and_sensors() -> None:
    repo = defs.get_repository_def()
    assert dg.AssetKey("video_metadata") in repo.asset_graph.get_all_asset_keys()
    assert repo.has_job("ingest_videos")
    sensor = repo.get_sensor_def("s3_object_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
