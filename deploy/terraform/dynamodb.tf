# ---- DynamoDB: the state store (EDVMP_STATE=dynamodb) ----------------------------------------
# Version registry and job state, incidents, per-run incident links, compliance verdicts,
# upload jobs and counters: edvmp_pipeline/catalog/dynamodb_state.py (key design in its module
# docstring). The tables are exactly edvmp_pipeline/catalog/dynamodb_tables.py's
# table_definitions(): dynamodb_tables.json is its output for an empty prefix, and
# edvmp_pipeline_tests/test_deploy_terraform.py fails when the two differ. Regenerate with
#   .venv/bin/python -m edvmp_pipeline_tests.test_deploy_terraform > deploy/terraform/dynamodb_tables.json
# On AWS the store never creates tables (only against a local endpoint): these are the tables.

locals {
  # EDVMP_DYNAMODB_TABLE_PREFIX: tables <prefix>versions, <prefix>incidents, ...
  dynamodb_table_prefix = "${local.name}-"

  # {logical name: create_table arguments}, as boto3 takes them.
  dynamodb_tables = jsondecode(file("${path.module}/dynamodb_tables.json"))
}

resource "aws_dynamodb_table" "state" {
  for_each = local.dynamodb_tables

  name         = "${local.dynamodb_table_prefix}${each.value.TableName}"
  billing_mode = each.value.BillingMode
  hash_key     = one([for k in each.value.KeySchema : k.AttributeName if k.KeyType == "HASH"])
  range_key    = one([for k in each.value.KeySchema : k.AttributeName if k.KeyType == "RANGE"])

  dynamic "attribute" {
    for_each = each.value.AttributeDefinitions
    content {
      name = attribute.value.AttributeName
      type = attribute.value.AttributeType
    }
  }

  dynamic "global_secondary_index" {
    for_each = try(each.value.GlobalSecondaryIndexes, [])
    content {
      name            = global_secondary_index.value.IndexName
      hash_key        = one([for k in global_secondary_index.value.KeySchema : k.AttributeName if k.KeyType == "HASH"])
      range_key       = one([for k in global_secondary_index.value.KeySchema : k.AttributeName if k.KeyType == "RANGE"])
      projection_type = global_secondary_index.value.Projection.ProjectionType
    }
  }

  point_in_time_recovery {
    enabled = true
  }

  deletion_protection_enabled = var.deletion_protection
}
