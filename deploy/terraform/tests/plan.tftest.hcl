# Offline checks of the configuration: `terraform init -backend=false && terraform test`.
# The real AWS provider plans with dummy credentials and every call that would reach AWS
# skipped or overridden below (mock providers cannot mock the ephemeral password resource, so
# the tests set generate_db_password = false and no ephemeral resource is opened). IAM policy
# documents are rendered by the provider itself, offline.

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "AKIAOFFLINETEST00000"
  secret_key                  = "offline-test-secret-key-not-real"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
}

override_data {
  target = data.aws_caller_identity.current
  values = {
    account_id = "123456789012"
  }
}

override_resource {
  target          = aws_sqs_queue.uploads
  override_during = plan
  values = {
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/edvmp-uploads"
    arn = "arn:aws:sqs:us-east-1:123456789012:edvmp-uploads"
  }
}

override_resource {
  target          = aws_sqs_queue.dlq
  override_during = plan
  values = {
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/edvmp-uploads-dlq"
    arn = "arn:aws:sqs:us-east-1:123456789012:edvmp-uploads-dlq"
  }
}

override_resource {
  target          = aws_db_instance.dagster
  override_during = plan
  values = {
    address = "edvmp-dagster.abc.us-east-1.rds.amazonaws.com"
    port    = 5432
  }
}

override_resource {
  target          = aws_secretsmanager_secret.db
  override_during = plan
  values = {
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:edvmp/dagster-postgres-AbCdEf"
  }
}

override_resource {
  target          = aws_ecs_task_definition.run
  override_during = plan
  values = {
    arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/edvmp-run:1"
  }
}

variables {
  # Mock providers cannot mock ephemeral resources: give the password instead.
  generate_db_password = false
  db_password          = "test-password-not-used-anywhere"
  vpc_id               = "vpc-0123456789abcdef0"
  private_subnet_ids   = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
  user_code_image      = "123456789012.dkr.ecr.us-east-1.amazonaws.com/edvmp:test"
}

