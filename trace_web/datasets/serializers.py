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


class DatasetColumnOut(serializers.Serializer):
    relation = serializers.CharField(
        allow_null=True, help_text="The query relation it belongs to (chain data), else null"
    )
    name = serializers.CharField()
    type = serializers.CharField(allow_null=True, help_text="SQL type as queries see it")
    nullable = serializers.BooleanField(allow_null=True)
    description = serializers.CharField(allow_blank=True)


class DatasetVersionOut(serializers.Serializer):
    generation = serializers.IntegerField()
    definition_hash = serializers.CharField()
    created_at = serializers.DateTimeField()
    partitions = serializers.IntegerField(help_text="Committed partitions of this version")
    rows = serializers.IntegerField(allow_null=True)
    bytes = serializers.IntegerField(allow_null=True)
    range_start = serializers.IntegerField(allow_null=True)
    range_end = serializers.IntegerField(allow_null=True, help_text="End-exclusive")
    last_commit_at = serializers.DateTimeField(allow_null=True)


class BlockRangeOut(serializers.Serializer):
    start = serializers.IntegerField()
    end = serializers.IntegerField(help_text="End-exclusive")


class ColdExtentOut(BlockRangeOut):
    partitions = serializers.IntegerField()
    gaps = BlockRangeOut(many=True, help_text="Ranges inside [start, end) nothing covers")


class ChainExtentOut(serializers.Serializer):
    chain_id = serializers.IntegerField()
    relations = serializers.ListField(child=serializers.CharField())
    compaction_line = serializers.IntegerField(
        allow_null=True,
        help_text="Lowest hot block of the chain: queries read cold files below it, the hot "
        "tables from it on; null while the chain has no hot rows",
    )
    hot = BlockRangeOut(allow_null=True, help_text="Hot blocks (a follower's dataset)")
    cold = ColdExtentOut(allow_null=True, help_text="Committed cold ranges (backfill, compaction)")


class DatasetDetailOut(DatasetOut):
    update_strategy = serializers.CharField()
    unique_key = serializers.ListField(child=serializers.CharField())
    read_roles = serializers.ListField(child=serializers.CharField())
    operator = serializers.CharField(allow_null=True)
    schema = DatasetColumnOut(many=True)
    versions = DatasetVersionOut(many=True)
    chain = ChainExtentOut(allow_null=True)
