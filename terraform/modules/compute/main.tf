# The ECS Fargate cluster: the web service behind a load balancer, beat (exactly one), one
# service per worker pool (one pool per Celery queue), and a one-shot migrate task. Every
# process runs the one image (deploy/Dockerfile) with its role chosen by its command, as in
# deploy/Procfile. Each service has its own security group, task role (what its code may call
# in AWS) and execution role (which secrets ECS may hand it).

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  image      = "${aws_ecr_repository.platform.repository_url}:${var.image_tag}"

  celery = ["celery", "-A", "trace_tasks.celery_app"]
  # SQS has no broadcast queues for remote control, gossip, mingle or events (-E): off.
  worker_flags = ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]

  pool_services = {
    for queue, p in var.pools : "worker-${queue}" => {
      queue         = queue
      command       = concat(local.celery, ["worker", "-Q", queue, "-n", "${queue}@%h", "--pool", p.pool, "--concurrency", tostring(p.concurrency)], local.worker_flags)
      cpu           = p.cpu
      memory        = p.memory
      desired_count = p.desired_count
      databases     = p.databases
      cold_bucket   = p.cold_bucket
      scratch       = p.scratch_bucket
      sends_to      = p.sends_wakeups ? keys(var.queue_arns) : []
      internet      = p.internet_egress
      rpc           = p.rpc_egress
      sns_publish   = p.sns_publish
      iceberg       = p.iceberg_glue
      redis         = p.internet_egress # the delivery pool: rate-limit buckets
      root          = p.run_as_root
      storage       = p.ephemeral_storage_gib
      subnet_ids    = p.internet_egress ? var.egress_subnet_ids : var.private_subnet_ids
      environment   = p.environment
      worker        = true
    }
  }

  services = merge(local.pool_services, {
    web = {
      queue         = null
      command       = ["gunicorn", "trace_web.wsgi", "--bind", "0.0.0.0:8000", "--workers", tostring(var.web.gunicorn_workers), "--access-logfile", "-"]
      cpu           = var.web.cpu
      memory        = var.web.memory
      desired_count = var.web.desired_count
      databases     = ["state", "data"]
      cold_bucket   = "read_write"
      scratch       = "read_write"
      sends_to      = keys(var.queue_arns)
      internet      = false
      rpc           = false
      sns_publish   = false
      iceberg       = false
      redis         = false
      root          = false
      storage       = 21
      subnet_ids    = var.private_subnet_ids
      environment = {
        # 127.0.0.1: the container's own health check.
        TRACE_ALLOWED_HOSTS  = join(",", concat(var.web.allowed_hosts, [aws_lb.web.dns_name, "127.0.0.1"]))
        TRACE_SECURE_COOKIES = var.web.certificate_arn == null ? "false" : "true"
      }
      worker = false
    }
    beat = {
      queue         = null
      command       = concat(local.celery, ["beat", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "--loglevel", "INFO"])
      cpu           = 256
      memory        = 512
      desired_count = 1
      databases     = ["state"]
      cold_bucket   = "none"
      scratch       = "none"
      sends_to      = ["dispatcher"] # beat only sends the dispatcher's ticks
      internet      = false
      rpc           = false
      sns_publish   = false
      iceberg       = false
      redis         = false
      root          = false
      storage       = 21
      subnet_ids    = var.private_subnet_ids
      environment   = {}
      worker        = false
    }
  })

  # The one-shot migrate task (run before each deploy; README): both databases to head.
  migrate = {
    command     = ["sh", "-c", "python manage.py migrate --noinput && trace data-migrate"]
    databases   = ["state", "data"]
    environment = {}
  }
  all_roles = merge(
    { for k, s in local.services : k => { databases = s.databases, environment = s.environment } },
    { migrate = { databases = local.migrate.databases, environment = local.migrate.environment } },
  )

  # Settings every process reads (Django loads the whole settings package in every role).
  base_environment = {
    AWS_REGION                = local.region
    TRACE_BROKER_URL          = "sqs://" # credentials: the task role, through boto3
    TRACE_SQS_REGION          = local.region
    TRACE_SQS_QUEUE_URLS      = jsonencode(var.queue_urls)
    TRACE_SQS_SMOKE_QUEUE_URL = var.smoke_queue_url
    TRACE_OBJECT_STORE_URL    = "s3://${var.bucket_names["cold"]}"
    TRACE_LOG_FORMAT          = "json"
  }
  common_environment = merge(local.base_environment, var.environment)

  delivery_environment = {
    TRACE_DELIVERY_REDIS_URL = var.redis_url
    TRACE_SNS_REGION         = local.region
    EMAIL_HOST               = "email-smtp.${local.region}.amazonaws.com" # the SES endpoint's private DNS
    EMAIL_PORT               = "587"
    EMAIL_USE_TLS            = "true"
    DEFAULT_FROM_EMAIL       = var.default_from_email
  }

  # Secrets: environment variable -> Secrets Manager ARN (a JSON key after `:` where needed).
  common_secrets = {
    TRACE_SECRET_KEY        = aws_secretsmanager_secret.app["secret-key"].arn
    TRACE_TASK_TOKEN_SECRET = aws_secretsmanager_secret.app["task-token-secret"].arn
  }
  rpc_secrets = { for pool, arn in var.rpc_pool_secret_arns : "TRACE_RPC_POOL_${upper(replace(pool, "/[^A-Za-z0-9]/", "_"))}" => arn }
  smtp_secrets = var.smtp_secret_arn == null ? {} : {
    EMAIL_HOST_USER     = "${var.smtp_secret_arn}:username::"
    EMAIL_HOST_PASSWORD = "${var.smtp_secret_arn}:password::"
  }

  role_secrets = {
    for k, r in local.all_roles : k => merge(
      local.common_secrets,
      { for db in r.databases : "TRACE_${upper(db)}_DB_URL" => var.db_url_secret_arns[db] },
      k == "web" ? { TRACE_METRICS_TOKEN = aws_secretsmanager_secret.app["metrics-token"].arn } : {},
      try(local.services[k].rpc, false) ? local.rpc_secrets : {},
      try(local.services[k].internet, false) ? local.smtp_secrets : {},
    )
  }
  # Pools that sync the Iceberg tables (trace_operators/iceberg_sync.py) use the Glue catalog,
  # table metadata beside the cold data.
  iceberg_environment = var.iceberg == null ? {} : {
    TRACE_ICEBERG_CATALOG   = "glue"
    TRACE_ICEBERG_NAMESPACE = var.iceberg.glue_database_name
    TRACE_ICEBERG_WAREHOUSE = "s3://${var.bucket_names["cold"]}/iceberg"
  }
  role_environment = {
    for k, r in local.all_roles : k => merge(
      local.common_environment,
      try(local.services[k].internet, false) ? local.delivery_environment : {},
      try(local.services[k].iceberg, false) ? local.iceberg_environment : {},
      r.environment,
    )
  }
}

