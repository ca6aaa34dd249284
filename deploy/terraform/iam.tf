# ARNs of the lake's bucket and the state tables, spelled out (known at plan time, so that
# tests/plan.tftest.hcl can check the grants; the resources' own arn attributes are not).
locals {
  catalog_bucket_arn = "arn:${local.partition}:s3:::${aws_s3_bucket.this["catalog"].bucket}"
  state_table_arns = {
    for k, t in aws_dynamodb_table.state : k => "arn:${local.partition}:dynamodb:${local.region}:${local.account_id}:table/${t.name}"
  }
}

# Three roles:
#   execution  ECS agent: pull the image, write container logs, read the DB secret
#   control    Dagster webserver + daemon: launch, watch and stop run tasks
#   runtime    code server (sensors) + run tasks: the pipeline's own AWS access

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# ---- execution role -----------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name               = "${local.name}-ecs-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy_attachment" "execution_managed" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution" {
  # ECS resolves the task definitions' `secrets` (DAGSTER_PG_PASSWORD) with this role.
  statement {
    sid       = "ReadDagsterDbSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.db.arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "read-db-secret"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ---- control role: Dagster webserver and daemon ----------------------------------------------

resource "aws_iam_role" "control" {
  name               = "${local.name}-dagster-control"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "control" {
  statement {
    sid       = "RunTheRunTaskDefinition"
    actions   = ["ecs:RunTask"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${aws_ecs_task_definition.run.family}:*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  statement {
    sid     = "WatchAndStopTasks"
    actions = ["ecs:DescribeTasks", "ecs:StopTask", "ecs:TagResource"]
    # EcsRunLauncher tags each run task (dagster/run_id, propagated edvmp/* tags) at RunTask.
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${aws_ecs_cluster.this.name}/*"]
  }

  statement {
    sid     = "ListTasks"
    actions = ["ecs:ListTasks"]
    # ListTasks is authorized on the container-instance resource; scope it by cluster.
    resources = ["*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  statement {
    sid = "TaskDefinitions"
    # Describe: the launcher resolves DAGSTER_RUN_TASK_DEFINITION and reads the current task's
    # definition. Register: only used if task_definition is removed from dagster.yaml (the
    # launcher then registers a run definition per code location). Neither supports
    # resource-level permissions.
    actions   = ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"]
    resources = ["*"]
  }

  statement {
    sid     = "PassRunTaskRoles"
    actions = ["iam:PassRole"]
    resources = [
      aws_iam_role.execution.arn,
      aws_iam_role.runtime.arn,
    ]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid = "CurrentTaskNetwork"
    # use_current_ecs_task_config: the launcher reads the daemon's ENI (subnets, security
    # groups, public IP) to give the run task the same network configuration.
    actions   = ["ec2:DescribeNetworkInterfaces"]
    resources = ["*"]
  }

  statement {
    sid = "ReadRunWorkerLogs"
    # Run monitoring adds the tail of a failed run task's log to the failure message.
    actions   = ["logs:GetLogEvents", "logs:FilterLogEvents"]
    resources = ["${aws_cloudwatch_log_group.ecs.arn}:*"]
  }

  statement {
    sid       = "ComputeLogsList"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this["logs"].arn]
  }

  statement {
    sid       = "ComputeLogsReadWrite"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.this["logs"].arn}/*"]
  }
}

resource "aws_iam_role_policy" "control" {
  name   = "dagster-control"
  role   = aws_iam_role.control.id
  policy = data.aws_iam_policy_document.control.json
}

# ---- runtime role: code server (sensors) and run tasks -------------------------------------

resource "aws_iam_role" "runtime" {
  name               = "${local.name}-runtime"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "runtime" {
  statement {
    sid       = "UploadsList"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this["uploads"].arn]
  }

  statement {
    sid = "UploadsRead"
    # HEAD + ranged GET + presigned GET URL for ffprobe.
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.this["uploads"].arn}/*"]
  }

  # The Parquet lake (EDVMP_CATALOG, edvmp_pipeline/catalog/lake.py): ListObjectsV2 of a
  # table's files, one PutObject per file (and the If-None-Match compaction lease), GetObject
  # (and HeadObject) for reads, DeleteObject after compaction. Only under the lake prefix.
  statement {
    sid       = "LakeList"
    actions   = ["s3:ListBucket"]
    resources = [local.catalog_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.catalog_prefix, "${local.catalog_prefix}/*"]
    }
  }

  statement {
    sid       = "LakeReadWrite"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.catalog_bucket_arn}/${local.catalog_prefix}/*"]
  }

  statement {
    sid       = "ComputeLogsList"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this["logs"].arn]
  }

  statement {
    sid = "ComputeLogsWrite"
    # Run workers upload stdout/stderr of each step (S3ComputeLogManager).
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.this["logs"].arn}/*"]
  }

  statement {
    sid       = "ConsumeUploadEvents"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.uploads.arn]
  }

  statement {
    sid       = "DeadLetterMalformedEvents"
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.dlq.arn]
  }

  # The state store (edvmp_pipeline/catalog/dynamodb_state.py), exactly the calls it makes:
  # get_item, batch_get_item, put_item, update_item, batch_writer (BatchWriteItem: verdicts,
  # incident links), transact_write_items of Put and Update items (authorized as PutItem and
  # UpdateItem; it sends no ConditionCheck or Delete), query on tables and indexes, scan of
  # versions/incidents (the `edvmp query` views) and meta (the counters). No DeleteItem,
  # CreateTable or DescribeTable: on AWS the store creates nothing.
  statement {
    sid = "StateItems"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:Query",
    ]
    resources = values(local.state_table_arns)
  }

  statement {
    sid       = "StateIndexes"
    actions   = ["dynamodb:Query"]
    resources = [for arn in values(local.state_table_arns) : "${arn}/index/*"]
  }

  statement {
    sid       = "StateScans"
    actions   = ["dynamodb:Scan"]
    resources = [for k in ["versions", "incidents", "meta"] : local.state_table_arns[k]]
  }

  statement {
    sid = "ResolveRunTaskDefinition"
    # The instance (deploy/dagster.yaml) is loaded in these containers too; if its
    # EcsRunLauncher is constructed there it resolves DAGSTER_RUN_TASK_DEFINITION.
    actions   = ["ecs:DescribeTaskDefinition"]
    resources = ["*"]
  }

  # Converse is authorized as bedrock:InvokeModel.
  dynamic "statement" {
    for_each = length(local.bedrock_resource_arns) > 0 ? [1] : []
    content {
      sid       = "BedrockSummaries"
      actions   = ["bedrock:InvokeModel"]
      resources = local.bedrock_resource_arns
    }
  }
}

resource "aws_iam_role_policy" "runtime" {
  name   = "edvmp-runtime"
  role   = aws_iam_role.runtime.id
  policy = data.aws_iam_policy_document.runtime.json
}
