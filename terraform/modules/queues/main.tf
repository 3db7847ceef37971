# One standard SQS queue per Celery queue (trace_tasks/queues.py), each with its own
# dead-letter queue and a redrive policy. Standard, not FIFO: a message is only a wake-up
# ("claim task N"); duplicates, reordering and loss are harmless because claims go through
# Postgres, and the re-wake loop re-sends what was lost.

resource "aws_sqs_queue" "dlq" {
  for_each                  = var.queues
  name                      = "${var.name}-${each.key}-dlq"
  message_retention_seconds = var.dlq_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = merge(var.tags, { Queue = each.key, Role = "dead-letter" })
}

resource "aws_sqs_queue" "queue" {
  for_each = var.queues
  name     = "${var.name}-${each.key}"
  # Above the longest time a wake-up legitimately stays unacknowledged (late acks: a task's
  # run); the Celery app's visibility_timeout (3600 s) says the same. A redelivery after it is
  # harmless: the task's lease decides who runs it.
  visibility_timeout_seconds = each.value.visibility_timeout_seconds
  message_retention_seconds  = each.value.message_retention_seconds
  receive_wait_time_seconds  = 20 # long polling
  sqs_managed_sse_enabled    = true
  # A wake-up received this many times without being acknowledged (a worker killed on it each
  # time) is parked in the DLQ, visible, instead of circling for ever.
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = each.value.max_receive_count
  })
  tags = merge(var.tags, { Queue = each.key, Role = "runtime" })
}

# Each DLQ takes dead letters from its own queue only.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each  = var.queues
  queue_url = aws_sqs_queue.dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.queue[each.key].arn]
  })
}

# `trace smoke` sends a message here and receives it back (TRACE_SQS_SMOKE_QUEUE_URL): no worker
# consumes it and nothing else is sent to it, so a minute's retention is plenty and no DLQ is
# needed (a smoke message that is never received just expires).
resource "aws_sqs_queue" "smoke" {
  #checkov:skip=CKV2_AWS_73:no dead-letter queue: smoke messages are received by the run that sent them or expire after a minute
  name                      = "${var.name}-smoke"
  message_retention_seconds = 60
  sqs_managed_sse_enabled   = true
  tags                      = merge(var.tags, { Role = "smoke" })
}
