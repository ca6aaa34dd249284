# ---- S3: uploads (videos), catalog (the Parquet lake), logs (Dagster compute logs) -----------
# The catalog's result tables are Parquet files under s3://<catalog bucket>/<catalog_prefix>/
# (EDVMP_CATALOG; edvmp_pipeline/catalog/lake.py): each file is one whole PutObject, deleted
# only after compaction merged it into a newer one. The job state is in DynamoDB (dynamodb.tf).

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
# a Parquet file deleted by compaction can be recovered for 30 days). Compute logs do not.
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
    # Once its noncurrent versions have expired, a deleted file's marker goes too.
    expiration {
      expired_object_delete_marker = true
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
