variable "name" {
  description = "Deployment name: prefixes every resource and secret."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (two AZs or more) for the databases and Redis."
  type        = list(string)
}

variable "postgres_major_version" {
  description = "Postgres major version of both instances."
  type        = string
  default     = "16"
}

variable "state_instance_class" {
  description = "Instance class of the state DB (control plane: small rows, many short transactions)."
  type        = string
  default     = "db.t4g.medium"
}

variable "data_instance_class" {
  description = "Instance class of the data DB (hot chain tables, bulk COPY, range scans)."
  type        = string
  default     = "db.m7g.large"
}

variable "state_storage_gb" {
  description = "Initial storage of the state DB, GiB (autoscaling to 4x)."
  type        = number
  default     = 50
}

variable "data_storage_gb" {
  description = "Initial storage of the data DB, GiB (autoscaling to 4x)."
  type        = number
  default     = 200
}

variable "multi_az" {
  description = "A standby in a second AZ for both instances."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery) kept."
  type        = number
  default     = 14
  validation {
    condition     = var.backup_retention_days >= 1
    error_message = "Backups are required: give at least 1 day."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the instances (turn off only to tear an environment down)."
  type        = bool
  default     = true
}

variable "password_version" {
  description = "Bump to generate and apply new database passwords (and their URL secrets)."
  type        = number
  default     = 1
}

variable "cold_bucket_name" {
  description = "The cold data bucket (TRACE_OBJECT_STORE_URL): committed Parquet, bundles, buffer batches, query exports."
  type        = string
}

variable "scratch_bucket_name" {
  description = "The scratch bucket: short-lived files (external engines' results, hand-offs), expired by lifecycle."
  type        = string
}

variable "cold_tiering_days" {
  description = "Days after which cold objects move to Intelligent-Tiering."
  type        = number
  default     = 30
}

variable "cold_noncurrent_days" {
  description = "Days a replaced or deleted cold object version is kept."
  type        = number
  default     = 30
}

variable "query_results_days" {
  description = "Backstop expiry of query exports (query-results/), past TRACE_QUERY_RESULT_TTL_SECONDS."
  type        = number
  default     = 3
}

variable "scratch_days" {
  description = "Days after which every scratch object is deleted."
  type        = number
  default     = 7
}

variable "redis_node_type" {
  description = "ElastiCache node type of the rate-limit Redis."
  type        = string
  default     = "cache.t4g.micro"
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
