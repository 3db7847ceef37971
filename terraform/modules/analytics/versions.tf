terraform {
  # 1.11: write-only attributes (passwords and generated secrets never enter the state).
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}
