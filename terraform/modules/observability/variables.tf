variable "name" {
  description = "Deployment name: prefixes every resource."
  type        = string
}

variable "roles" {
  description = "Roles that log: web, beat, worker-<queue>, migrate (one log group each)."
  type        = list(string)
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps logs."
  type        = number
  default     = 30
}

variable "cluster_name" {
  description = "The ECS cluster's name."
  type        = string
}

variable "service_names" {
  description = "ECS service name per role."
  type        = map(string)
}

variable "queue_names" {
  description = "SQS queue name per Celery queue."
  type        = map(string)
}

variable "dlq_names" {
  description = "SQS dead-letter queue name per Celery queue."
  type        = map(string)
}

variable "queue_age_seconds" {
  description = "Alarm threshold of the oldest wake-up's age, per queue (the default applies to the rest)."
  type        = map(number)
  default     = {}
}

variable "default_queue_age_seconds" {
  description = "Alarm threshold of the oldest wake-up's age for queues not in queue_age_seconds."
  type        = number
  default     = 300
}

variable "tip_lag_blocks" {
  description = "chain_id -> blocks of tip lag past which the alarm fires."
  type        = map(number)
  default     = {}
}

variable "metric_namespace" {
  description = "CloudWatch namespace the /metrics gauges are published to."
  type        = string
  default     = "Trace"
}

variable "alarm_emails" {
  description = "Addresses subscribed to the alarm topic (each confirms by mail)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
