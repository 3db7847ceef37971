"""A query's rows in the format the caller asked for: JSON (exact: wei amounts and other
decimals as strings, so no client rounds them), CSV, or Arrow IPC (typed, for dataframes)."""

from __future__ import annotations

import io
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
    """The rows as JSON shows them (`trace_chain.query.engine.json_value`), built a column at a
    time: the chain's own types (integers, text, booleans, whole-number decimals) convert in
    Arrow without a Python call per value; anything else goes through `json_value`."""
    columns = [_json_column(column) for column in table.columns]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def _json_column(column: Any) -> list[Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    from trace_chain.query.engine import json_value

    kind = column.type
    if pa.types.is_decimal(kind) and kind.scale == 0:  # str(Decimal) of a whole number
        return pc.cast(column, pa.string()).to_pylist()
    values = column.to_pylist()
    plain = (pa.types.is_integer, pa.types.is_boolean, pa.types.is_string, pa.types.is_floating)
    if any(test(kind) for test in plain) or pa.types.is_large_string(kind):
        return values
    return [json_value(value) for value in values]


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
