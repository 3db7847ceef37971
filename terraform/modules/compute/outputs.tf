output "cluster_name" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.main.name
}

output "service_names" {
  description = "ECS service name per role."
  value       = { for k, s in aws_ecs_service.service : k => s.name }
}

output "ecr_repository_url" {
  description = "Push the platform image here (tag = image_tag)."
  value       = aws_ecr_repository.platform.repository_url
}

output "web_url" {
  description = "The load balancer's address."
  value       = "${var.web.certificate_arn == null ? "http" : "https"}://${aws_lb.web.dns_name}"
}

output "migrate_task_definition" {
  description = "Run once before each deploy (README): both databases to head."
  value       = aws_ecs_task_definition.service["migrate"].arn
}

output "migrate_network" {
  description = "Subnets and security group for `aws ecs run-task` of the migrate task."
  value = {
    subnets         = var.private_subnet_ids
    security_groups = [aws_security_group.service["migrate"].id]
  }
}

output "security_group_ids" {
  description = "Security group per role."
  value       = { for k, sg in aws_security_group.service : k => sg.id }
}

output "task_role_arns" {
  description = "Task role per role."
  value       = { for k, r in aws_iam_role.task : k => r.arn }
}
