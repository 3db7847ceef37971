output "log_group_names" {
  description = "Log group per role."
  value       = { for k, g in aws_cloudwatch_log_group.role : k => g.name }
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}
