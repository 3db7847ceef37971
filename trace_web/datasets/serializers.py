"""Output serializers of the dataset registry API. They document the dicts the view builds
(the view does not serialize through them)."""

from __future__ import annotations

from rest_framework import serializers

from trace_web.datasets.models import IntegrityCheck, IntegrityStatus, StorageKind
from trace_web.serializers import BigIntField, StrictSerializer


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


class IntegrityCheckListQuery(StrictSerializer):
    chain_id = BigIntField(required=False)
    status = serializers.ChoiceField(choices=IntegrityStatus.choices, required=False)
    dag = serializers.CharField(required=False, max_length=100, help_text="DAG name")
    job = serializers.CharField(required=False, max_length=100, help_text="Job name")
    range_start = BigIntField(
        required=False, help_text="Only checks whose range ends after this block"
    )
    range_end = BigIntField(
        required=False, help_text="Only checks whose range starts before this block"
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=1000, default=100, help_text="At most this many, newest first"
    )
    before_id = BigIntField(
        required=False,
        min_value=1,
        help_text="Cursor: only checks with a smaller id (older). A full page's `Link` header "
        'gives the next page\'s URL (`rel="next"`)',
    )


class IntegrityCheckOut(serializers.ModelSerializer):
    dag = serializers.CharField(source="dag_name")
    job = serializers.CharField(source="job_name")
    range_end = serializers.IntegerField(help_text="End-exclusive")
    sample = serializers.FloatField(
        allow_null=True, help_text="Fraction of blocks compared with the node; null: all"
    )
    kinds = serializers.ListField(child=serializers.CharField())
    details = serializers.DictField(
        help_text="Per kind: `count` and the `first` mismatches "
        "(`dataset`, `range_start`, `range_end`, `block`, `detail`)"
    )
    affected = serializers.ListField(
        child=serializers.ListField(), help_text="`[dataset, range_start, range_end]` damaged"
    )
    repaired = serializers.ListField(
        child=serializers.ListField(),
        help_text="`[dataset, range_start, range_end, location]` rebuilt under a new revision",
    )

    class Meta:
        model = IntegrityCheck
        fields = [
            "id",
            "dag",
            "job",
            "task_id",
            "attempt",
            "chain_id",
            "range_start",
            "range_end",
            "blocks_checked",
            "partitions_checked",
            "sample",
            "mismatches",
            "kinds",
            "details",
            "affected",
            "repaired",
            "status",
            "alert_channel",
            "started_at",
            "finished_at",
        ]
