"""`json_rows`, the API's JSON rows, converts a column at a time: each value must come out as
`json_value` shows it row by row, whatever the type, nulls included."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from trace_chain.query.engine import json_value
from trace_web.query.results import json_rows


def row_by_row(table: pa.Table) -> list[list]:
    return [[json_value(v) for v in row.values()] for row in table.to_pylist()]


def test_every_type_comes_out_as_json_value_shows_it():
    when = dt.datetime(2026, 12, 2, 9, 30, 1, 5, tzinfo=dt.UTC)
    table = pa.table(
        {
            "int": pa.array([1, None, -(2**62)], pa.int64()),
            "text": pa.array(["0xab", None, ""]),
            "flag": pa.array([True, None, False]),
            "real": pa.array([1.5, None, -0.0]),
            "wei": pa.array([Decimal(10**37), None, Decimal(-3)], pa.decimal128(38, 0)),
            "cents": pa.array([Decimal("1.50"), None, Decimal("-0.01")], pa.decimal128(10, 2)),
            "raw": pa.array([b"\x00\xff", None, b""], pa.binary()),
            "when": pa.array([when, None, when], pa.timestamp("us", tz="UTC")),
            "day": pa.array([dt.date(2026, 1, 1), None, dt.date(1970, 1, 1)]),
            "list": pa.array([[b"\x01"], None, []], pa.list_(pa.binary())),
            "big": pa.array(["x" * 10, None, "y"], pa.large_string()),
        }
    )
    rows = json_rows(table)
    assert rows == row_by_row(table)
    assert rows[0][4] == str(10**37) and rows[0][5] == "1.50" and rows[0][6] == "0x00ff"
    assert rows[1] == [None] * len(table.columns)


def test_no_rows_is_an_empty_list():
    assert json_rows(pa.table({"a": pa.array([], pa.int64())})) == []


@given(st.lists(st.none() | st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1)))
def test_whole_number_decimals_read_as_python_shows_them(values):
    table = pa.table({"wei": pa.array(values, pa.decimal128(38, 0))})
    assert json_rows(table) == row_by_row(table)
