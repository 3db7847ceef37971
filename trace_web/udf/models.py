"""User code: uploaded bundles (immutable, content-addressed), the org's Ed25519 keys and its
"require signed manifests" policy, and the pointers to the output batches handlers published
through buffer-publish. Bundle bytes and batches live in the object store."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from trace_web.orgs.models import Org


class Runtime(models.TextChoices):
    PYTHON = "python"
    NODE = "node"


class Bundle(models.Model):
    """One uploaded bundle. Its id is the sha256 of the zip's bytes, so any change to any file
    (or to the manifest) is another bundle; `name@version` is unique per org and never moves."""

    sha256 = models.CharField(max_length=64)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="udf_bundles")
    name = models.CharField(max_length=100)
    version = models.CharField(max_length=64)
    runtime = models.CharField(max_length=16, choices=Runtime.choices)
    entrypoint = models.CharField(max_length=100)
    manifest = models.JSONField()  # as uploaded, signature included
    size_bytes = models.BigIntegerField()
    key = models.CharField(max_length=300)  # object store key of the zip
    signed = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "sha256"], name="uniq_udf_bundle_sha"),
            models.UniqueConstraint(
                fields=["org", "name", "version"], name="uniq_udf_bundle_name_version"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.version} ({self.sha256[:12]})"


class SigningKey(models.Model):
    """An Ed25519 public key the org signs bundle manifests with (raw 32 bytes, base64)."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="udf_signing_keys")
    name = models.CharField(max_length=100)
    public_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="uniq_udf_signing_key_name")
        ]

    def __str__(self) -> str:
        return f"{self.org.slug}:{self.name}"


class SigningPolicy(models.Model):
    """Whether the org's bundles must carry a manifest signed by one of its keys."""

    org = models.OneToOneField(Org, on_delete=models.CASCADE, related_name="udf_signing_policy")
    require_signed = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.org.slug}: {'signed only' if self.require_signed else 'unsigned allowed'}"


class OutputBatch(models.Model):
    """One batch a task attempt published through buffer-publish: where its JSONL lies and
    what it holds. Its completion commits the batches as the task's output."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="udf_output_batches")
    task_id = models.BigIntegerField()  # soft reference: tasks are pruned by retention
    attempt = models.PositiveIntegerField()
    output = models.PositiveSmallIntegerField(default=0)
    sequence = models.PositiveIntegerField()
    location = models.CharField(max_length=2000)
    row_count = models.BigIntegerField()
    bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["task_id", "attempt", "sequence"], name="uniq_udf_batch_sequence"
            )
        ]

    def __str__(self) -> str:
        return f"task {self.task_id}.{self.attempt} batch {self.sequence} ({self.row_count} rows)"
