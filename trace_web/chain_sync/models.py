"""chain_sync state: the declared sync, its per-dataset streams with a durable cursor, and the
ledger of scheduled ranges (unique per stream and range)."""

from django.db import models

from trace_web.orchestration.models import DagVersion
from trace_web.orgs.models import Org


class ChainSync(models.Model):
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="chain_syncs")
    name = models.CharField(max_length=100)
    chain_id = models.BigIntegerField()
    mode = models.CharField(max_length=16)  # fixed_target | follow_head
    from_block = models.BigIntegerField()
    to_block = models.BigIntegerField(null=True, blank=True)  # end-exclusive
    tail_lag = models.BigIntegerField(null=True, blank=True)
    stale_head_seconds = models.FloatField(default=120.0)
    enabled = models.BooleanField(default=True)
    spec = models.JSONField()
    content_hash = models.CharField(max_length=64)
    dag_version = models.ForeignKey(DagVersion, on_delete=models.PROTECT, related_name="+")
    # Head as last observed through the pool, and when it last moved (stale head detection).
    head_block = models.BigIntegerField(null=True, blank=True)
    head_changed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="uniq_chain_sync")]

    def __str__(self) -> str:
        return f"{self.org.slug}:{self.name}"


class ChainSyncStream(models.Model):
    chain_sync = models.ForeignKey(ChainSync, on_delete=models.CASCADE, related_name="streams")
    dataset = models.CharField(max_length=32)
    chunk_size = models.PositiveIntegerField()
    max_inflight = models.PositiveIntegerField()
    rpc_pool = models.CharField(max_length=64)
    job_name = models.CharField(max_length=100)
    # Next block to plan; everything below it is scheduled (or done).
    cursor = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_sync", "dataset"], name="uniq_sync_stream")
        ]

    def __str__(self) -> str:
        return f"{self.chain_sync}/{self.dataset}"


class RangeStatus(models.TextChoices):
    SCHEDULED = "scheduled"
    DONE = "done"
    FAILED = "failed"


class ScheduledRange(models.Model):
    stream = models.ForeignKey(ChainSyncStream, on_delete=models.CASCADE, related_name="ranges")
    range_start = models.BigIntegerField()
    range_end = models.BigIntegerField()  # end-exclusive
    task_id = models.BigIntegerField()  # soft reference to orchestration.Task
    status = models.CharField(
        max_length=16, choices=RangeStatus.choices, default=RangeStatus.SCHEDULED
    )
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stream", "range_start", "range_end"], name="uniq_scheduled_range"
            )
        ]
        indexes = [
            models.Index(fields=["stream", "status"], name="idx_range_stream_status"),
            models.Index(fields=["task_id"], name="idx_range_task"),  # planning on completion
        ]
