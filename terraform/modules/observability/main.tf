# Log groups (one per role) and the alarms of TRACE.md section 8 that CloudWatch can see:
# the age of each queue's oldest wake-up, anything in a dead-letter queue, services running
# fewer tasks than desired and tasks that exit with an error, and the chain tip lag. Alarms go
# to one SNS topic (optionally mailed).

resource "aws_cloudwatch_log_group" "role" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest by default; a CMK would need a key policy for the logs service and none exists in this deployment yet
  #checkov:skip=CKV_AWS_338:retention is the deployment's choice (var.log_retention_days), not a year for everyone
  for_each          = toset(var.roles)
  name              = "/trace/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

# Not encrypted with SNS's AWS-managed key on purpose: CloudWatch and EventBridge cannot use
# that key, so they could not publish to the topic. Alarm texts carry no secrets.
resource "aws_sns_topic" "alarms" {
  #checkov:skip=CKV_AWS_26:CloudWatch alarms cannot publish to a topic encrypted with the AWS managed key aws/sns, and there is no customer-managed key yet; alarm texts hold no secret
  name = "${var.name}-alarms"
  tags = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each  = toset(var.alarm_emails)
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.key
}

resource "aws_cloudwatch_metric_alarm" "queue_age" {
  for_each            = var.queue_names
  alarm_name          = "${var.name}-${each.key}-queue-age"
  alarm_description   = "The oldest ${each.key} wake-up has waited too long: the pool is down, stuck or too small."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = lookup(var.queue_age_seconds, each.key, var.default_queue_age_seconds)
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  for_each            = var.dlq_names
  alarm_name          = "${var.name}-${each.key}-dlq-depth"
  alarm_description   = "Wake-ups of ${each.key} were dead-lettered (received too often unacknowledged: workers killed on them)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

# Container Insights: a service below its desired count for 5 minutes (crash loops, failed
# health checks, tasks that cannot start).
resource "aws_cloudwatch_metric_alarm" "tasks_missing" {
  for_each            = var.service_names
  alarm_name          = "${var.name}-${each.key}-tasks-missing"
  alarm_description   = "${each.value} runs fewer tasks than desired."
  comparison_operator = "LessThanThreshold"
  evaluation_periods  = 5
  threshold           = 0
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "missing"
    expression  = "running - desired"
    label       = "running minus desired"
    return_data = true
  }
  metric_query {
    id = "running"
    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "RunningTaskCount"
      dimensions  = { ClusterName = var.cluster_name, ServiceName = each.value }
      period      = 60
      stat        = "Minimum"
    }
  }
  metric_query {
    id = "desired"
    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "DesiredTaskCount"
      dimensions  = { ClusterName = var.cluster_name, ServiceName = each.value }
      period      = 60
      stat        = "Maximum"
    }
  }
}

# A task that stopped with a non-zero exit code (a crash, an OOM kill, a failed migration).
resource "aws_cloudwatch_event_rule" "task_failed" {
  name        = "${var.name}-task-failed"
  description = "A Trace ECS task stopped with a non-zero exit code"
  event_pattern = jsonencode({
    source      = ["aws.ecs"]
    detail-type = ["ECS Task State Change"]
    detail = {
      clusterArn = [{ wildcard = "*:cluster/${var.cluster_name}" }]
      lastStatus = ["STOPPED"]
      containers = { exitCode = [{ anything-but = 0 }] }
    }
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "task_failed" {
  rule = aws_cloudwatch_event_rule.task_failed.name
  arn  = aws_sns_topic.alarms.arn
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com", "cloudwatch.amazonaws.com"]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

# Tip lag (head - hot tip) is a gauge of GET /metrics (trace_chain_tip_lag_blocks). It reaches
# CloudWatch as metric_namespace/trace_chain_tip_lag_blocks{chain_id} once a Prometheus scraper
# publishes /metrics there (README: not wired yet); until then this alarm sees no data and
# says so (INSUFFICIENT_DATA, not OK).
resource "aws_cloudwatch_metric_alarm" "tip_lag" {
  for_each            = var.tip_lag_blocks
  alarm_name          = "${var.name}-chain-${each.key}-tip-lag"
  alarm_description   = "Chain ${each.key}: the hot tip is too far behind the head (the follower is stuck or slow)."
  namespace           = var.metric_namespace
  metric_name         = "trace_chain_tip_lag_blocks"
  dimensions          = { chain_id = each.key }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = each.value
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "missing"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}
