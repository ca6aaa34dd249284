output "uploads_bucket" {
  description = "Upload videos here (under uploads_prefix, if set)."
  value       = aws_s3_bucket.this["uploads"].id
}

output "catalog_bucket" {
  description = "Bucket for an s3:// catalog root and catalog exports."
  value       = aws_s3_bucket.this["catalog"].id
}

output "compute_logs_bucket" {
  description = "Dagster compute logs (stdout/stderr of each step)."
  value       = aws_s3_bucket.this["logs"].id
}

output "catalog_file_system_id" {
  description = "EFS file system mounted at /mnt/catalog in the code server and run tasks."
  value       = aws_efs_file_system.catalog.id
}

output "sqs_queue_url" {
  description = "EDVMP_SQS_QUEUE_URL: S3 Object Created events."
  value       = aws_sqs_queue.uploads.url
}

output "sqs_dlq_url" {
  description = "EDVMP_SQS_DLQ_URL: events received too often or malformed."
  value       = aws_sqs_queue.dlq.url
}

output "results_table" {
  description = "DynamoDB results table (partition key: partition_key)."
  value       = aws_dynamodb_table.results.name
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
