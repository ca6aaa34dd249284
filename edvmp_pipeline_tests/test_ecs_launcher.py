"""deploy/dagster.yaml's EcsRunLauncher, launching a run of this code location against moto's ECS.

The instance is a real Dagster instance (a temporary DAGSTER_HOME with SQLite storage, not the
deployment's Postgres) whose ``run_launcher`` block is deploy/dagster.yaml's, byte for byte,
with the environment variables that deploy/terraform/ecs.tf sets on the daemon. The launcher
keeps ``use_current_ecs_task_config: true``: it finds the daemon's own task through the ECS
task metadata endpoint (``ECS_CONTAINER_METADATA_URI_V4``), which a small HTTP server on
127.0.0.1 serves here the way the Fargate agent does, naming a daemon task that runs in moto.
So cluster, launch type, subnets and security groups come from that task, as on ECS.

The run is created from the repository's workspace.yaml (the code location loads in its own
gRPC server process, as under ``dagster dev``), so it carries the same code origin that the
daemon's runs carry, and is launched with ``DagsterInstance.launch_run`` (what the
QueuedRunCoordinator's dequeuer calls).

Not covered: the run task actually starting and executing (moto runs no containers), IAM,
and the Postgres storage block (validated, not connected: ``test_deploy_config_validates``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import boto3
import dagster as dg
import pytest
import yaml

pytest.importorskip("dagster_aws.ecs")
moto = pytest.importorskip("moto")

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
REGION = "us-east-1"
CLUSTER = "edvmp"
RUN_FAMILY = "edvmp-run"
JOB_NAME = "ingest_videos"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/edvmp:test"


class _TaskMetadata(BaseHTTPRequestHandler):
    """ECS task metadata endpoint v4: ``GET $URI/task`` and ``GET $URI`` (the container)."""

    task: ClassVar[dict[str, Any]] = {}
    container: ClassVar[dict[str, Any]] = {}
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        body = self.task if self.path.rstrip("/").endswith("/task") else self.container
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


@pytest.fixture
def metadata_server() -> Iterator[tuple[str, type[_TaskMetadata]]]:
    handler = type("Handler", (_TaskMetadata,), {"task": {}, "container": {}, "paths": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v4/daemon", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Fake credentials and region, no endpoint override, a temporary DAGSTER_HOME."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECS", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("EDVMP_HOME", str(tmp_path / "edvmp_home"))
    for name in ("EDVMP_CATALOG", "EDVMP_STATE", "EDVMP_SUMMARIZER", "EDVMP_POLICY"):
        monkeypatch.delenv(name, raising=False)
    return home


def _write_instance_yaml(home: Path) -> dict[str, Any]:
    """SQLite storage plus deploy/dagster.yaml's run_launcher block, unchanged."""
    deploy_doc = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    run_launcher = deploy_doc["run_launcher"]
    instance_doc = {
        "storage": {"sqlite": {"base_dir": str(home / "storage")}},
        "run_launcher": run_launcher,
        "telemetry": {"enabled": False},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_doc, sort_keys=False))
    return run_launcher


def _daemon_task(ecs: Any, ec2: Any) -> tuple[str, str, str, str]:
    """The cluster, a VPC subnet and security group, and the daemon's running Fargate task."""
    cluster_arn = ecs.create_cluster(clusterName=CLUSTER)["cluster"]["clusterArn"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # As the Cloud Map private namespace needs (and moto's task ENIs need a private DNS name).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="edvmp-tasks", Description="tasks", VpcId=vpc)[
        "GroupId"
    ]
    ecs.register_task_definition(
        family="edvmp-daemon",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="512",
        memory="1024",
        # moto wants a container-level memory (Fargate does not): 1024, the task's size.
        containerDefinitions=[
            {"name": "daemon", "image": IMAGE, "essential": True, "memory": 1024}
        ],
    )
    daemon = ecs.run_task(
        cluster=CLUSTER,
        taskDefinition="edvmp-daemon",
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": [subnet],
                "securityGroups": [sg],
                "assignPublicIp": "DISABLED",
            }
        },
    )["tasks"][0]
    return cluster_arn, subnet, sg, daemon["taskArn"]


