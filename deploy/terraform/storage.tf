# ---- S3: uploads (videos), catalog (Parquet), logs (Dagster compute logs) --------------------

resource "aws_s3_bucket" "this" {
  for_each = local.bucket_names

  bucket = each.value
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = aws_s3_bucket.this

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  rule {
    # SSE-S3: presigned GET URLs (how ffprobe reads uploads in place) need no KMS grant.
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# Uploads and catalog keep object versions (an overwritten video is a new version to process;
# a compacted catalog file can be recovered). Compute logs do not need versions.
resource "aws_s3_bucket_versioning" "this" {
  for_each = { for k, b in aws_s3_bucket.this : k => b if k != "logs" }

  bucket = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

data "aws_iam_policy_document" "tls_only" {
  for_each = aws_s3_bucket.this

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      each.value.arn,
      "${each.value.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  policy = data.aws_iam_policy_document.tls_only[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "uploads" {
  bucket = aws_s3_bucket.this["uploads"].id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "catalog" {
  bucket = aws_s3_bucket.this["catalog"].id

  rule {
    id     = "expire-replaced-files"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.this["logs"].id

  rule {
    id     = "expire-compute-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.compute_log_retention_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

# "Object Created" events of the uploads bucket go to EventBridge (rule in events.tf).
resource "aws_s3_bucket_notification" "uploads" {
  bucket      = aws_s3_bucket.this["uploads"].id
  eventbridge = true
}

# ---- EFS: the catalog folder (Parquet tables + DuckDB file) --------------------------------
# Runs are separate Fargate tasks and the sensors run in the code server: they all read and
# write one catalog, which today is a folder (Parquet files written atomically by rename).

resource "aws_efs_file_system" "catalog" {
  creation_token   = "${local.name}-catalog"
  encrypted        = true
  performance_mode = "generalPurpose"
  throughput_mode  = "elastic"

  tags = {
    Name = "${local.name}-catalog"
  }
}

# One mount target per subnet: the subnets must be in different availability zones.
resource "aws_efs_mount_target" "catalog" {
  for_each = toset(var.private_subnet_ids)

  file_system_id  = aws_efs_file_system.catalog.id
  subnet_id       = each.value
  security_groups = [aws_security_group.efs.id]
}

resource "aws_efs_access_point" "catalog" {
  file_system_id = aws_efs_file_system.catalog.id

  # The image's non-root user (deploy/Dockerfile).
  posix_user {
    uid = 10001
    gid = 10001
  }

  root_directory {
    path = "/catalog"
    creation_info {
      owner_uid   = 10001
      owner_gid   = 10001
      permissions = "0750"
    }
  }

  tags = {
    Name = "${local.name}-catalog"
  }
}

data "aws_iam_policy_document" "efs" {
  statement {
    sid     = "RuntimeRoleThroughAccessPoint"
    effect  = "Allow"
    actions = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.runtime.arn]
    }
    resources = [aws_efs_file_system.catalog.arn]
    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.catalog.arn]
    }
  }

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    resources = [aws_efs_file_system.catalog.arn]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_efs_file_system_policy" "catalog" {
  file_system_id = aws_efs_file_system.catalog.id
  policy         = data.aws_iam_policy_document.efs.json
}

# ---- DynamoDB: results store of the AWS results mode -----------------------------------------

resource "aws_dynamodb_table" "results" {
  name         = "${replace(local.name, "-", "_")}_results"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "partition_key"

  attribute {
    name = "partition_key"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  deletion_protection_enabled = var.deletion_protection
}
