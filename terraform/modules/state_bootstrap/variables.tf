variable "bucket_name" {
  description = "Name of the S3 bucket holding Terraform state (globally unique)."
  type        = string
}

variable "lock_table_name" {
  description = "Name of the DynamoDB table holding Terraform state locks."
  type        = string
  default     = "trace-terraform-lock"
}

variable "noncurrent_version_days" {
  description = "Days an overwritten state version is kept (to roll back a bad apply)."
  type        = number
  default     = 90
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
