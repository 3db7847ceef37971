# The stores: two RDS Postgres instances (state: Django's control plane; data: hot chain
# tables), private and encrypted with automated backups; the cold and scratch S3 buckets,
# private, encrypted, with lifecycle rules; the Redis that holds the delivery channels' rate
# limits (SQS cannot); and the Secrets Manager entries of the database URLs.
#
# Database passwords are generated at apply time and written only to write-only attributes
# (the RDS password and the URL secret), so they never enter the Terraform state. Bump
# password_version to rotate them.

locals {
  databases = {
    state = { db_name = "trace_state", instance_class = var.state_instance_class, storage_gb = var.state_storage_gb }
    data  = { db_name = "trace_data", instance_class = var.data_instance_class, storage_gb = var.data_storage_gb }
  }
}

resource "aws_db_subnet_group" "main" {
  name       = var.name
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

# One group per database; the compute module adds ingress from the services that use it.
resource "aws_security_group" "db" {
  #checkov:skip=CKV2_AWS_5:attached to aws_db_instance.db[each.key] (vpc_security_group_ids); checkov does not follow the for_each key
  for_each    = local.databases
  name        = "${var.name}-${each.key}-db"
  description = "Postgres (${each.value.db_name}): ingress only from the services that use it"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-${each.key}-db" })
}

resource "aws_db_parameter_group" "main" {
  name   = "${var.name}-postgres${var.postgres_major_version}"
  family = "postgres${var.postgres_major_version}"
  tags   = var.tags

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
}

ephemeral "aws_secretsmanager_random_password" "db" {
  for_each            = local.databases
  password_length     = 40
  exclude_punctuation = true # it goes into a URL unescaped
}

resource "aws_db_instance" "db" {
  #checkov:skip=CKV_AWS_354:Performance Insights encrypted with the AWS managed RDS key: no customer-managed KMS key in this deployment yet
  for_each                     = local.databases
  identifier                   = "${var.name}-${each.key}"
  engine                       = "postgres"
  engine_version               = var.postgres_major_version
  instance_class               = each.value.instance_class
  allocated_storage            = each.value.storage_gb
  max_allocated_storage        = each.value.storage_gb * 4
  storage_type                 = "gp3"
  storage_encrypted            = true
  db_name                      = each.value.db_name
  username                     = "trace"
  password_wo                  = ephemeral.aws_secretsmanager_random_password.db[each.key].random_password
  password_wo_version          = var.password_version
  db_subnet_group_name         = aws_db_subnet_group.main.name
  vpc_security_group_ids       = [aws_security_group.db[each.key].id]
  parameter_group_name         = aws_db_parameter_group.main.name
  publicly_accessible          = false
  multi_az                     = var.multi_az
  backup_retention_period      = var.backup_retention_days
  backup_window                = "03:00-04:00"
  maintenance_window           = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot        = true
  deletion_protection          = var.deletion_protection
  skip_final_snapshot          = false
  final_snapshot_identifier    = "${var.name}-${each.key}-final"
  auto_minor_version_upgrade   = true
  performance_insights_enabled = true
  # The Postgres log (slow statements above log_min_duration_statement) and upgrade log in
  # CloudWatch; OS metrics every minute (enhanced monitoring).
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]
  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.rds_monitoring.arn
  # Password logins stay; IAM authentication is also allowed (a way for the query role to log
  # in without a stored password, terraform/README.md).
  iam_database_authentication_enabled = true
  tags                                = merge(var.tags, { Name = "${var.name}-${each.key}" })
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_secretsmanager_secret" "db_url" {
  #checkov:skip=CKV_AWS_149:encrypted with the AWS managed key aws/secretsmanager: only this deployment's ECS execution roles may read these secrets (IAM), a CMK would add a key policy without narrowing that
  #checkov:skip=CKV2_AWS_57:the password is generated by Terraform (write-only, never in state) and rotated by bumping password_version; no rotation Lambda
  for_each    = local.databases
  name        = "${var.name}/${each.key}-db-url"
  description = "TRACE_${upper(each.key)}_DB_URL: the ${each.value.db_name} Postgres URL with its password"
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "db_url" {
  for_each                 = local.databases
  secret_id                = aws_secretsmanager_secret.db_url[each.key].id
  secret_string_wo         = "postgres://trace:${ephemeral.aws_secretsmanager_random_password.db[each.key].random_password}@${aws_db_instance.db[each.key].address}:${aws_db_instance.db[each.key].port}/${each.value.db_name}?sslmode=require"
  secret_string_wo_version = var.password_version
}

# --- S3 ---------------------------------------------------------------------------------------

locals {
  buckets = {
    cold    = var.cold_bucket_name
    scratch = var.scratch_bucket_name
  }
}

resource "aws_s3_bucket" "bucket" {
  #checkov:skip=CKV_AWS_18:no access-log bucket yet: requests are by this account's task roles only (bucket policy: TLS only, owner enforced, public access blocked); not done, see terraform/README.md
  #checkov:skip=CKV_AWS_144:one region by design; the cold bucket is versioned and can be rebuilt from the chain
  #checkov:skip=CKV2_AWS_62:nothing consumes bucket events: the dispatcher learns of new objects from task publications
  #checkov:skip=CKV_AWS_21:the cold bucket is versioned (aws_s3_bucket_versioning.cold); scratch holds attempt-scoped temporaries expired after 7 days, versions would only keep them longer
  #checkov:skip=CKV2_AWS_61:both buckets have lifecycle rules (aws_s3_bucket_lifecycle_configuration.cold and .scratch, one per for_each key), which checkov does not match to the for_each resource
  for_each = local.buckets
  bucket   = each.value
  tags     = merge(var.tags, { Name = each.value })
}

resource "aws_s3_bucket_public_access_block" "bucket" {
  for_each                = local.buckets
  bucket                  = aws_s3_bucket.bucket[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "bucket" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.bucket[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "bucket" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.bucket[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

# Cold data is committed once per version-addressed prefix and replaced, never edited:
# versioning keeps what a bad rebuild or a mistaken delete removed, for a while.
resource "aws_s3_bucket_versioning" "cold" {
  bucket = aws_s3_bucket.bucket["cold"].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "cold" {
  bucket     = aws_s3_bucket.bucket["cold"].id
  depends_on = [aws_s3_bucket_versioning.cold]

  rule {
    id     = "tiering"
    status = "Enabled"
    filter {}
    transition {
      days          = var.cold_tiering_days
      storage_class = "INTELLIGENT_TIERING"
    }
    noncurrent_version_expiration {
      noncurrent_days = var.cold_noncurrent_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }

  # Query exports are deleted by Trace's retention after TRACE_QUERY_RESULT_TTL_SECONDS; this
  # is the backstop if that loop is down.
  rule {
    id     = "query-results"
    status = "Enabled"
    filter {
      prefix = "query-results/"
    }
    expiration {
      days = var.query_results_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "scratch" {
  bucket = aws_s3_bucket.bucket["scratch"].id
  rule {
    id     = "expire"
    status = "Enabled"
    filter {}
    expiration {
      days = var.scratch_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "bucket" {
  for_each = local.buckets
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.bucket[each.key].arn, "${aws_s3_bucket.bucket[each.key].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "bucket" {
  for_each   = local.buckets
  bucket     = aws_s3_bucket.bucket[each.key].id
  policy     = data.aws_iam_policy_document.bucket[each.key].json
  depends_on = [aws_s3_bucket_public_access_block.bucket]
}

# --- Redis (delivery rate limits) -------------------------------------------------------------

resource "aws_security_group" "redis" {
  name        = "${var.name}-redis"
  description = "Redis of the delivery rate limits: ingress only from the delivery pool"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-redis" })
}

resource "aws_elasticache_subnet_group" "main" {
  name       = var.name
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

# TLS in transit and encryption at rest; no AUTH token (the provider has no write-only one,
# and a token would sit in the state): only the delivery pool's security group reaches it, and
# it holds token buckets, nothing secret.
resource "aws_elasticache_replication_group" "redis" {
  #checkov:skip=CKV_AWS_31:TLS in transit and at-rest encryption are on; no AUTH token (see the comment above): reachable only from the delivery pool's security group, it holds rate-limit counters only
  #checkov:skip=CKV_AWS_191:at rest with the AWS managed key: it holds rate-limit counters only
  #checkov:skip=CKV2_AWS_50:one node on purpose: losing it only resets the delivery channels' rate-limit buckets
  replication_group_id       = "${var.name}-ratelimit"
  description                = "Trace delivery channel rate limits"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  num_cache_clusters         = 1
  port                       = 6379
  subnet_group_name          = aws_elasticache_subnet_group.main.name
  security_group_ids         = [aws_security_group.redis.id]
  transit_encryption_enabled = true
  at_rest_encryption_enabled = true
  automatic_failover_enabled = false
  tags                       = var.tags
}
