"""Output serializers of the dataset registry API. They document the dicts the view builds
(the view does not serialize through them)."""

from __future__ import annotations

from rest_framework import serializers

from trace_web.datasets.models import StorageKind


class DatasetOut(serializers.Serializer):
    name = serializers.CharField(
        help_text="The published name, else `{dag}.{job}[{output}]`",
    )
    published = serializers.BooleanField(help_text="Whether the DAG publishes it under a name")
    dag = serializers.CharField()
    job = serializers.CharField()
    output = serializers.IntegerField(help_text="Index of the job output it is")
    storage_kind = serializers.ChoiceField(choices=StorageKind.choices)
    latest_generation = serializers.IntegerField(
        allow_null=True,
        help_text="Newest version's generation; null until an output is first committed",
    )
