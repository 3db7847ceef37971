output "db_security_group_ids" {
  description = "Security group of each database, by name (state, data)."
  value       = { for k, sg in aws_security_group.db : k => sg.id }
}

output "db_url_secret_arns" {
  description = "Secrets Manager ARN of each database's URL, by name (state, data)."
  value       = { for k, s in aws_secretsmanager_secret.db_url : k => s.arn }
}

output "db_endpoints" {
  description = "host:port of each database, by name."
  value       = { for k, db in aws_db_instance.db : k => db.endpoint }
}

output "bucket_names" {
  description = "The buckets, by role (cold, scratch)."
  value       = { for k, b in aws_s3_bucket.bucket : k => b.id }
}

output "bucket_arns" {
  description = "The buckets' ARNs, by role (cold, scratch)."
  value       = { for k, b in aws_s3_bucket.bucket : k => b.arn }
}

output "redis_security_group_id" {
  description = "Security group of the rate-limit Redis."
  value       = aws_security_group.redis.id
}

output "redis_url" {
  description = "TRACE_DELIVERY_REDIS_URL: the rate-limit Redis over TLS (no password)."
  value       = "rediss://${aws_elasticache_replication_group.redis.primary_endpoint_address}:6379/0"
}
