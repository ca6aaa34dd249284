# One security group for every ECS task (webserver, daemon, code server and the run tasks,
# which EcsRunLauncher starts with the daemon's own subnets and security groups), plus one
# for the database, open only to the tasks. The catalog (S3) and the state (DynamoDB) are
# AWS APIs: reached through the egress rule (a NAT gateway or VPC endpoints).

resource "aws_security_group" "tasks" {
  name        = "${local.name}-tasks"
  description = "edvmp ECS tasks (Dagster webserver, daemon, code server, runs)"
  vpc_id      = var.vpc_id

  tags = {
    Name = "${local.name}-tasks"
  }
}

resource "aws_vpc_security_group_egress_rule" "tasks_all" {
  security_group_id = aws_security_group.tasks.id
  description       = "AWS APIs (S3, DynamoDB, SQS, ECR, Logs, Bedrock, ...), RDS"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "tasks_grpc" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Dagster webserver/daemon to the code server (gRPC)"
  ip_protocol                  = "tcp"
  from_port                    = local.code_server_port
  to_port                      = local.code_server_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_webserver_internal" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Dagster webserver from inside the tasks group"
  ip_protocol                  = "tcp"
  from_port                    = local.webserver_port
  to_port                      = local.webserver_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_webserver" {
  for_each = toset(var.webserver_allowed_cidrs)

  security_group_id = aws_security_group.tasks.id
  description       = "Dagster webserver from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = local.webserver_port
  to_port           = local.webserver_port
  cidr_ipv4         = each.value
}

resource "aws_security_group" "db" {
  name        = "${local.name}-db"
  description = "edvmp Dagster Postgres"
  vpc_id      = var.vpc_id

  tags = {
    Name = "${local.name}-db"
  }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_tasks" {
  security_group_id            = aws_security_group.db.id
  description                  = "Postgres from the ECS tasks"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.tasks.id
}