run "offline_summarizer_by_default" {
  command = plan

  # Explicit, so that `terraform test -var-file=terraform.tfvars.example` checks this too.
  variables {
    bedrock_model_id = ""
    uploads_prefix   = ""
  }

  # The state store's tables (dynamodb_tables.json = edvmp_pipeline/catalog/dynamodb_tables.py).
  assert {
    condition = toset([for t in aws_dynamodb_table.state : t.name]) == toset([
      "edvmp-versions", "edvmp-incidents", "edvmp-incident_runs", "edvmp-violations", "edvmp-fingerprints", "edvmp-fingerprint_buckets",
      "edvmp-upload_jobs", "edvmp-meta",
    ])
    error_message = "state tables: <prefix>-versions, -incidents, -incident_runs, -violations, -fingerprints, -fingerprint_buckets, -upload_jobs, -meta"
  }

  assert {
    condition     = alltrue([for t in aws_dynamodb_table.state : t.billing_mode == "PAY_PER_REQUEST" && t.point_in_time_recovery[0].enabled])
    error_message = "state tables: on demand, point-in-time recovery"
  }

  assert {
    condition = (
      aws_dynamodb_table.state["versions"].hash_key == "partition_key" && aws_dynamodb_table.state["versions"].range_key == null
      && aws_dynamodb_table.state["incident_runs"].hash_key == "run_id" && aws_dynamodb_table.state["incident_runs"].range_key == "incident_id"
      && aws_dynamodb_table.state["violations"].hash_key == "rule_id" && aws_dynamodb_table.state["violations"].range_key == "partition_key"
    )
    error_message = "state tables: keys as in dynamodb_tables.py"
  }

  assert {
    condition = (
      toset([for i in aws_dynamodb_table.state["versions"].global_secondary_index : i.name]) == toset(["by_object", "by_run", "by_status"])
      && toset([for i in aws_dynamodb_table.state["incidents"].global_secondary_index : i.name]) == toset(["by_version", "by_due", "by_fingerprint", "by_class", "by_recency", "by_object"])
      && length(aws_dynamodb_table.state["meta"].global_secondary_index) == 0
      && alltrue([for t in aws_dynamodb_table.state : alltrue([for i in t.global_secondary_index : i.projection_type == "ALL"])])
    )
    error_message = "state tables: the indexes of dynamodb_tables.py, projecting ALL"
  }

  assert {
    condition = one([
      for i in aws_dynamodb_table.state["versions"].global_secondary_index : i if i.name == "by_status"
    ]).range_key == "age_us"
    error_message = "versions.by_status is sorted by age_us"
  }

  assert {
    condition     = local.edvmp_env["EDVMP_SUMMARIZER"] == "offline" && !contains(keys(local.edvmp_env), "EDVMP_BEDROCK_MODEL_ID")
    error_message = "no model id: offline summarizer and no EDVMP_BEDROCK_MODEL_ID"
  }

  assert {
    condition     = length(local.bedrock_resource_arns) == 0 && !contains(flatten([for st in data.aws_iam_policy_document.runtime.statement : tolist(st.actions)]), "bedrock:InvokeModel")
    error_message = "no model id: no bedrock:InvokeModel"
  }

  assert {
    condition = alltrue([
      for action in ["ecs:RunTask", "ecs:DescribeTasks", "ecs:StopTask", "ecs:ListTasks", "ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition", "iam:PassRole", "ec2:DescribeNetworkInterfaces"] :
      contains(flatten([for st in data.aws_iam_policy_document.control.statement : tolist(st.actions)]), action)
    ])
    error_message = "the daemon can launch, watch and stop run tasks"
  }

  assert {
    condition = alltrue([
      for action in ["s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:DeleteObject", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:SendMessage", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:Scan"] :
      contains(flatten([for st in data.aws_iam_policy_document.runtime.statement : tolist(st.actions)]), action)
    ])
    error_message = "the code server and runs reach S3, SQS and DynamoDB"
  }

  # Least privilege: the DynamoDB actions the state store calls, and nothing that deletes or
  # creates tables or items outside a batch; only the control role starts tasks.
  assert {
    condition = toset(flatten([
      for st in data.aws_iam_policy_document.runtime.statement : [for a in st.actions : a if startswith(a, "dynamodb:")]
      ])) == toset([
      "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
      "dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:Scan",
    ])
    error_message = "runtime role: exactly the DynamoDB actions dynamodb_state.py calls"
  }

  assert {
    condition = alltrue(flatten([
      for st in data.aws_iam_policy_document.runtime.statement : [
        for r in st.resources : startswith(r, "arn:aws:dynamodb:us-east-1:123456789012:table/edvmp-")
      ] if anytrue([for a in st.actions : startswith(a, "dynamodb:")])
    ]))
    error_message = "runtime role: DynamoDB actions only on the state tables and their indexes"
  }

  assert {
    condition = !anytrue(flatten([
      for st in data.aws_iam_policy_document.control.statement : [for a in st.actions : startswith(a, "dynamodb:")]
    ]))
    error_message = "the webserver and daemon have no DynamoDB access"
  }

  # The lake: objects under the catalog prefix only; listing conditioned on that prefix.
  assert {
    condition = alltrue(flatten([
      for st in data.aws_iam_policy_document.runtime.statement : [
        for r in st.resources : r == "arn:aws:s3:::edvmp-catalog-123456789012-us-east-1/lake/*"
      ] if contains(tolist(st.actions), "s3:DeleteObject")
    ]))
    error_message = "runtime role: writes and deletes in the catalog bucket only under lake/"
  }

  assert {
    condition = toset(flatten([
      for st in data.aws_iam_policy_document.runtime.statement : [
        for c in st.condition : tolist(c.values) if c.variable == "s3:prefix"
      ] if st.sid == "LakeList"
    ])) == toset(["lake", "lake/*"])
    error_message = "runtime role: lists the catalog bucket only under lake/"
  }

  assert {
    condition     = !anytrue([for st in data.aws_iam_policy_document.runtime.statement : anytrue([for a in st.actions : startswith(a, "elasticfilesystem:")])])
    error_message = "no EFS any more"
  }

  assert {
    condition     = contains(flatten([for st in data.aws_iam_policy_document.uploads_queue.statement : [for p in st.principals : tolist(p.identifiers)]]), "events.amazonaws.com")
    error_message = "EventBridge may send to the queue"
  }

  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.object_created.event_pattern)["detail-type"] == ["Object Created"] && !can(jsondecode(aws_cloudwatch_event_rule.object_created.event_pattern).detail.object)
    error_message = "event pattern: Object Created on the bucket, no key filter without a prefix"
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.uploads.redrive_policy).maxReceiveCount == 5
    error_message = "DLQ after 5 receives"
  }

  assert {
    condition     = aws_s3_bucket_notification.uploads.eventbridge == true
    error_message = "the uploads bucket sends its events to EventBridge"
  }

  # Every `env:` that deploy/dagster.yaml and deploy/workspace.yaml read is set on every
  # container that loads the instance.
  assert {
    condition = alltrue([
      for name in [
        "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_PG_USERNAME",
        "DAGSTER_MAX_CONCURRENT_RUNS", "DAGSTER_RUN_TASK_DEFINITION",
        "DAGSTER_COMPUTE_LOG_BUCKET", "EDVMP_CODE_SERVER_HOST",
      ] : contains(keys(local.control_env), name) && contains(keys(local.user_code_env), name) && contains(keys(local.run_env), name)
    ])
    error_message = "a variable read by deploy/dagster.yaml or deploy/workspace.yaml is missing from a container"
  }

  assert {
    condition = alltrue([
      for td in [aws_ecs_task_definition.run, aws_ecs_task_definition.user_code, aws_ecs_task_definition.webserver, aws_ecs_task_definition.daemon] :
      jsondecode(td.container_definitions)[0].secrets[0].name == "DAGSTER_PG_PASSWORD"
    ])
    error_message = "every container gets DAGSTER_PG_PASSWORD from Secrets Manager"
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.run.container_definitions)[0].name == "run"
    error_message = "EcsRunLauncher's container_name (deploy/dagster.yaml) is 'run'"
  }

  assert {
    condition     = local.run_env["EDVMP_SQS_QUEUE_URL"] == "https://sqs.us-east-1.amazonaws.com/123456789012/edvmp-uploads" && local.run_env["EDVMP_BUCKET"] == "edvmp-uploads-123456789012-us-east-1"
    error_message = "pipeline settings reach the runs"
  }

  assert {
    condition = alltrue([
      for env in [local.run_env, local.user_code_env] :
      env["EDVMP_CATALOG"] == "s3://edvmp-catalog-123456789012-us-east-1/lake" && env["EDVMP_STATE"] == "dynamodb" && env["EDVMP_DYNAMODB_TABLE_PREFIX"] == "edvmp-"
    ])
    error_message = "the runs and the code server: the S3 lake and the DynamoDB state"
  }

  assert {
    condition = alltrue([
      for td in [aws_ecs_task_definition.run, aws_ecs_task_definition.user_code] :
      length(td.volume) == 0 && !can(jsondecode(td.container_definitions)[0].mountPoints[0])
    ])
    error_message = "no volumes: the catalog is on S3, the state in DynamoDB"
  }

  assert {
    condition     = !anytrue([for k in keys(local.run_env) : startswith(k, "EDVMP_S3_") || k == "EDVMP_SQS_ENDPOINT_URL" || k == "EDVMP_DYNAMODB_ENDPOINT_URL"])
    error_message = "no endpoint overrides on AWS"
  }

  assert {
    condition     = local.code_server_host == "usercode.edvmp.internal"
    error_message = "code server host"
  }
}

