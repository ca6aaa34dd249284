output "uploads_bucket" {
  description = "Upload videos here (under uploads_prefix, if set)."
  value       = aws_s3_bucket.this["uploads"].id
}

output "catalog_bucket" {
  description = "Bucket of the Parquet lake."
  value       = aws_s3_bucket.this["catalog"].id
}

output "catalog_url" {
  description = "EDVMP_CATALOG of the code server and the runs: the Parquet lake (s3://<bucket>/<prefix>); `edvmp query` reads it with the same value."
  value       = local.catalog_url
}

output "compute_logs_bucket" {
  description = "Dagster compute logs (stdout/stderr of each step)."
  value       = aws_s3_bucket.this["logs"].id
}

output "sqs_queue_url" {
  description = "EDVMP_SQS_QUEUE_URL: S3 Object Created events."
  value       = aws_sqs_queue.uploads.url
}

output "sqs_dlq_url" {
  description = "EDVMP_SQS_DLQ_URL: events received too often or malformed."
  value       = aws_sqs_queue.dlq.url
}

output "dynamodb_table_prefix" {
  description = "EDVMP_DYNAMODB_TABLE_PREFIX of the code server and the runs (EDVMP_STATE=dynamodb)."
  value       = local.dynamodb_table_prefix
}

output "state_tables" {
  description = "The state store's DynamoDB tables: logical name => table name."
  value       = { for k, t in aws_dynamodb_table.state : k => t.name }
}

output "ecs_cluster" {
  description = "ECS cluster of the services and the run tasks."
  value       = aws_ecs_cluster.this.name
}

output "run_task_definition" {
  description = "Task definition EcsRunLauncher starts for each run."
  value       = aws_ecs_task_definition.run.arn
}

output "code_server_host" {
  description = "Cloud Map name of the gRPC code server (port 4000)."
  value       = local.code_server_host
}

output "webserver_service" {
  description = "ECS service of the Dagster webserver (port 3000, private subnets)."
  value       = aws_ecs_service.webserver.name
}

output "log_group" {
  description = "CloudWatch log group: streams webserver/, daemon/, usercode/, run/."
  value       = aws_cloudwatch_log_group.ecs.name
}

output "db_endpoint" {
  description = "Dagster Postgres endpoint."
  value       = aws_db_instance.dagster.address
}

output "db_secret_arn" {
  description = "Secrets Manager secret with the Dagster Postgres credentials."
  value       = aws_secretsmanager_secret.db.arn
}

output "runtime_role_arn" {
  description = "Task role of the code server and the runs."
  value       = aws_iam_role.runtime.arn
}

output "bedrock_resources" {
  description = "Resources the runtime role may call bedrock:InvokeModel on (empty: offline summarizer)."
  value       = local.bedrock_resource_arns
}
