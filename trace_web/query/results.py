"""A query's rows in the format the caller asked for: JSON (exact: wei amounts and other
decimals as strings, so no client rounds them), CSV, or Arrow IPC (typed, for dataframes)."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

FORMATS = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "arrow": "application/vnd.apache.arrow.stream",
}
QUERY_FORMATS = sorted(FORMATS)
# What a result past the inline caps is exported as.
EXPORT_FORMATS = ["csv", "parquet"]


def columns_of(table: Any) -> list[dict[str, str]]:
    return [{"name": field.name, "type": str(field.type)} for field in table.schema]


def json_rows(table: Any) -> list[list[Any]]:
    return [[_json_value(v) for v in row.values()] for row in table.to_pylist()]


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def csv_bytes(table: Any) -> bytes:
    import pyarrow.csv as pcsv

    sink = io.BytesIO()
    pcsv.write_csv(table, sink)
    return sink.getvalue()


def arrow_bytes(table: Any) -> bytes:
    import pyarrow as pa

    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()
