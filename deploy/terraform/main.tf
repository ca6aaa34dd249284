# edvmp on AWS: uploads bucket -> EventBridge -> SQS -> Dagster (ECS Fargate) -> catalog on S3
# (Parquet lake) + job state in DynamoDB. No shared file system: every task reaches both by API.
#
#   storage.tf  S3 buckets: uploads, catalog (the Parquet lake, EDVMP_CATALOG=s3://...), logs
#   dynamodb.tf the state store's DynamoDB tables (EDVMP_STATE=dynamodb)
#   events.tf   EventBridge rule for "Object Created" on the uploads bucket -> SQS queue + DLQ
#   rds.tf      Postgres for Dagster's run/event/schedule storage, password in Secrets Manager
#   network.tf  security groups (tasks, database)
#   iam.tf      task execution role, Dagster control role, edvmp runtime role
#   ecs.tf      cluster, log group, Cloud Map, webserver / daemon / user-code services, run task

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = "edvmp", ManagedBy = "terraform" }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  name       = var.name_prefix
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  # S3 bucket names are global: default to <prefix>-<role>-<account>-<region>.
  bucket_names = {
    uploads = coalesce(var.uploads_bucket_name, "${local.name}-uploads-${local.account_id}-${local.region}")
    catalog = coalesce(var.catalog_bucket_name, "${local.name}-catalog-${local.account_id}-${local.region}")
    logs    = coalesce(var.logs_bucket_name, "${local.name}-dagster-logs-${local.account_id}-${local.region}")
  }

  # EDVMP_CATALOG: the Parquet lake under one prefix of the catalog bucket, shared by the code
  # server and every run task (the IAM grants of iam.tf are scoped to this prefix).
  catalog_prefix = trim(var.catalog_prefix, "/")
  catalog_url    = "s3://${aws_s3_bucket.this["catalog"].bucket}/${local.catalog_prefix}"

  # Bedrock: the summarizer is offline unless a model id is given.
  bedrock_enabled = var.bedrock_model_id != ""
  bedrock_region  = var.bedrock_region != "" ? var.bedrock_region : local.region
  # Cross-region inference profiles are named "<geo>.<model id>" (us., eu., apac., global., ...).
  bedrock_is_profile = can(regex("^(us|eu|apac|us-gov|global|jp|au|ca)\\.", var.bedrock_model_id))
  bedrock_base_model = local.bedrock_is_profile ? replace(var.bedrock_model_id, "/^[a-z-]+\\./", "") : var.bedrock_model_id
  bedrock_resource_arns = length(var.bedrock_model_arns) > 0 ? var.bedrock_model_arns : (
    !local.bedrock_enabled ? [] : (
      local.bedrock_is_profile ? [
        "arn:${local.partition}:bedrock:${local.bedrock_region}:${local.account_id}:inference-profile/${var.bedrock_model_id}",
        # A profile routes to the model in any of its regions.
        "arn:${local.partition}:bedrock:*::foundation-model/${local.bedrock_base_model}",
        ] : [
        "arn:${local.partition}:bedrock:${local.bedrock_region}::foundation-model/${var.bedrock_model_id}",
      ]
    )
  )

  code_server_port = 4000
  webserver_port   = 3000
  code_server_host = "usercode.${var.service_discovery_namespace}"

  user_code_image = var.user_code_image
  dagster_image   = var.dagster_image != "" ? var.dagster_image : var.user_code_image
}
