# Roles. The execution role (one per service) lets ECS pull the image, write the log stream
# and read exactly that service's secrets. The task role (one per service) is what the code
# may do in AWS: consume its own queue, send wake-ups, use the buckets its role needs, and for
# delivery publish SMS. The udf pool's is near-empty: it consumes the udf queue and reads and
# writes cold objects (bundles, buffer batches, the files its queries read), nothing else: it
# cannot send wake-ups (TRACE_OUTBOX_FLUSH_ON_COMMIT=false there: the dispatcher publishes its
# outbox rows) nor delete anything.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  for_each           = local.all_roles
  name               = "${var.name}-${each.key}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  for_each   = local.all_roles
  role       = aws_iam_role.execution[each.key].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  for_each = local.all_roles
  statement {
    actions = ["secretsmanager:GetSecretValue"]
    # valueFrom may name a JSON key (arn:...:key::); the policy needs the secret's ARN.
    resources = distinct([for v in values(local.role_secrets[each.key]) : replace(v, "/:[^:]*::$/", "")])
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  for_each = local.all_roles
  name     = "secrets"
  role     = aws_iam_role.execution[each.key].id
  policy   = data.aws_iam_policy_document.execution_secrets[each.key].json
}

resource "aws_iam_role" "task" {
  for_each           = local.all_roles
  name               = "${var.name}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

locals {
  s3_actions = {
    read_write           = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    read_write_no_delete = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    read                 = ["s3:GetObject"]
  }
  task_access = merge(
    { for k, s in local.services : k => { queue = s.queue, sends_to = s.sends_to, cold = s.cold_bucket, scratch = s.scratch, sns = s.sns_publish, glue = s.iceberg && var.iceberg != null } },
    { migrate = { queue = null, sends_to = [], cold = "none", scratch = "none", sns = false, glue = false } },
  )
}

data "aws_iam_policy_document" "task" {
  for_each = local.task_access

  dynamic "statement" {
    for_each = each.value.queue == null ? [] : [each.value.queue]
    content {
      sid       = "ConsumeOwnQueue"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
      resources = [var.queue_arns[statement.value]]
    }
  }

  # `trace smoke`'s broker check, from any platform role (run as a one-off task).
  dynamic "statement" {
    for_each = each.key == "migrate" ? [] : [1]
    content {
      sid       = "SmokeQueue"
      actions   = ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
      resources = [var.smoke_queue_arn]
    }
  }

  dynamic "statement" {
    for_each = length(each.value.sends_to) == 0 ? [] : [1]
    content {
      sid       = "SendWakeUps"
      actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
      resources = [for q in each.value.sends_to : var.queue_arns[q]]
    }
  }

  dynamic "statement" {
    for_each = { for b, level in { cold = each.value.cold, scratch = each.value.scratch } : b => level if level != "none" }
    content {
      sid       = "Objects${title(statement.key)}"
      actions   = local.s3_actions[statement.value]
      resources = ["${var.bucket_arns[statement.key]}/*"]
    }
  }

  dynamic "statement" {
    for_each = { for b, level in { cold = each.value.cold, scratch = each.value.scratch } : b => level if level != "none" }
    content {
      sid       = "List${title(statement.key)}"
      actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
      resources = [var.bucket_arns[statement.key]]
    }
  }

  dynamic "statement" {
    for_each = each.value.sns ? [1] : []
    content {
      sid = "SmsThroughSns"
      # SMS goes to phone numbers, not topics: Publish cannot be scoped to a resource.
      actions   = ["sns:Publish"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = each.value.glue ? [1] : []
    content {
      sid = "IcebergTablesInGlue"
      # pyiceberg's Glue catalog: read, create and commit (a conditional UpdateTable) the
      # tables of the one database; the database itself is Terraform's, never created,
      # changed or dropped by the code, and no table is deleted.
      actions = ["glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:CreateTable", "glue:UpdateTable"]
      resources = [
        "arn:aws:glue:${local.region}:${local.account_id}:catalog",
        var.iceberg.glue_database_arn,
        "arn:aws:glue:${local.region}:${local.account_id}:table/${var.iceberg.glue_database_name}/*",
      ]
    }
  }

  # The migrate task uses no AWS API; a statement that grants nothing keeps the document valid.
  statement {
    sid       = "NothingElse"
    effect    = "Deny"
    actions   = ["iam:*", "sts:AssumeRole"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = local.task_access
  name     = "trace"
  role     = aws_iam_role.task[each.key].id
  policy   = data.aws_iam_policy_document.task[each.key].json
}
