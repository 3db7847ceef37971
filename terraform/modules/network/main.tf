# The VPC in three tiers per availability zone:
# - public: the load balancer and the NAT gateways;
# - private: every service but delivery; their route tables have no default route at all, so
#   no security group mistake can give them the internet;
# - egress: the delivery pool only, the one tier whose default route goes to a NAT gateway
#   (when enable_nat is on).
# AWS services are reached through VPC endpoints (S3 gateway; interface endpoints for SQS,
# Secrets Manager, SNS, SES SMTP, CloudWatch Logs, ECR), each with a policy that admits only
# this account's principals and, for S3, SQS and Secrets Manager, only this deployment's
# resources: the query path's credentials cannot reach another bucket through them.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  az_count = length(var.azs)
  # /20s carved from the VPC's range: public 0..n-1, private 4..4+n-1, egress 8..8+n-1.
  public_cidrs  = [for i in range(local.az_count) : cidrsubnet(var.cidr_block, 4, i)]
  private_cidrs = [for i in range(local.az_count) : cidrsubnet(var.cidr_block, 4, i + 4)]
  egress_cidrs  = [for i in range(local.az_count) : cidrsubnet(var.cidr_block, 4, i + 8)]
  nat_count     = var.enable_nat ? (var.single_nat ? 1 : local.az_count) : 0
  region        = data.aws_region.current.name
  account_id    = data.aws_caller_identity.current.account_id
}

resource "aws_vpc" "main" {
  #checkov:skip=CKV2_AWS_11:no VPC flow logs yet (cost; egress is already narrowed by security groups and the private tier has no route out); not done, see terraform/README.md
  cidr_block           = var.cidr_block
  enable_dns_support   = true
  enable_dns_hostnames = true # interface endpoints' private DNS needs both
  tags                 = merge(var.tags, { Name = var.name })
}

# No rule at all: nothing may use the default security group.
resource "aws_default_security_group" "none" {
  vpc_id = aws_vpc.main.id
  tags   = merge(var.tags, { Name = "${var.name}-default-unused" })
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id
  tags   = merge(var.tags, { Name = var.name })
}

resource "aws_subnet" "public" {
  count             = local.az_count
  vpc_id            = aws_vpc.main.id
  availability_zone = var.azs[count.index]
  cidr_block        = local.public_cidrs[count.index]
  tags              = merge(var.tags, { Name = "${var.name}-public-${var.azs[count.index]}", Tier = "public" })
}

resource "aws_subnet" "private" {
  count             = local.az_count
  vpc_id            = aws_vpc.main.id
  availability_zone = var.azs[count.index]
  cidr_block        = local.private_cidrs[count.index]
  tags              = merge(var.tags, { Name = "${var.name}-private-${var.azs[count.index]}", Tier = "private" })
}

