"""The valid corpus (valid_queries.yaml): analysts' queries the gate accepts, that run on the
hardened sandbox, and whose regenerated SQL answers exactly what the user's own text answers on
an ordinary DuckDB over the same data (the oracle). Tricks the gate accepts are proved harmless
the same way, with their exact rows."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from tests.query.conftest import RELATIONS, World, make_sandbox
from trace_chain.query.gate import gate
from trace_chain.query.hardening import extension_path

CORPUS = yaml.safe_load(Path(__file__).with_name("valid_queries.yaml").read_text("utf-8"))


@pytest.fixture(scope="module")
def oracle(world: World) -> Iterator[object]:
    """Plain DuckDB, nothing locked, the same views; Postgres attached as the superuser."""
    import duckdb

    con = duckdb.connect(config={"autoload_known_extensions": False})
    con.execute(f"LOAD '{extension_path('postgres_scanner')}'")
    con.execute(f"ATTACH '{world.superuser_dsn}' AS hot (TYPE postgres, READ_ONLY)")
    for name, body in world.views.items():
        con.execute(f'CREATE VIEW "{name}" AS {body}')
    yield con
    con.close()


def normalized(rows: list[tuple]) -> list[tuple]:
    def value(v: object) -> object:
        if isinstance(v, float | Decimal):
            return round(float(v), 9)
        if isinstance(v, list | tuple):
            return type(v)(value(x) for x in v)
        return v

    return [tuple(value(v) for v in row) for row in rows]


def test_the_corpus_is_well_formed():
    ids = [case["id"] for case in CORPUS]
    assert len(ids) >= 50
    assert len(set(ids)) == len(ids)
    for case in CORPUS:
        assert set(case) <= {"id", "sql", "expect", "ordered", "relations", "oracle"}, case["id"]


@pytest.mark.parametrize("case", CORPUS, ids=[case["id"] for case in CORPUS])
def test_accepted_and_answered_as_written(case, world, oracle, tmp_path):
    gated = gate(case["sql"], relations=RELATIONS)
    if "relations" in case:
        assert gated.relations == frozenset(case["relations"])
    assert gated.relations <= RELATIONS

    with make_sandbox(world, tmp_path / "query-temp") as sandbox, sandbox.guard(seconds=60):
        rows = normalized(sandbox.connection.execute(gated.sql).fetchall())

    if "expect" in case:
        assert rows == normalized([tuple(row) for row in case["expect"]])
    if case.get("oracle", True):
        expected = normalized(oracle.execute(case["sql"]).fetchall())
        if case.get("ordered"):
            assert rows == expected
        else:
            assert sorted(map(repr, rows)) == sorted(map(repr, expected))
    assert rows, "an empty answer proves little: pick a query that returns rows"
