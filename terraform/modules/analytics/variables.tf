variable "name" {
  description = "Deployment name: the Athena workgroup is <name>-iceberg."
  type        = string
}

variable "glue_database_name" {
  description = "The Glue database of the Iceberg tables (TRACE_ICEBERG_NAMESPACE of the platform pool)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,254}$", var.glue_database_name))
    error_message = "glue_database_name is lowercase letters, digits and _, starting with a letter."
  }
}

variable "results_bucket_name" {
  description = "Bucket for Athena query results (the scratch bucket: results are temporary)."
  type        = string
}

variable "results_prefix" {
  description = "Key prefix of Athena results in results_bucket_name (ends with /)."
  type        = string
  default     = "athena-results/"
}

variable "bytes_scanned_cutoff_per_query" {
  description = "Athena cancels a query of the workgroup that scans more than this (bytes; at least 10 MB)."
  type        = number
  default     = 1099511627776 # 1 TiB
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
