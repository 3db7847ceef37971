"""Dataset registry: datasets, their versions (generations), committed partitions, consumer
cursors and data invalidations. Every job output is a dataset; `publish:` gives it a public name.
"""

from django.db import models

from trace_web.orgs.models import Org


class StorageKind(models.TextChoices):
    NONE = "none"  # events only (e.g. noop outputs)
    HOT_TABLE = "hot_table"
    PARQUET = "parquet"
    JSONL = "jsonl"


class Dataset(models.Model):
    """One output of one job of one DAG, stable across DAG versions."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="datasets")
    dag_name = models.CharField(max_length=100)
    job_name = models.CharField(max_length=100)
    output_index = models.PositiveSmallIntegerField()
    # Public name from the DAG's `publish:` block; unique per org when set.
    published_name = models.CharField(max_length=200, null=True, blank=True)
    storage_kind = models.CharField(
        max_length=16, choices=StorageKind.choices, default=StorageKind.NONE
    )
    update_strategy = models.CharField(max_length=16, default="append")
    unique_key = models.JSONField(default=list, blank=True)
    read_roles = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["org", "dag_name", "job_name", "output_index"], name="uniq_dataset_output"
            ),
            models.UniqueConstraint(
                fields=["org", "published_name"],
                condition=models.Q(published_name__isnull=False),
                name="uniq_dataset_published_name",
            ),
        ]

    @property
    def display_name(self) -> str:
        return self.published_name or f"{self.dag_name}.{self.job_name}[{self.output_index}]"

    def __str__(self) -> str:
        return f"{self.org.slug}:{self.display_name}"


class DatasetVersion(models.Model):
    """A generation of a dataset: changes when its definition changes, not on each write."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    generation = models.PositiveIntegerField()
    definition_hash = models.CharField(max_length=64)
    definition = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "definition_hash"], name="uniq_dataset_version_definition"
            ),
            models.UniqueConstraint(
                fields=["dataset", "generation"], name="uniq_dataset_version_generation"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset} v{self.generation}"


class PartitionVersion(models.Model):
    """What is committed for one partition of a dataset version."""

    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.CASCADE, related_name="partitions"
    )
    partition_key = models.CharField(max_length=200)
    range_start = models.BigIntegerField(null=True, blank=True)
    range_end = models.BigIntegerField(null=True, blank=True)  # end-exclusive
    location = models.TextField(blank=True, default="")
    row_count = models.BigIntegerField(null=True, blank=True)
    bytes = models.BigIntegerField(null=True, blank=True)
    config_hash = models.CharField(max_length=64, blank=True, default="")
    schema_hash = models.CharField(max_length=64, blank=True, default="")
    manifest = models.JSONField(default=dict, blank=True)
    task_id = models.BigIntegerField(null=True, blank=True)  # soft reference
    attempt = models.PositiveIntegerField(null=True, blank=True)
    committed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dataset_version", "partition_key"], name="uniq_partition_version"
            )
        ]


class DatasetCursor(models.Model):
    """Per consumer job high-water mark over a dataset (PerUpdate consumers)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="cursors")
    consumer_dag = models.CharField(max_length=100)
    consumer_job = models.CharField(max_length=100)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "consumer_dag", "consumer_job"], name="uniq_dataset_cursor"
            )
        ]


class InvalidationKind(models.TextChoices):
    ROW_RANGE = "row_range"
    PARTITION = "partition"


class DataInvalidation(models.Model):
    """Data that was wrong (reorg, repair) and must be reprocessed by every dependent job."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="invalidations")
    kind = models.CharField(max_length=16, choices=InvalidationKind.choices)
    range_start = models.BigIntegerField(null=True, blank=True)
    range_end = models.BigIntegerField(null=True, blank=True)  # end-exclusive
    partition_key = models.CharField(max_length=200, null=True, blank=True)
    reason = models.TextField(blank=True, default="")
    source_task_id = models.BigIntegerField(null=True, blank=True)  # soft reference
    # Set by the invalidation scanner once it has scheduled reprocessing for every dependent job.
    scheduled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["scheduled_at"], name="idx_invalidation_pending")]


class InvalidationProcessing(models.Model):
    """One dependent job's reprocessing of one invalidation; processed on fenced completion."""

    invalidation = models.ForeignKey(
        DataInvalidation, on_delete=models.CASCADE, related_name="processing"
    )
    dag_name = models.CharField(max_length=100)
    job_name = models.CharField(max_length=100)
    task_id = models.BigIntegerField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["invalidation", "dag_name", "job_name"], name="uniq_invalidation_job"
            )
        ]


class IntegrityStatus(models.TextChoices):
    CLEAN = "clean"  # every check passed
    MISMATCH = "mismatch"  # something differs; see `details`
    REPAIRED = "repaired"  # mismatches found and the affected ranges rebuilt


class IntegrityCheck(models.Model):
    """One `integrity_check` run over a block range of a chain's committed cold data
    (trace_chain/integrity.py), recorded when the run's result is committed (fenced)."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="integrity_checks")
    dataset = models.ForeignKey(
        Dataset, on_delete=models.CASCADE, related_name="integrity_checks"
    )  # the integrity job's output
    dag_name = models.CharField(max_length=100)
    job_name = models.CharField(max_length=100)
    task_id = models.BigIntegerField()  # soft reference: tasks are pruned
    attempt = models.PositiveIntegerField()
    chain_id = models.BigIntegerField()
    range_start = models.BigIntegerField()
    range_end = models.BigIntegerField()  # end-exclusive
    blocks_checked = models.BigIntegerField(default=0)
    partitions_checked = models.PositiveIntegerField(default=0)
    sample = models.FloatField(null=True, blank=True)  # None: every block
    mismatches = models.PositiveIntegerField(default=0)
    kinds = models.JSONField(default=list, blank=True)  # kinds found, sorted
    # Per kind: {"count", "first": [{dataset, range_start, range_end, block, detail}, ...]}
    details = models.JSONField(default=dict, blank=True)
    affected = models.JSONField(default=list, blank=True)  # [[dataset, start, end], ...]
    repaired = models.JSONField(default=list, blank=True)  # [[dataset, start, end, location]]
    status = models.CharField(max_length=16, choices=IntegrityStatus.choices)
    alert_channel = models.CharField(max_length=100, blank=True, default="")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "task_id"], name="uniq_integrity_check_task")
        ]
        indexes = [
            models.Index(fields=["org", "chain_id", "-id"], name="idx_integrity_check_chain"),
        ]

    def __str__(self) -> str:
        return f"chain {self.chain_id} [{self.range_start}, {self.range_end}) {self.status}"
