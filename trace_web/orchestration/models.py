"""Control-plane state for orchestration: DAG versions and the active pointer, jobs and their
input edges, tasks with leases, recorded transitions, pinned task inputs and the outbox.
"""

from django.conf import settings
from django.db import models

from trace_web.datasets.models import DataInvalidation, Dataset, DatasetVersion
from trace_web.orgs.models import Org


class DagVersion(models.Model):
    """An immutable deployed DAG definition; the same YAML content maps to the same version."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="dag_versions")
    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64)
    source_yaml = models.TextField()
    spec = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "name", "version"], name="uniq_dag_version"),
            models.UniqueConstraint(
                fields=["org", "name", "content_hash"], name="uniq_dag_version_content"
            ),
        ]
        ordering = ["org", "name", "-version"]

    def __str__(self) -> str:
        return f"{self.org.slug}:{self.name} v{self.version}"


class DagPointer(models.Model):
    """The current (active) version of one DAG in one org; moved by activate / rollback."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="dag_pointers")
    name = models.CharField(max_length=100)
    current = models.ForeignKey(DagVersion, on_delete=models.PROTECT, related_name="+")
    previous = models.ForeignKey(
        DagVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="uniq_dag_pointer")]

    def __str__(self) -> str:
        return f"{self.org.slug}:{self.name} -> v{self.current.version}"


class Activation(models.TextChoices):
    SOURCE = "source"
    REACTIVE = "reactive"
    MANUAL = "manual"


class Runtime(models.TextChoices):
    PLATFORM = "platform"
    UDF = "udf"
    DISPATCHER = "dispatcher"
    DELIVERY = "delivery"


class Job(models.Model):
    """One job of one DAG version (immutable, like its version)."""

    dag_version = models.ForeignKey(DagVersion, on_delete=models.CASCADE, related_name="jobs")
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="jobs")
    name = models.CharField(max_length=100)
    activation = models.CharField(max_length=16, choices=Activation.choices)
    runtime = models.CharField(max_length=16, choices=Runtime.choices)
    operator = models.CharField(max_length=64)
    outputs = models.PositiveSmallIntegerField(default=1)
    execution_strategy = models.CharField(max_length=16, default="PerPartition")
    update_strategy = models.CharField(max_length=16, default="append")
    source_kind = models.CharField(max_length=16, blank=True, default="")
    schedule = models.CharField(max_length=100, blank=True, default="")
    config = models.JSONField(default=dict, blank=True)
    max_concurrency = models.PositiveIntegerField(null=True, blank=True)
    timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    heartbeat_timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    max_attempts = models.PositiveIntegerField()
    spec = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dag_version", "name"], name="uniq_job_in_version")
        ]

    def __str__(self) -> str:
        return f"{self.dag_version}/{self.name}"

    @property
    def dag_name(self) -> str:
        return self.dag_version.name


class JobInput(models.Model):
    """An input edge: from another job's output in the same DAG, or from a published dataset."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="inputs")
    position = models.PositiveSmallIntegerField()
    from_job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.CASCADE, related_name="consumers"
    )
    from_output = models.PositiveSmallIntegerField(null=True, blank=True)
    from_dataset_name = models.CharField(max_length=200, blank=True, default="")
    where = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="uniq_job_input_position")
        ]


class TaskStatus(models.TextChoices):
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"


class Task(models.Model):
    """One unit of work for a job; retried in place (attempt + 1 on the same row)."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="tasks")
    job = models.ForeignKey(Job, on_delete=models.PROTECT, related_name="tasks")
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED)
    attempt = models.PositiveIntegerField(default=1)
    max_attempts = models.PositiveIntegerField()
    # Why the task exists: source, manual, webhook, event, invalidation.
    trigger = models.CharField(max_length=16)
    # Makes task creation idempotent (e.g. one task per routed event per job).
    dedupe_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    # Lease, fenced by (id, attempt, lease_token).
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    worker_id = models.CharField(max_length=200, blank=True, default="")
    # Scope.
    partition_key = models.CharField(max_length=200, null=True, blank=True)
    range_start = models.BigIntegerField(null=True, blank=True)
    range_end = models.BigIntegerField(null=True, blank=True)  # end-exclusive
    cursor = models.JSONField(null=True, blank=True)
    invalidation = models.ForeignKey(
        DataInvalidation, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks"
    )
    payload = models.JSONField(default=dict, blank=True)
    # Retry and outcome.
    next_retry_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    outputs = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_woken_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "lease_expires_at"], name="idx_task_lease"),
            models.Index(fields=["status", "next_retry_at"], name="idx_task_retry"),
            models.Index(fields=["job", "status"], name="idx_task_job_status"),
            # The pruner's scan for finished tasks past their retention.
            models.Index(fields=["finished_at"], name="idx_task_finished"),
        ]

    def __str__(self) -> str:
        return f"task {self.pk} ({self.job.name}) attempt {self.attempt} {self.status}"


class TaskTransition(models.Model):
    """Every status change of a task, in order: the task's history."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="transitions")
    attempt = models.PositiveIntegerField()
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16)
    worker_id = models.CharField(max_length=200, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class TaskInput(models.Model):
    """A dataset version (and partition or cursor range) pinned for a task when it was made."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="inputs")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="+")
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    partition_key = models.CharField(max_length=200, null=True, blank=True)
    cursor_from = models.BigIntegerField(null=True, blank=True)
    cursor_to = models.BigIntegerField(null=True, blank=True)


class OutboxStatus(models.TextChoices):
    PENDING = "Pending"
    DONE = "Done"
    FAILED = "Failed"


class OutboxKind(models.TextChoices):
    WAKE_TASK = "wake_task"  # send a Celery wake-up carrying only the task id
    ROUTE_EVENT = "route_event"  # an output was committed: schedule dependent jobs
    ALERT_SINK = "alert_sink"  # an alert evaluation committed: sink its batches (alerts)
    WAKE_DELIVERY = "wake_delivery"  # send a delivery-pool wake-up carrying a delivery id


class Outbox(models.Model):
    """Side effects written in the same transaction as the state change that causes them."""

    kind = models.CharField(max_length=32, choices=OutboxKind.choices)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING
    )
    tries = models.PositiveIntegerField(default=0)
    available_at = models.DateTimeField()
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "outbox row"
        verbose_name_plural = "outbox rows"
        indexes = [
            models.Index(
                fields=["available_at"],
                condition=models.Q(status="Pending"),
                name="idx_outbox_pending",
            ),
            # The pruner's scan for published rows past their retention.
            models.Index(
                fields=["done_at"], condition=models.Q(status="Done"), name="idx_outbox_done"
            ),
        ]


class WebhookSecret(models.Model):
    """The per-source secret of a webhook job (stored hashed; shown once when rotated)."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="+")
    dag_name = models.CharField(max_length=100)
    job_name = models.CharField(max_length=100)
    secret_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["org", "dag_name", "job_name"], name="uniq_webhook_secret"
            )
        ]
