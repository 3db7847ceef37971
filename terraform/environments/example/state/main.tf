# Applied once per account, with local state (keep its terraform.tfstate safe, or move it into
# the bucket afterwards): the bucket and lock table every environment's backend uses.
terraform {
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

variable "region" {
  description = "AWS region of the state bucket and lock table."
  type        = string
}

variable "bucket_name" {
  description = "State bucket name (globally unique), e.g. trace-terraform-state-<account id>."
  type        = string
}

provider "aws" {
  region = var.region
}

module "state" {
  source      = "../../../modules/state_bootstrap"
  bucket_name = var.bucket_name
  tags        = { Project = "trace" }
}

output "backend_config" {
  description = "Copy into the environment's backend.hcl (with its own key)."
  value       = module.state.backend_config
}
