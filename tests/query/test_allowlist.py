"""The function allowlist held against the real engine: every function a hardened sandbox knows
(its extensions' included) that the list does not name is refused by the gate, called as a
scalar or as a table, with any number of arguments; every name the list holds exists and is
accepted; and every allowed sqlglot class comes from an allowed name."""

# ruff: noqa: S608 - these tests build SQL from their own fixtures and attacks, on purpose

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlglot
from sqlglot import exp

from tests.query.conftest import RELATIONS, make_sandbox
from trace_chain.query.allowlist import ALLOWED_FUNCTION_CLASSES, ALLOWED_FUNCTION_NAMES
from trace_chain.query.errors import QueryRefused
from trace_chain.query.gate import gate

ARGUMENTS = ["", "'x'", "'x', 'y'", "'x', 'y', 'z'"]


@pytest.fixture(scope="module")
def engine_functions(world, tmp_path_factory) -> Iterator[dict[str, set[str]]]:
    """Every function name the sandbox's DuckDB knows, with its kinds (scalar, table...)."""
    with make_sandbox(world, tmp_path_factory.mktemp("allowlist")) as sandbox:
        rows = sandbox.connection.execute(
            "SELECT function_name, list(DISTINCT function_type) FROM duckdb_functions() GROUP BY 1"
        ).fetchall()
    yield {name: set(kinds) for name, kinds in rows}


def call(name: str, arguments: str, *, table: bool) -> str:
    callee = name if name.isidentifier() else '"' + name.replace('"', '""') + '"'
    return f"SELECT * FROM {callee}({arguments})" if table else f"SELECT {callee}({arguments})"


def test_the_engine_knows_hundreds_of_functions_including_the_extensions(engine_functions):
    assert len(engine_functions) > 700
    assert {"postgres_query", "postgres_scan", "read_csv", "current_setting"} <= set(
        engine_functions
    )


def test_every_function_not_allowlisted_is_refused_in_every_position(engine_functions):
    accepted = []
    for name in sorted(engine_functions):
        if name.lower() in ALLOWED_FUNCTION_NAMES:
            continue
        for arguments in ARGUMENTS:
            for table in (False, True):
                sql = call(name, arguments, table=table)
                try:
                    gate(sql, relations=RELATIONS)
                except QueryRefused:
                    continue
                accepted.append(sql)
    assert accepted == []


def test_table_position_refuses_even_allowlisted_names():
    for name in ("range", "generate_series", "repeat", "unnest", "histogram", "json"):
        with pytest.raises(QueryRefused) as refused:
            gate(f"SELECT * FROM {name}('x', 2)", relations=RELATIONS)
        assert refused.value.code == "table_function"


def test_every_allowlisted_name_exists_and_is_accepted(engine_functions):
    known = {name.lower() for name in engine_functions}
    assert sorted(ALLOWED_FUNCTION_NAMES - known) == []
    never_accepted = []
    for name in sorted(ALLOWED_FUNCTION_NAMES):
        for arguments in ARGUMENTS:
            try:
                gate(call(name, arguments, table=False), relations=RELATIONS)
                break
            except QueryRefused:
                continue
        else:
            never_accepted.append(name)
    assert never_accepted == []


def test_every_allowed_class_comes_from_an_allowed_name():
    produced: set[type] = set()
    for name in ALLOWED_FUNCTION_NAMES:
        for arguments in ARGUMENTS:
            try:
                tree = sqlglot.parse_one(call(name, arguments, table=False), read="duckdb")
            except sqlglot.errors.ParseError:
                continue
            produced |= {type(node) for node in tree.walk() if isinstance(node, exp.Func)}
    assert sorted(c.__name__ for c in ALLOWED_FUNCTION_CLASSES - produced) == []


def test_dangerous_functions_are_not_on_the_list():
    dangerous = {
        "current_setting", "getvariable", "getenv", "version", "current_database",
        "current_schema", "current_query", "txid_current", "pg_get_viewdef", "nextval",
        "setseed", "sleep_ms", "pg_sleep", "write_log", "json_serialize_sql",
        "json_deserialize_sql", "list_aggregate", "query", "query_table", "read_text",
        "read_csv", "glob", "postgres_query", "postgres_scan", "postgres_execute",
    }  # fmt: skip
    assert dangerous & ALLOWED_FUNCTION_NAMES == set()
