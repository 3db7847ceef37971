output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.main.id
}

output "vpc_cidr_block" {
  description = "The VPC's IPv4 range."
  value       = aws_vpc.main.cidr_block
}

output "public_subnet_ids" {
  description = "Public tier: load balancer, NAT gateways."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private tier (no default route): databases, endpoints, every service but delivery."
  value       = aws_subnet.private[*].id
}

output "egress_subnet_ids" {
  description = "Egress tier (default route to NAT when enabled): the delivery pool."
  value       = aws_subnet.egress[*].id
}

output "endpoints_security_group_id" {
  description = "Security group of the interface endpoints; services allow HTTPS egress to it."
  value       = aws_security_group.endpoints.id
}

output "s3_prefix_list_id" {
  description = "The S3 gateway endpoint's prefix list; services allow HTTPS egress to it."
  value       = aws_vpc_endpoint.s3.prefix_list_id
}

output "nat_public_ips" {
  description = "The NAT gateways' addresses: what webhook receivers see deliveries come from."
  value       = aws_eip.nat[*].public_ip
}
