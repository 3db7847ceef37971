"""Input and output serializers of the query API."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from trace_web.query.results import FORMATS
from trace_web.serializers import StrictSerializer


class QueryIn(StrictSerializer):
    sql = serializers.CharField(
        max_length=100_000, trim_whitespace=False, help_text="One SELECT (CTEs allowed)"
    )
    format = serializers.ChoiceField(choices=sorted(FORMATS), default="json")
    max_rows = serializers.IntegerField(
        min_value=1,
        max_value=settings.TRACE_QUERY_MAX_ROWS,
        required=False,
        help_text="At most this many rows inline (default and cap: TRACE_QUERY_MAX_ROWS)",
    )


class ColumnOut(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(help_text="Arrow type, e.g. int64, string, decimal128(38, 0)")


class QueryOut(serializers.Serializer):
    columns = ColumnOut(many=True)
    rows = serializers.ListField(
        child=serializers.ListField(child=serializers.JSONField()),
        help_text="One list per row, in column order; decimals as strings",
    )
    row_count = serializers.IntegerField()
    truncated = serializers.BooleanField(help_text="More rows than max_rows: only the first")
    seconds = serializers.FloatField()
    relations = serializers.ListField(child=serializers.CharField())
    sql_sha256 = serializers.CharField(help_text="What the audit records instead of the SQL")
