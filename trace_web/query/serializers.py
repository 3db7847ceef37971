"""Input and output serializers of the query API."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from trace_web.query.results import EXPORT_FORMATS, QUERY_FORMATS
from trace_web.serializers import StrictSerializer


class QueryIn(StrictSerializer):
    sql = serializers.CharField(
        max_length=100_000, trim_whitespace=False, help_text="One SELECT (CTEs allowed)"
    )
    format = serializers.ChoiceField(choices=QUERY_FORMATS, default="json")
    max_rows = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text="At most this many rows inline (default and cap: TRACE_QUERY_MAX_ROWS); "
        "given, a larger result is truncated to it instead of exported",
    )
    export_format = serializers.ChoiceField(
        choices=EXPORT_FORMATS,
        required=False,
        help_text="The format of an export, when the result is past the inline caps "
        "(default: csv for format csv, else parquet)",
    )


class ColumnOut(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(help_text="Arrow type, e.g. int64, string, decimal128(38, 0)")

    def validate_max_rows(self, value: int) -> int:
        if value > settings.TRACE_QUERY_MAX_ROWS:
            raise serializers.ValidationError(
                f"Ensure this value is less than or equal to {settings.TRACE_QUERY_MAX_ROWS}."
            )
        return value


class ExportOut(serializers.Serializer):
    id = serializers.UUIDField()
    format = serializers.ChoiceField(choices=EXPORT_FORMATS)
    url = serializers.CharField(help_text="Where to download it (the same credentials)")
    row_count = serializers.IntegerField()
    bytes = serializers.IntegerField()
    truncated = serializers.BooleanField(help_text="Past TRACE_QUERY_EXPORT_MAX_ROWS: the first")
    expires_at = serializers.DateTimeField()


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
    export = ExportOut(
        required=False,
        help_text="Present when the result was past the inline caps: the rows are in this "
        "file, not in `rows` (whatever `format` asked)",
    )
