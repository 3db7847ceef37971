variable "name" {
  description = "Deployment name: prefixes every resource (and the SQS queues' and secrets' names the endpoint policies admit)."
  type        = string
}

variable "cidr_block" {
  description = "The VPC's IPv4 range; a /16 leaves /20 subnets for three tiers in up to four AZs."
  type        = string
  default     = "10.40.0.0/16"
}

variable "azs" {
  description = "Availability zones, two or more (RDS subnet groups need two)."
  type        = list(string)
  validation {
    condition     = length(var.azs) >= 2 && length(var.azs) <= 4
    error_message = "Give 2 to 4 availability zones."
  }
}

variable "enable_nat" {
  description = "NAT gateways for the egress tier (the delivery pool's webhooks and chat sends). Off: delivery reaches only SNS and SES, through endpoints."
  type        = bool
  default     = true
}

variable "single_nat" {
  description = "One NAT gateway for all AZs (cheaper, one AZ's outage stops webhook sends) instead of one per AZ."
  type        = bool
  default     = true
}

variable "interface_endpoints" {
  description = "AWS services reached through interface endpoints from the private tier."
  type        = list(string)
  default     = ["sqs", "secretsmanager", "sns", "email-smtp", "logs", "ecr.api", "ecr.dkr", "glue"]
}

variable "s3_bucket_names" {
  description = "The buckets the S3 gateway endpoint admits (cold data, scratch): no other bucket is reachable from the VPC."
  type        = list(string)
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
