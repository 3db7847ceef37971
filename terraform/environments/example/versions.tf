terraform {
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
  # Partial configuration: `terraform init -backend-config=backend.hcl` (see
  # backend.hcl.example; the bucket and table come from ./state).
  backend "s3" {}
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { Project = "trace", Environment = var.name }
  }
}
