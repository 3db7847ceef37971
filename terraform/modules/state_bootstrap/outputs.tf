output "bucket" {
  description = "The state bucket's name (backend `bucket`)."
  value       = aws_s3_bucket.state.id
}

output "lock_table" {
  description = "The lock table's name (backend `dynamodb_table`)."
  value       = aws_dynamodb_table.lock.name
}

output "backend_config" {
  description = "The backend settings an environment's backend.hcl needs, besides its key."
  value = {
    bucket         = aws_s3_bucket.state.id
    dynamodb_table = aws_dynamodb_table.lock.name
    region         = aws_s3_bucket.state.region
    encrypt        = true
  }
}