# --- image -----------------------------------------------------------------------------------

resource "aws_ecr_repository" "platform" {
  name                 = "${var.name}/platform"
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
  }
  tags = var.tags
}

resource "aws_ecr_lifecycle_policy" "platform" {
  repository = aws_ecr_repository.platform.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the newest images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = var.images_kept }
      action       = { type = "expire" }
    }]
  })
}

# --- secrets ---------------------------------------------------------------------------------

ephemeral "aws_secretsmanager_random_password" "app" {
  for_each            = toset(["secret-key", "task-token-secret", "metrics-token"])
  password_length     = 64
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "app" {
  #checkov:skip=CKV_AWS_149:encrypted with the AWS managed key aws/secretsmanager: only this deployment's ECS execution roles may read these secrets (IAM), a CMK would add a key policy without narrowing that
  #checkov:skip=CKV2_AWS_57:random values Terraform generates and ECS injects at start; rotated by bumping their version and redeploying, not by a rotation Lambda
  for_each    = toset(["secret-key", "task-token-secret", "metrics-token"])
  name        = "${var.name}/${each.key}"
  description = "Trace ${each.key} (generated at apply time, never in the state)"
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "app" {
  for_each                 = aws_secretsmanager_secret.app
  secret_id                = each.value.id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.app[each.key].random_password
  secret_string_wo_version = var.app_secrets_version
}

# --- cluster ---------------------------------------------------------------------------------

resource "aws_ecs_cluster" "main" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled" # RunningTaskCount per service, for the task alarms
  }
  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE"]
  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

resource "aws_ecs_task_definition" "service" {
  for_each                 = merge(local.services, { migrate = { cpu = 512, memory = 1024, storage = 21 } })
  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution[each.key].arn
  task_role_arn            = aws_iam_role.task[each.key].arn
  ephemeral_storage {
    size_in_gib = max(21, each.value.storage)
  }
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  container_definitions = jsonencode([merge(
    {
      name      = each.key
      image     = local.image
      essential = true
      command   = each.key == "migrate" ? local.migrate.command : local.services[each.key].command
      # The udf worker runs as root in its container: the sandbox switches each slot to its own
      # uid (docs/udf.md); everything else runs as the image's unprivileged user.
      user        = try(local.services[each.key].root, false) ? "0" : null
      environment = [for k in sort(keys(local.role_environment[each.key])) : { name = k, value = local.role_environment[each.key][k] }]
      secrets     = [for k in sort(keys(local.role_secrets[each.key])) : { name = k, valueFrom = local.role_secrets[each.key][k] }]
      linuxParameters = {
        initProcessEnabled = true
        capabilities       = { drop = ["NET_RAW", "MKNOD", "AUDIT_WRITE", "SYS_CHROOT", "SETFCAP"] }
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = var.log_group_names[each.key]
          awslogs-region        = local.region
          awslogs-stream-prefix = each.key
        }
      }
      portMappings = each.key == "web" ? [{ containerPort = 8000, protocol = "tcp" }] : []
    },
    try(local.services[each.key].worker, false) ? {
      # The worker touches its alive file while it consumes; a stuck one is replaced.
      healthCheck = { command = ["CMD-SHELL", "trace worker-alive --max-age 60"], interval = 15, timeout = 10, retries = 3, startPeriod = 60 }
    } : {},
    each.key == "web" ? {
      healthCheck = { command = ["CMD-SHELL", "python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/admin/login/', timeout=5)\""], interval = 15, timeout = 10, retries = 3, startPeriod = 30 }
    } : {},
  )])
  tags = var.tags
}

resource "aws_ecs_service" "service" {
  for_each               = local.services
  name                   = "${var.name}-${each.key}"
  cluster                = aws_ecs_cluster.main.id
  task_definition        = aws_ecs_task_definition.service[each.key].arn
  desired_count          = each.value.desired_count
  launch_type            = "FARGATE"
  platform_version       = "LATEST"
  propagate_tags         = "SERVICE"
  enable_execute_command = false
  # Beat must never run twice (duplicate ticks are harmless but wasteful): stop the old one
  # before starting the new one.
  deployment_maximum_percent         = each.key == "beat" ? 100 : 200
  deployment_minimum_healthy_percent = each.key == "beat" ? 0 : 100
  health_check_grace_period_seconds  = each.key == "web" ? 60 : null

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = each.value.subnet_ids
    security_groups  = [aws_security_group.service[each.key].id]
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = each.key == "web" ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.web.arn
      container_name   = "web"
      container_port   = 8000
    }
  }

  tags       = var.tags
  depends_on = [aws_lb_listener.http]
}
