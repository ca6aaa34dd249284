# ECS Fargate: a cluster, one log group, Cloud Map for the code server, three long-running
# services (Dagster webserver, Dagster daemon, edvmp code server) and the run task definition
# that EcsRunLauncher starts once per run (deploy/dagster.yaml `run_launcher`).

resource "aws_ecs_cluster" "this" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

# Streams: webserver/..., daemon/..., usercode/..., run/<container>/<task id> (one per run).
resource "aws_cloudwatch_log_group" "ecs" {
  name              = "/ecs/${local.name}"
  retention_in_days = var.log_retention_days
}

# ---- service discovery: usercode.<namespace> -> the code server tasks' IPs ------------------

resource "aws_service_discovery_private_dns_namespace" "this" {
  name        = var.service_discovery_namespace
  description = "edvmp internal services"
  vpc         = var.vpc_id
}

resource "aws_service_discovery_service" "user_code" {
  name = "usercode"

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.this.id
    routing_policy = "MULTIVALUE"

    dns_records {
      type = "A"
      ttl  = 10
    }
  }

  health_check_custom_config {
    failure_threshold = 1
  }
}

# ---- container environment ---------------------------------------------------------------

locals {
  # What deploy/dagster.yaml and deploy/workspace.yaml read through `env:` (every container
  # loads that instance). DAGSTER_RUN_TASK_DEFINITION is added per task definition below.
  dagster_env = {
    AWS_DEFAULT_REGION          = local.region
    AWS_REGION                  = local.region
    DAGSTER_COMPUTE_LOG_BUCKET  = aws_s3_bucket.this["logs"].bucket
    DAGSTER_MAX_CONCURRENT_RUNS = tostring(var.max_concurrent_runs)
    DAGSTER_PG_DB               = aws_db_instance.dagster.db_name
    DAGSTER_PG_HOST             = aws_db_instance.dagster.address
    DAGSTER_PG_PORT             = tostring(aws_db_instance.dagster.port)
    DAGSTER_PG_USERNAME         = aws_db_instance.dagster.username
    EDVMP_CODE_SERVER_HOST      = local.code_server_host
  }

  # The pipeline's settings (edvmp_pipeline/settings.py, sensors, summarizers). On AWS there
  # is no EDVMP_S3_ENDPOINT_URL / EDVMP_SQS_ENDPOINT_URL / EDVMP_DYNAMODB_ENDPOINT_URL: boto3
  # uses the regional endpoints and the task role.
  edvmp_env = merge(
    {
      EDVMP_BUCKET        = aws_s3_bucket.this["uploads"].bucket
      EDVMP_SQS_QUEUE_URL = aws_sqs_queue.uploads.url
      EDVMP_OBJECT_SENSOR = "off"
      EDVMP_SQS_DLQ_URL   = aws_sqs_queue.dlq.url
      EDVMP_SUMMARIZER    = local.bedrock_enabled ? "bedrock" : "offline"
      # The result tables: the Parquet lake on S3 (no shared file system between tasks).
      EDVMP_CATALOG = local.catalog_url
      # The job state, incidents and upload jobs: the DynamoDB tables of dynamodb.tf. No
      # EDVMP_DYNAMODB_ENDPOINT_URL: the regional endpoint, and the store creates no tables.
      EDVMP_STATE                 = "dynamodb"
      EDVMP_DYNAMODB_TABLE_PREFIX = local.dynamodb_table_prefix
    },
    # Optional settings: left out when empty, so that the code's defaults apply.
    {
      for k, v in {
        EDVMP_PREFIX           = var.uploads_prefix
        EDVMP_VIDEO_EXTENSIONS = var.video_extensions
        EDVMP_BEDROCK_MODEL_ID = var.bedrock_model_id
        EDVMP_BEDROCK_REGION   = local.bedrock_enabled ? local.bedrock_region : ""
      } : k => v if v != ""
    },
    var.extra_environment,
  )

  control_env = merge(local.dagster_env, {
    DAGSTER_RUN_TASK_DEFINITION = aws_ecs_task_definition.run.arn
  })
  user_code_env = merge(local.dagster_env, local.edvmp_env, {
    DAGSTER_CURRENT_IMAGE       = local.user_code_image
    DAGSTER_RUN_TASK_DEFINITION = aws_ecs_task_definition.run.arn
  })
  # The run task definition cannot name its own ARN: the family resolves to the latest revision.
  run_env = merge(local.dagster_env, local.edvmp_env, {
    DAGSTER_RUN_TASK_DEFINITION = local.run_family
  })

  run_family = "${local.name}-run"

  db_secrets = [
    { name = "DAGSTER_PG_PASSWORD", valueFrom = "${aws_secretsmanager_secret.db.arn}:password::" },
  ]

  workspace_file = "/opt/dagster/app/workspace.yaml"
}

# ---- run task definition (EcsRunLauncher: one task per run) --------------------------------

