"""Query results too large to answer inline: the export's record (who asked, where the file
is, what it holds, until when it is kept). The rows themselves live in the object store."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from trace_web.orgs.models import Org


class QueryResult(models.Model):
    """One exported result. Only who ran the query may fetch it: the person (`user`), or
    the task (`task_id`) through its capability token, for as long as `expires_at` allows."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="query_results")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    task_id = models.BigIntegerField(null=True, blank=True)  # soft reference
    sql_sha256 = models.CharField(max_length=64)
    format = models.CharField(max_length=16)  # parquet | csv
    key = models.CharField(max_length=300)  # the object store key
    row_count = models.BigIntegerField()
    bytes = models.BigIntegerField()
    truncated = models.BooleanField(default=False)  # past TRACE_QUERY_EXPORT_MAX_ROWS
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="idx_query_result_expiry")]

    def __str__(self) -> str:
        return f"{self.org.slug}:{self.id} ({self.row_count} rows, {self.format})"
