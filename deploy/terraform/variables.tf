# ---- placement ----------------------------------------------------------------------------

variable "region" {
  description = "AWS region for every resource."
  type        = string
  default     = "us-east-1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (also of the DynamoDB tables: <prefix>-versions, <prefix>-incidents, ...)."
  type        = string
  default     = "edvmp"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name_prefix))
    error_message = "name_prefix: 2-21 characters, lowercase letters, digits and '-', starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "VPC for the ECS tasks and RDS."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (two or more, in different AZs) for the tasks and RDS. They need a route to ECR, S3, SQS, CloudWatch Logs, Secrets Manager, DynamoDB and Bedrock (a NAT gateway or VPC endpoints)."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "RDS needs a subnet group in at least two availability zones."
  }
}

variable "webserver_allowed_cidrs" {
  description = "CIDRs that may reach the Dagster webserver on port 3000 (a VPN or bastion range). Empty: reachable only from inside the tasks' security group (use SSM port forwarding)."
  type        = list(string)
  default     = []
}

# ---- images -------------------------------------------------------------------------------

variable "user_code_image" {
  description = "URI of the image built from deploy/Dockerfile (code server and runs), e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/edvmp:2026-11-24. Prefer an immutable tag or a digest."
  type        = string
}

variable "dagster_image" {
  description = "Image of the webserver and daemon. Empty: the user-code image (it contains dagster-webserver, dagster-aws and dagster-postgres)."
  type        = string
  default     = ""
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64: must match the platform the image was built for."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

# ---- pipeline settings (EDVMP_*) -----------------------------------------------------------

variable "uploads_prefix" {
  description = "Only keys under this prefix trigger runs (EventBridge filter and EDVMP_PREFIX). Empty: the whole bucket."
  type        = string
  default     = ""
}

variable "video_extensions" {
  description = "EDVMP_VIDEO_EXTENSIONS (comma-separated, e.g. \"mp4,mov,mkv\"). Empty: the code's default."
  type        = string
  default     = ""
}

variable "bedrock_model_id" {
  description = "EDVMP_BEDROCK_MODEL_ID: a Bedrock model id or inference profile id (e.g. us.anthropic.claude-3-5-haiku-20241022-v1:0). Empty: the offline summarizer and no Bedrock permission."
  type        = string
  default     = ""
}

variable "bedrock_region" {
  description = "EDVMP_BEDROCK_REGION. Empty: the deployment region."
  type        = string
  default     = ""
}

variable "bedrock_model_arns" {
  description = "Resources for bedrock:InvokeModel. Empty: derived from bedrock_model_id (the foundation model, or the inference profile plus its foundation model in every region)."
  type        = list(string)
  default     = []
}

variable "catalog_prefix" {
  description = "Key prefix of the Parquet lake in the catalog bucket: EDVMP_CATALOG=s3://<catalog bucket>/<catalog_prefix>. The runtime role may read and write only under it."
  type        = string
  default     = "lake"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)*/?$", var.catalog_prefix))
    error_message = "catalog_prefix: a non-empty key prefix such as \"lake\" or \"edvmp/lake\" (letters, digits, '.', '_', '-', '/')."
  }
}

variable "extra_environment" {
  description = "More environment variables for the code server and the runs (e.g. EDVMP_PROBE_TIMEOUT_S, EDVMP_MAX_REDRIVES)."
  type        = map(string)
  default     = {}
}

# ---- Dagster -------------------------------------------------------------------------------

variable "max_concurrent_runs" {
  description = "QueuedRunCoordinator max_concurrent_runs: at most this many run tasks at once."
  type        = number
  default     = 10
}

variable "run_cpu" {
  description = "Fargate CPU units of each run task."
  type        = number
  default     = 1024
}

variable "run_memory" {
  description = "Fargate memory (MiB) of each run task."
  type        = number
  default     = 2048
}

variable "user_code_cpu" {
  description = "Fargate CPU units of the code server (it also evaluates the sensors)."
  type        = number
  default     = 512
}

variable "user_code_memory" {
  description = "Fargate memory (MiB) of the code server."
  type        = number
  default     = 1024
}

variable "user_code_desired_count" {
  description = "Code server tasks (Cloud Map answers with every healthy one)."
  type        = number
  default     = 1
}

variable "service_discovery_namespace" {
  description = "Cloud Map private DNS namespace; the code server is usercode.<namespace>."
  type        = string
  default     = "edvmp.internal"
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention of the ECS log group."
  type        = number
  default     = 30
}

variable "compute_log_retention_days" {
  description = "Days before Dagster compute logs in S3 expire."
  type        = number
  default     = 90
}

variable "container_insights" {
  description = "Enable CloudWatch Container Insights on the cluster."
  type        = bool
  default     = false
}

# ---- storage ---------------------------------------------------------------------------------

variable "uploads_bucket_name" {
  description = "Name of the uploads bucket. Empty: <prefix>-uploads-<account>-<region>."
  type        = string
  default     = ""
}

variable "catalog_bucket_name" {
  description = "Name of the catalog bucket. Empty: <prefix>-catalog-<account>-<region>."
  type        = string
  default     = ""
}

variable "logs_bucket_name" {
  description = "Name of the Dagster compute-log bucket. Empty: <prefix>-dagster-logs-<account>-<region>."
  type        = string
  default     = ""
}

variable "sqs_visibility_timeout_s" {
  description = "Queue visibility timeout; the sensor also passes EDVMP_SQS_VISIBILITY_TIMEOUT_S (default 300) on each receive."
  type        = number
  default     = 300
}

variable "sqs_max_receive_count" {
  description = "Receives before a message moves to the DLQ."
  type        = number
  default     = 5
}

# ---- database --------------------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class of Dagster's Postgres."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_engine_version" {
  description = "Postgres major version."
  type        = string
  default     = "16"
}

variable "db_allocated_storage_gb" {
  description = "Initial storage (GiB); autoscaling up to db_max_allocated_storage_gb."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling (GiB)."
  type        = number
  default     = 100
}

variable "db_multi_az" {
  description = "Run the database Multi-AZ."
  type        = bool
  default     = false
}

variable "db_backup_retention_days" {
  description = "Automated backup retention (days)."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Protect the database and the DynamoDB state tables from deletion (set false, apply, then destroy)."
  type        = bool
  default     = true
}

variable "secret_recovery_window_days" {
  description = "Secrets Manager recovery window of the DB secret (0 deletes at once)."
  type        = number
  default     = 7
}

variable "db_password_version" {
  description = "Bump to generate a new database password (written to RDS and the secret in the same apply)."
  type        = number
  default     = 1
}

variable "generate_db_password" {
  description = "true: Secrets Manager generates the database password. false: use db_password."
  type        = bool
  default     = true
}

variable "db_password" {
  description = "Database password when generate_db_password is false (e.g. TF_VAR_db_password). Ephemeral: kept in neither plan nor state; applied on create and when db_password_version changes."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}