def _register_run_task_definition(ecs: Any) -> str:
    """The run task definition as deploy/terraform/ecs.tf registers it (container ``run``)."""
    return ecs.register_task_definition(
        family=RUN_FAMILY,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="1024",
        memory="4096",
        containerDefinitions=[
            {
                "name": "run",
                "image": IMAGE,
                "essential": True,
                "memory": 4096,
                "environment": [{"name": "EDVMP_STATE", "value": "dynamodb"}],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]


def test_ecs_run_launcher_launches_a_run_of_the_code_location(
    aws_env: Path, metadata_server: tuple[str, type[_TaskMetadata]], monkeypatch
) -> None:
    from dagster_aws.ecs import EcsRunLauncher

    from edvmp_pipeline.definitions import defs
    from edvmp_pipeline.defs.tags import TAG_ATTEMPT, TAG_OBJECT_KEY, TAG_SOURCE, TAG_TRIGGER

    uri, handler = metadata_server
    run_launcher_block = _write_instance_yaml(aws_env)
    assert run_launcher_block["config"]["use_current_ecs_task_config"] is True

    with moto.mock_aws():
        ecs = boto3.client("ecs", region_name=REGION)
        ec2 = boto3.client("ec2", region_name=REGION)
        cluster_arn, subnet, sg, daemon_arn = _daemon_task(ecs, ec2)
        run_td_arn = _register_run_task_definition(ecs)
        handler.task = {"Cluster": cluster_arn, "TaskARN": daemon_arn, "Family": "edvmp-daemon"}
        handler.container = {"Name": "daemon"}
        monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", uri)
        # What ecs.tf sets on the daemon (control_env): the run task definition's ARN.
        monkeypatch.setenv("DAGSTER_RUN_TASK_DEFINITION", run_td_arn)

        instance = dg.DagsterInstance.get()
        try:
            launcher = instance.run_launcher
            assert isinstance(launcher, EcsRunLauncher)
            # The constructor resolved the family to the registered revision's ARN.
            assert launcher.task_definition == run_td_arn
            assert launcher.container_name == "run"

            # Dagster has no public API for a job's origins (the webserver and the daemon get
            # them from their workspace), so this loads workspace.yaml the way they do.
            from dagster._core.workspace.context import WorkspaceProcessContext
            from dagster._core.workspace.load_target import WorkspaceFileTarget

            target = WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])
            with WorkspaceProcessContext(instance, target) as process_context:
                request = process_context.create_request_context()
                location = request.get_code_location("edvmp")
                (repository,) = location.get_repositories().values()
                remote_job = repository.get_full_job(JOB_NAME)

                run_tags = {
                    TAG_TRIGGER: "sqs-sensor",
                    TAG_ATTEMPT: "2",
                    TAG_SOURCE: "s3://uploads",
                    TAG_OBJECT_KEY: "videos/clip.mp4",
                }
                run = instance.create_run_for_job(
                    job_def=defs.get_job_def(JOB_NAME),
                    tags=run_tags,
                    remote_job_origin=remote_job.get_remote_origin(),
                    job_code_origin=remote_job.get_python_origin(),
                )
                instance.launch_run(run.run_id, request)

            # The launcher asked the metadata endpoint for its own task.
            assert "/v4/daemon/task" in handler.paths

            # RunTask was called: one task of the run task definition besides the daemon's.
            task_arns = ecs.list_tasks(cluster=CLUSTER)["taskArns"]
            run_arns = [arn for arn in task_arns if arn != daemon_arn]
            assert len(run_arns) == 1, task_arns
            (task,) = ecs.describe_tasks(cluster=CLUSTER, tasks=run_arns, include=["TAGS"])["tasks"]
            assert task["taskDefinitionArn"] == run_td_arn
            assert task["clusterArn"] == cluster_arn

            # From the daemon's own task (use_current_ecs_task_config): launch type, network.
            assert task["launchType"] == "FARGATE"
            eni = [a for a in task["attachments"] if a["type"] == "ElasticNetworkInterface"]
            details = {d["name"]: d["value"] for d in eni[0]["details"]}
            assert details["subnetId"] == subnet
            run_eni = ec2.describe_network_interfaces(
                NetworkInterfaceIds=[details["networkInterfaceId"]]
            )["NetworkInterfaces"][0]
            assert [g["GroupId"] for g in run_eni["Groups"]] == [sg]

            # The container override: Dagster's run-worker command for this run.
            (override,) = task["overrides"]["containerOverrides"]
            assert override["name"] == "run"
            command = override["command"]
            assert command[:3] == ["dagster", "api", "execute_run"]
            args = dg.deserialize_value(command[3])
            assert args.run_id == run.run_id
            assert args.job_origin.job_name == JOB_NAME
            assert args.job_origin.repository_origin.code_pointer.module == (
                "edvmp_pipeline.definitions"
            )

            # ECS tags: Dagster's own, plus exactly the allow-listed run tags.
            ecs_tags = {t["key"]: t["value"] for t in task["tags"]}
            assert ecs_tags["dagster/run_id"] == run.run_id
            assert ecs_tags["dagster/job_name"] == JOB_NAME
            assert ecs_tags[TAG_TRIGGER] == "sqs-sensor"
            assert ecs_tags[TAG_ATTEMPT] == "2"
            assert TAG_SOURCE not in ecs_tags
            assert TAG_OBJECT_KEY not in ecs_tags
            allow_list = run_launcher_block["config"]["propagate_tags"]["allow_list"]
            assert set(ecs_tags) == {"dagster/run_id", "dagster/job_name", *allow_list}

            # The run records its ECS task, which the daemon's run monitoring then polls.
            stored = instance.get_run_by_id(run.run_id)
            assert stored is not None
            assert stored.tags["ecs/task_arn"] == run_arns[0]
            assert stored.tags["ecs/cluster"] == cluster_arn
            assert stored.status == dg.DagsterRunStatus.STARTING
            health = launcher.check_run_worker_health(stored)
            assert health.status.value == "RUNNING", health

            # Terminating the run stops its task.
            assert launcher.terminate(run.run_id)
            stopped = ecs.describe_tasks(cluster=CLUSTER, tasks=run_arns)["tasks"][0]
            assert stopped["desiredStatus"] == "STOPPED"
        finally:
            instance.dispose()


def test_deploy_config_validates() -> None:
    """deploy/check_config.py: the whole deploy/dagster.yaml and deploy/workspace.yaml
    through Dagster's own schema validation, every configured class against its own schema.
    """
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "check_config.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "dagster.yaml and workspace.yaml are valid" in done.stdout
