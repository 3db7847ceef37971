variable "name" {
  description = "Deployment name: prefixes every resource."
  type        = string
}

variable "image_tag" {
  description = "Tag of the platform image (deploy/Dockerfile) in this module's ECR repository."
  type        = string
}

variable "images_kept" {
  description = "How many images the ECR repository keeps."
  type        = number
  default     = 30
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets (an internet-facing load balancer)."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Private subnets (no default route): every service but delivery."
  type        = list(string)
}

variable "egress_subnet_ids" {
  description = "Egress subnets (default route to NAT): pools with internet_egress (delivery)."
  type        = list(string)
}

variable "endpoints_security_group_id" {
  description = "Security group of the interface VPC endpoints."
  type        = string
}

variable "s3_prefix_list_id" {
  description = "Prefix list of the S3 gateway endpoint."
  type        = string
}

variable "db_security_group_ids" {
  description = "Security group of each database (state, data)."
  type        = map(string)
}

variable "db_url_secret_arns" {
  description = "Secrets Manager ARN of each database URL (state, data)."
  type        = map(string)
}

variable "redis_security_group_id" {
  description = "Security group of the rate-limit Redis."
  type        = string
}

variable "redis_url" {
  description = "TRACE_DELIVERY_REDIS_URL."
  type        = string
}

variable "bucket_names" {
  description = "Bucket names by role (cold, scratch)."
  type        = map(string)
}

variable "bucket_arns" {
  description = "Bucket ARNs by role (cold, scratch)."
  type        = map(string)
}

variable "queue_urls" {
  description = "SQS queue URL per Celery queue (TRACE_SQS_QUEUE_URLS)."
  type        = map(string)
}

variable "queue_arns" {
  description = "SQS queue ARN per Celery queue."
  type        = map(string)
}

variable "smoke_queue_url" {
  description = "URL of the queue `trace smoke` sends to and receives from (TRACE_SQS_SMOKE_QUEUE_URL)."
  type        = string
}

variable "smoke_queue_arn" {
  description = "ARN of the smoke queue: every platform role may send to, receive from and delete on it."
  type        = string
}

variable "log_group_names" {
  description = "CloudWatch log group per role: web, beat, worker-<queue>, migrate."
  type        = map(string)
}

variable "pools" {
  description = "One worker pool per Celery queue, keyed by queue name (deploy/Procfile's worker_<queue>)."
  type = map(object({
    pool                  = optional(string, "prefork")
    concurrency           = number
    cpu                   = number
    memory                = number
    desired_count         = number
    databases             = optional(list(string), ["state", "data"])
    cold_bucket           = optional(string, "none") # none | read | read_write | read_write_no_delete
    scratch_bucket        = optional(string, "none")
    sends_wakeups         = optional(bool, true)
    internet_egress       = optional(bool, false)
    rpc_egress            = optional(bool, false)
    sns_publish           = optional(bool, false)
    iceberg_glue          = optional(bool, false) # syncs the Iceberg tables in Glue (var.iceberg)
    run_as_root           = optional(bool, false)
    ephemeral_storage_gib = optional(number, 21)
    environment           = optional(map(string), {})
  }))
  validation {
    condition     = alltrue([for q, p in var.pools : q == "delivery" || !(p.internet_egress || p.sns_publish)])
    error_message = "Only the delivery pool may reach the internet or publish SMS (TRACE.md, security model)."
  }
  validation {
    condition     = alltrue([for q, p in var.pools : q == "udf" || !p.run_as_root])
    error_message = "Only the udf pool runs as root (its sandbox drops each slot to its own uid)."
  }
  validation {
    condition     = alltrue([for p in values(var.pools) : contains(["prefork", "threads"], p.pool) && alltrue([for b in [p.cold_bucket, p.scratch_bucket] : contains(["none", "read", "read_write", "read_write_no_delete"], b)])])
    error_message = "pool is prefork or threads; bucket access is none, read, read_write or read_write_no_delete."
  }
}

variable "web" {
  description = "The web service and its load balancer."
  type = object({
    cpu              = optional(number, 1024)
    memory           = optional(number, 2048)
    desired_count    = optional(number, 2)
    gunicorn_workers = optional(number, 2)
    allowed_hosts    = list(string)
    certificate_arn  = optional(string) # null: HTTP only (a test environment)
    internal         = optional(bool, false)
    ingress_cidr     = optional(string, "0.0.0.0/0")
  })
}

variable "rpc_cidr_blocks" {
  description = "Address ranges of the chain RPC nodes (a self-hosted node's subnet, a peered VPC, a provider's PrivateLink endpoint): the only place the chain-reading pools reach beyond AWS APIs."
  type        = list(string)
  default     = []
  validation {
    condition     = !contains(var.rpc_cidr_blocks, "0.0.0.0/0")
    error_message = "0.0.0.0/0 would be general egress: name the RPC nodes' ranges."
  }
}

variable "rpc_ports" {
  description = "TCP ports of the RPC nodes."
  type        = list(number)
  default     = [443, 8545]
}

variable "rpc_pool_secret_arns" {
  description = "RPC pool name -> Secrets Manager ARN holding its comma-separated URLs (they carry API keys): TRACE_RPC_POOL_<NAME>. Created outside Terraform so the URLs never enter the state."
  type        = map(string)
  default     = {}
}

variable "smtp_secret_arn" {
  description = "Secrets Manager ARN of a JSON {username, password} for SES SMTP (EMAIL_HOST_USER/PASSWORD); null: no email channel."
  type        = string
  default     = null
}

variable "default_from_email" {
  description = "DEFAULT_FROM_EMAIL of alert emails (a verified SES identity)."
  type        = string
}

variable "delivery_egress_ports" {
  description = "Internet ports the delivery pool may reach (webhooks, chat, SMTP)."
  type        = list(number)
  default     = [443, 80, 587]
}

variable "environment" {
  description = "Extra settings (docs/configuration.md) for every role, e.g. TRACE_LEASE_SECONDS."
  type        = map(string)
  default     = {}
}

variable "app_secrets_version" {
  description = "Bump to generate new TRACE_SECRET_KEY, TRACE_TASK_TOKEN_SECRET and TRACE_METRICS_TOKEN."
  type        = number
  default     = 1
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Deletion protection on the load balancer (as on the databases): a destroy fails until it is turned off."
  type        = bool
  default     = true
}

variable "iceberg" {
  description = "The Glue database of the Iceberg tables (module analytics), for pools with iceberg_glue; null: none."
  type = object({
    glue_database_name = string
    glue_database_arn  = string
  })
  default = null
}
