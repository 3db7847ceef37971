output "glue_database_name" {
  description = "The Glue database of the Iceberg tables."
  value       = aws_glue_catalog_database.iceberg.name
}

output "glue_database_arn" {
  description = "ARN of the Glue database (its tables are <arn with table/>/<database>/*)."
  value       = aws_glue_catalog_database.iceberg.arn
}

output "athena_workgroup_name" {
  description = "The Athena workgroup for queries over the Iceberg tables."
  value       = aws_athena_workgroup.main.name
}
