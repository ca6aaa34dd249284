# S3 "Object Created" -> EventBridge rule -> SQS queue (read by sqs_event_sensor) -> DLQ after
# sqs_max_receive_count receives. The sensor itself also sends malformed messages to the DLQ
# (EDVMP_SQS_DLQ_URL) with the reason in the edvmp_reason attribute.

resource "aws_sqs_queue" "dlq" {
  name                      = "${local.name}-uploads-dlq"
  message_retention_seconds = 1209600 # 14 days, the maximum: time to look at what failed
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "uploads" {
  name                       = "${local.name}-uploads"
  visibility_timeout_seconds = var.sqs_visibility_timeout_s
  message_retention_seconds  = 345600 # 4 days
  receive_wait_time_seconds  = 1
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.sqs_max_receive_count
  })
}

# Only the uploads queue may use the DLQ as its dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.uploads.arn]
  })
}

resource "aws_cloudwatch_event_rule" "object_created" {
  name        = "${local.name}-uploads-object-created"
  description = "New objects in ${aws_s3_bucket.this["uploads"].bucket} for the edvmp SQS sensor"

  # Two whole patterns rather than a conditional object: both branches are strings.
  event_pattern = var.uploads_prefix == "" ? jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created"]
    detail = {
      bucket = { name = [aws_s3_bucket.this["uploads"].bucket] }
    }
    }) : jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created"]
    detail = {
      bucket = { name = [aws_s3_bucket.this["uploads"].bucket] }
      object = { key = [{ prefix = var.uploads_prefix }] }
    }
  })
}

resource "aws_cloudwatch_event_target" "uploads_queue" {
  rule      = aws_cloudwatch_event_rule.object_created.name
  target_id = "edvmp-uploads-queue"
  arn       = aws_sqs_queue.uploads.arn
}

data "aws_iam_policy_document" "uploads_queue" {
  statement {
    sid       = "EventBridgeSendsObjectCreated"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.uploads.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.object_created.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "uploads" {
  queue_url = aws_sqs_queue.uploads.id
  policy    = data.aws_iam_policy_document.uploads_queue.json
}
