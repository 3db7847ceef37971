# An example environment: every module wired together. Copy this folder per environment,
# fill terraform.tfvars (from terraform.tfvars.example) and backend.hcl.

data "aws_caller_identity" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  buckets = {
    cold    = "${var.name}-cold-${local.account_id}"
    scratch = "${var.name}-scratch-${local.account_id}"
  }

  # One SQS queue (and DLQ) per Celery queue of trace_tasks/queues.py. A wake-up stays
  # unacknowledged while its task runs (late acks) except on stream, acknowledged on receipt.
  queues = {
    platform   = {}
    stream     = {}
    udf        = {}
    delivery   = { max_receive_count = 20 } # a send may outlive a killed worker more often
    dispatcher = { visibility_timeout_seconds = 300 }
  }

  # One worker pool per queue, as deploy/Procfile's worker_<queue> lines.
  pools = {
    platform = {
      concurrency           = 2
      cpu                   = 2048
      memory                = 8192
      desired_count         = var.platform_workers
      cold_bucket           = "read_write"
      scratch_bucket        = "read_write"
      rpc_egress            = true
      iceberg_glue          = true # iceberg_sync: the Iceberg tables in Glue
      ephemeral_storage_gib = 100  # cryo_ingest's attempt staging
    }
    stream = {
      pool          = "threads"
      concurrency   = 200
      cpu           = 1024
      memory        = 2048
      desired_count = 1
      cold_bucket   = "read_write"
      rpc_egress    = true
    }
    udf = {
      concurrency   = 1
      cpu           = 1024
      memory        = 2048
      desired_count = var.udf_workers
      cold_bucket   = "read_write_no_delete"
      sends_wakeups = false
      run_as_root   = true
      # Its outbox rows are published by the dispatcher's drain: the pool that runs user code
      # holds no right to send wake-ups.
      environment = { TRACE_OUTBOX_FLUSH_ON_COMMIT = "false" }
    }
    delivery = {
      concurrency     = 1
      cpu             = 512
      memory          = 1024
      desired_count   = 1
      databases       = ["state"]
      internet_egress = true
      sns_publish     = true
    }
    dispatcher = {
      concurrency   = 1
      cpu           = 512
      memory        = 1024
      desired_count = 1
      cold_bucket   = "read_write" # retention deletes expired query exports
      rpc_egress    = true         # the chain_sync planner reads chain heads
    }
  }

  roles = concat(["web", "beat", "migrate"], [for q in keys(local.pools) : "worker-${q}"])
}

module "network" {
  source          = "../../modules/network"
  name            = var.name
  cidr_block      = var.vpc_cidr
  azs             = var.azs
  enable_nat      = var.enable_nat
  single_nat      = var.single_nat
  s3_bucket_names = values(local.buckets)
}

module "data" {
  source              = "../../modules/data"
  name                = var.name
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.private_subnet_ids
  cold_bucket_name    = local.buckets.cold
  scratch_bucket_name = local.buckets.scratch
  multi_az            = var.multi_az
  deletion_protection = var.deletion_protection
}

module "analytics" {
  source              = "../../modules/analytics"
  name                = var.name
  glue_database_name  = replace(var.name, "-", "_")
  results_bucket_name = local.buckets.scratch
}

module "queues" {
  source = "../../modules/queues"
  name   = var.name
  queues = local.queues
}

module "observability" {
  source         = "../../modules/observability"
  name           = var.name
  roles          = local.roles
  cluster_name   = var.name
  service_names  = { for r in local.roles : r => "${var.name}-${r}" if r != "migrate" }
  queue_names    = module.queues.queue_names
  dlq_names      = module.queues.dlq_names
  tip_lag_blocks = var.tip_lag_blocks
  alarm_emails   = var.alarm_emails
}

module "compute" {
  source                      = "../../modules/compute"
  name                        = var.name
  image_tag                   = var.image_tag
  vpc_id                      = module.network.vpc_id
  public_subnet_ids           = module.network.public_subnet_ids
  private_subnet_ids          = module.network.private_subnet_ids
  egress_subnet_ids           = module.network.egress_subnet_ids
  endpoints_security_group_id = module.network.endpoints_security_group_id
  s3_prefix_list_id           = module.network.s3_prefix_list_id
  db_security_group_ids       = module.data.db_security_group_ids
  db_url_secret_arns          = module.data.db_url_secret_arns
  redis_security_group_id     = module.data.redis_security_group_id
  redis_url                   = module.data.redis_url
  bucket_names                = module.data.bucket_names
  bucket_arns                 = module.data.bucket_arns
  queue_urls                  = module.queues.queue_urls
  queue_arns                  = module.queues.queue_arns
  smoke_queue_url             = module.queues.smoke_queue_url
  smoke_queue_arn             = module.queues.smoke_queue_arn
  deletion_protection         = var.deletion_protection
  log_group_names             = module.observability.log_group_names
  pools                       = local.pools
  web = {
    allowed_hosts   = var.web_hostnames
    certificate_arn = var.certificate_arn
  }
  rpc_cidr_blocks      = var.rpc_cidr_blocks
  rpc_pool_secret_arns = var.rpc_pool_secret_arns
  smtp_secret_arn      = var.smtp_secret_arn
  default_from_email   = var.default_from_email
  environment          = var.environment
  iceberg = {
    glue_database_name = module.analytics.glue_database_name
    glue_database_arn  = module.analytics.glue_database_arn
  }
}
