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
    from trace_chain.query.engine import json_value

    return [[json_value(v) for v in row.values()] for row in table.to_pylist()]


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
