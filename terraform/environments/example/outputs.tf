output "web_url" {
  description = "The web service's address."
  value       = module.compute.web_url
}

output "ecr_repository_url" {
  description = "Where to push the platform image."
  value       = module.compute.ecr_repository_url
}

output "migrate" {
  description = "What `aws ecs run-task` needs to run the migrate task."
  value = {
    cluster         = module.compute.cluster_name
    task_definition = module.compute.migrate_task_definition
    network         = module.compute.migrate_network
  }
}

output "queue_urls" {
  description = "SQS queue per Celery queue."
  value       = module.queues.queue_urls
}

output "nat_public_ips" {
  description = "Addresses webhook receivers see deliveries come from (for their allowlists)."
  value       = module.network.nat_public_ips
}

output "alarm_topic_arn" {
  description = "The alarm topic."
  value       = module.observability.alarm_topic_arn
}

output "iceberg" {
  description = "Where external engines find the Iceberg tables: the Glue database and the Athena workgroup."
  value = {
    glue_database    = module.analytics.glue_database_name
    athena_workgroup = module.analytics.athena_workgroup_name
  }
}
