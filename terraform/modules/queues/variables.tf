variable "name" {
  description = "Deployment name: queues are <name>-<queue> and <name>-<queue>-dlq."
  type        = string
}

variable "queues" {
  description = "One entry per Celery queue of trace_tasks.queues.Queue (a test keeps them equal)."
  type = map(object({
    visibility_timeout_seconds = optional(number, 3600)
    message_retention_seconds  = optional(number, 345600) # 4 days
    max_receive_count          = optional(number, 10)
  }))
  validation {
    condition     = alltrue([for q in values(var.queues) : q.visibility_timeout_seconds <= 43200 && q.max_receive_count >= 1])
    error_message = "visibility_timeout_seconds is at most 43200 (SQS's limit) and max_receive_count at least 1."
  }
}

variable "dlq_retention_seconds" {
  description = "How long a dead letter is kept (SQS's maximum: 14 days)."
  type        = number
  default     = 1209600
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
