output "queue_urls" {
  description = "URL of each queue, by Celery queue name: TRACE_SQS_QUEUE_URLS."
  value       = { for k, q in aws_sqs_queue.queue : k => q.url }
}

output "queue_arns" {
  description = "ARN of each queue, by Celery queue name."
  value       = { for k, q in aws_sqs_queue.queue : k => q.arn }
}

output "queue_names" {
  description = "SQS name of each queue, by Celery queue name (alarm dimensions)."
  value       = { for k, q in aws_sqs_queue.queue : k => q.name }
}

output "dlq_arns" {
  description = "ARN of each dead-letter queue, by Celery queue name."
  value       = { for k, q in aws_sqs_queue.dlq : k => q.arn }
}

output "dlq_names" {
  description = "SQS name of each dead-letter queue, by Celery queue name (alarm dimensions)."
  value       = { for k, q in aws_sqs_queue.dlq : k => q.name }
}

output "smoke_queue_url" {
  description = "URL of the queue `trace smoke` checks the broker with: TRACE_SQS_SMOKE_QUEUE_URL."
  value       = aws_sqs_queue.smoke.url
}

output "smoke_queue_arn" {
  description = "ARN of the smoke queue."
  value       = aws_sqs_queue.smoke.arn
}
