variable "name" {
  description = "Deployment name (lowercase, short): prefixes every resource."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "2-21 characters: lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "azs" {
  description = "Availability zones (2-4) of the region."
  type        = list(string)
}

variable "vpc_cidr" {
  description = "The VPC's IPv4 range."
  type        = string
  default     = "10.40.0.0/16"
}

variable "enable_nat" {
  description = "NAT for the delivery pool's webhooks; off: SNS and SES only."
  type        = bool
  default     = true
}

variable "single_nat" {
  description = "One NAT gateway instead of one per AZ."
  type        = bool
  default     = true
}

variable "multi_az" {
  description = "RDS standbys in a second AZ."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Protect the databases and the load balancer from deletion."
  type        = bool
  default     = true
}

variable "image_tag" {
  description = "The platform image's tag in the ECR repository this creates."
  type        = string
}

variable "platform_workers" {
  description = "Tasks of the platform pool (backfills fan out across them)."
  type        = number
  default     = 2
}

variable "udf_workers" {
  description = "Tasks of the udf pool."
  type        = number
  default     = 1
}

variable "web_hostnames" {
  description = "Host names the web service answers (TRACE_ALLOWED_HOSTS, with the load balancer's)."
  type        = list(string)
  default     = []
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS on the load balancer; null: HTTP only."
  type        = string
  default     = null
}

variable "rpc_cidr_blocks" {
  description = "Ranges of the chain RPC nodes the chain-reading pools may reach."
  type        = list(string)
  default     = []
}

variable "rpc_pool_secret_arns" {
  description = "RPC pool name -> Secrets Manager ARN of its URLs (TRACE_RPC_POOL_<NAME>)."
  type        = map(string)
  default     = {}
}

variable "smtp_secret_arn" {
  description = "Secrets Manager ARN of SES SMTP credentials ({username, password}); null: no email."
  type        = string
  default     = null
}

variable "default_from_email" {
  description = "Sender of alert emails (a verified SES identity)."
  type        = string
}

variable "environment" {
  description = "Extra TRACE_* settings for every role (docs/configuration.md)."
  type        = map(string)
  default     = {}
}

variable "tip_lag_blocks" {
  description = "chain_id -> tip lag alarm threshold in blocks."
  type        = map(number)
  default     = {}
}

variable "alarm_emails" {
  description = "Addresses that receive alarms."
  type        = list(string)
  default     = []
}