resource "aws_subnet" "egress" {
  count             = local.az_count
  vpc_id            = aws_vpc.main.id
  availability_zone = var.azs[count.index]
  cidr_block        = local.egress_cidrs[count.index]
  tags              = merge(var.tags, { Name = "${var.name}-egress-${var.azs[count.index]}", Tier = "egress" })
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id
  tags   = merge(var.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.main.id
}

resource "aws_route_table_association" "public" {
  count          = local.az_count
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# Private: local routes and the S3 gateway endpoint only.
resource "aws_route_table" "private" {
  vpc_id = aws_vpc.main.id
  tags   = merge(var.tags, { Name = "${var.name}-private" })
}

resource "aws_route_table_association" "private" {
  count          = local.az_count
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

resource "aws_eip" "nat" {
  count  = local.nat_count
  domain = "vpc"
  tags   = merge(var.tags, { Name = "${var.name}-nat-${count.index}" })
}

resource "aws_nat_gateway" "main" {
  count         = local.nat_count
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  tags          = merge(var.tags, { Name = "${var.name}-nat-${count.index}" })
  depends_on    = [aws_internet_gateway.main]
}

# Egress: one table per AZ so each uses its own AZ's NAT gateway (or the single one).
resource "aws_route_table" "egress" {
  count  = local.az_count
  vpc_id = aws_vpc.main.id
  tags   = merge(var.tags, { Name = "${var.name}-egress-${var.azs[count.index]}" })
}

resource "aws_route" "egress_nat" {
  count                  = var.enable_nat ? local.az_count : 0
  route_table_id         = aws_route_table.egress[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.main[var.single_nat ? 0 : count.index].id
}

resource "aws_route_table_association" "egress" {
  count          = local.az_count
  subnet_id      = aws_subnet.egress[count.index].id
  route_table_id = aws_route_table.egress[count.index].id
}

# --- VPC endpoints ------------------------------------------------------------------------

data "aws_iam_policy_document" "s3_endpoint" {
  #checkov:skip=CKV_AWS_283:an endpoint policy names no principal of its own: Principal * is narrowed by the aws:PrincipalAccount condition to this account, the actions and resources to the named buckets
  statement {
    sid     = "ThisDeploymentsBuckets"
    actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = flatten([
      for bucket in var.s3_bucket_names : ["arn:aws:s3:::${bucket}", "arn:aws:s3:::${bucket}/*"]
    ])
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account_id]
    }
  }
  # ECR keeps image layers in an AWS-owned bucket: image pulls need it.
  statement {
    sid       = "EcrImageLayers"
    actions   = ["s3:GetObject"]
    resources = ["arn:aws:s3:::prod-${local.region}-starport-layer-bucket/*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
  }
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.main.id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = concat([aws_route_table.private.id], aws_route_table.egress[*].id)
  policy            = data.aws_iam_policy_document.s3_endpoint.json
  tags              = merge(var.tags, { Name = "${var.name}-s3" })
}

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-endpoints"
  description = "Interface VPC endpoints: HTTPS from inside the VPC"
  vpc_id      = aws_vpc.main.id
  tags        = merge(var.tags, { Name = "${var.name}-endpoints" })
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_https" {
  security_group_id = aws_security_group.endpoints.id
  description       = "HTTPS from the VPC"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = var.cidr_block
}

# SES's SMTP interface (email channels) listens on 587 as well as 465/2587.
resource "aws_vpc_security_group_ingress_rule" "endpoints_smtp" {
  security_group_id = aws_security_group.endpoints.id
  description       = "SMTP submission (SES) from the VPC"
  ip_protocol       = "tcp"
  from_port         = 587
  to_port           = 587
  cidr_ipv4         = var.cidr_block
}

locals {
  # Resource patterns per endpoint; "*" where the service's resources are not this
  # deployment's own (ECR's auth token, CloudWatch Logs' streams are scoped by the roles).
  endpoint_resources = {
    "sqs"            = ["arn:aws:sqs:${local.region}:${local.account_id}:${var.name}-*"]
    "secretsmanager" = ["arn:aws:secretsmanager:${local.region}:${local.account_id}:secret:${var.name}/*"]
  }
}

data "aws_iam_policy_document" "interface_endpoint" {
  #checkov:skip=CKV_AWS_49:an endpoint policy, not a role's: it limits the endpoint to this account's principals and this deployment's resources; what each principal may do is its role's IAM policy
  for_each = toset(var.interface_endpoints)
  statement {
    sid       = "ThisAccountOnly"
    actions   = ["*"]
    resources = lookup(local.endpoint_resources, each.key, ["*"])
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = toset(var.interface_endpoints)
  vpc_id              = aws_vpc.main.id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.endpoints.id]
  # SES SMTP endpoints take no policy.
  policy = each.key == "email-smtp" ? null : data.aws_iam_policy_document.interface_endpoint[each.key].json
  tags   = merge(var.tags, { Name = "${var.name}-${each.key}" })
}