resource "aws_ecs_task_definition" "run" {
  family                   = local.run_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.run_cpu
  memory                   = var.run_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.runtime.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # No command: the launcher overrides it with `dagster api execute_run ...` for container "run".
  container_definitions = jsonencode([
    {
      name        = "run"
      image       = local.user_code_image
      essential   = true
      environment = [for k in sort(keys(local.run_env)) : { name = k, value = local.run_env[k] }]
      secrets     = local.db_secrets
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.ecs.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "run"
        }
      }
    }
  ])
}

# ---- user code: the gRPC code server (also evaluates the sensors) ---------------------------

resource "aws_ecs_task_definition" "user_code" {
  family                   = "${local.name}-usercode"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.user_code_cpu
  memory                   = var.user_code_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.runtime.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([
    {
      name      = "usercode"
      image     = local.user_code_image
      essential = true
      command = [
        "dagster", "code-server", "start", "-h", "0.0.0.0", "-p", tostring(local.code_server_port),
        "-m", "edvmp_pipeline.definitions", "--location-name", "edvmp",
      ]
      portMappings = [{ containerPort = local.code_server_port, protocol = "tcp" }]
      environment  = [for k in sort(keys(local.user_code_env)) : { name = k, value = local.user_code_env[k] }]
      secrets      = local.db_secrets
      healthCheck = {
        command     = ["CMD", "dagster", "api", "grpc-health-check", "-p", tostring(local.code_server_port)]
        interval    = 30
        timeout     = 10
        retries     = 3
        startPeriod = 120
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.ecs.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "usercode"
        }
      }
    }
  ])
}

resource "aws_ecs_service" "user_code" {
  name                    = "${local.name}-usercode"
  cluster                 = aws_ecs_cluster.this.id
  task_definition         = aws_ecs_task_definition.user_code.arn
  desired_count           = var.user_code_desired_count
  launch_type             = "FARGATE"
  platform_version        = "LATEST"
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  service_registries {
    registry_arn = aws_service_discovery_service.user_code.arn
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [
    aws_iam_role_policy.runtime,
    aws_iam_role_policy.execution,
    aws_secretsmanager_secret_version.db,
  ]
}

# ---- Dagster webserver ------------------------------------------------------------------------

resource "aws_ecs_task_definition" "webserver" {
  family                   = "${local.name}-webserver"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 1024
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.control.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([
    {
      name      = "webserver"
      image     = local.dagster_image
      essential = true
      command = [
        "dagster-webserver", "-h", "0.0.0.0", "-p", tostring(local.webserver_port),
        "-w", local.workspace_file,
      ]
      portMappings = [{ containerPort = local.webserver_port, protocol = "tcp" }]
      environment  = [for k in sort(keys(local.control_env)) : { name = k, value = local.control_env[k] }]
      secrets      = local.db_secrets
      healthCheck = {
        command = [
          "CMD", "python", "-c",
          "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${local.webserver_port}/server_info', timeout=5)",
        ]
        interval    = 30
        timeout     = 10
        retries     = 3
        startPeriod = 120
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.ecs.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "webserver"
        }
      }
    }
  ])
}

resource "aws_ecs_service" "webserver" {
  name                    = "${local.name}-webserver"
  cluster                 = aws_ecs_cluster.this.id
  task_definition         = aws_ecs_task_definition.webserver.arn
  desired_count           = 1
  launch_type             = "FARGATE"
  platform_version        = "LATEST"
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [
    aws_iam_role_policy.control,
    aws_iam_role_policy.execution,
    aws_secretsmanager_secret_version.db,
    aws_ecs_service.user_code,
  ]
}

# ---- Dagster daemon: sensors, run queue, run monitoring --------------------------------------

resource "aws_ecs_task_definition" "daemon" {
  family                   = "${local.name}-daemon"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 1024
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.control.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([
    {
      name        = "daemon"
      image       = local.dagster_image
      essential   = true
      command     = ["dagster-daemon", "run", "-w", local.workspace_file]
      environment = [for k in sort(keys(local.control_env)) : { name = k, value = local.control_env[k] }]
      secrets     = local.db_secrets
      healthCheck = {
        command     = ["CMD", "dagster-daemon", "liveness-check"]
        interval    = 60
        timeout     = 30
        retries     = 3
        startPeriod = 180
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.ecs.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "daemon"
        }
      }
    }
  ])
}

resource "aws_ecs_service" "daemon" {
  name                    = "${local.name}-daemon"
  cluster                 = aws_ecs_cluster.this.id
  task_definition         = aws_ecs_task_definition.daemon.arn
  desired_count           = 1
  launch_type             = "FARGATE"
  platform_version        = "LATEST"
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"

  # Exactly one daemon: stop the old task before starting the new one on a deploy.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [
    aws_iam_role_policy.control,
    aws_iam_role_policy.execution,
    aws_secretsmanager_secret_version.db,
    aws_ecs_service.user_code,
  ]
}