run "bedrock_inference_profile" {
  command = plan

  variables {
    bedrock_model_id = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    uploads_prefix   = "incoming/"
  }

  assert {
    condition     = local.edvmp_env["EDVMP_SUMMARIZER"] == "bedrock" && local.edvmp_env["EDVMP_BEDROCK_MODEL_ID"] == "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    error_message = "a model id switches the summarizer to bedrock"
  }

  assert {
    condition = toset(local.bedrock_resource_arns) == toset([
      "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
      "arn:aws:bedrock:*::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
    ])
    error_message = "an inference profile needs the profile and its foundation model"
  }

  assert {
    condition     = contains(flatten([for st in data.aws_iam_policy_document.runtime.statement : tolist(st.actions)]), "bedrock:InvokeModel")
    error_message = "a model id grants bedrock:InvokeModel"
  }

  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.object_created.event_pattern).detail.object.key[0].prefix == "incoming/"
    error_message = "the prefix filters the events"
  }

  assert {
    condition     = local.edvmp_env["EDVMP_PREFIX"] == "incoming/"
    error_message = "the prefix reaches the listing sensor"
  }
}

run "bedrock_foundation_model" {
  command = plan

  variables {
    bedrock_model_id = "amazon.nova-lite-v1:0"
    bedrock_region   = "us-west-2"
  }

  assert {
    condition     = length(local.bedrock_resource_arns) == 1 && local.bedrock_resource_arns[0] == "arn:aws:bedrock:us-west-2::foundation-model/amazon.nova-lite-v1:0"
    error_message = "a foundation model id maps to its model ARN in the Bedrock region"
  }
}

run "catalog_prefix" {
  command = plan

  variables {
    catalog_prefix = "edvmp/lake/"
  }

  assert {
    condition     = local.run_env["EDVMP_CATALOG"] == "s3://edvmp-catalog-123456789012-us-east-1/edvmp/lake"
    error_message = "the prefix, without its trailing slash, names the lake"
  }

  assert {
    condition = contains(flatten([
      for st in data.aws_iam_policy_document.runtime.statement : tolist(st.resources)
    ]), "arn:aws:s3:::edvmp-catalog-123456789012-us-east-1/edvmp/lake/*")
    error_message = "the grants follow the prefix"
  }
}
