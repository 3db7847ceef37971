"""The hostile corpus (hostile_queries.yaml), each case twice: the gate refuses it with the
expected code, and, run directly on a fresh hardened sandbox with no gate at all, it reads no
decoy file, no URL, no Postgres table the role may not read, and writes no file; the cases the
corpus marks `blocked` show no setting or catalog entry either (see the file's header)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.query.conftest import RELATIONS, World, make_sandbox
from trace_chain.query.errors import QueryError, QueryRefused
from trace_chain.query.gate import REFUSAL_CODES, gate
from trace_chain.query.hardening import extension_path

CORPUS_FILE = Path(__file__).with_name("hostile_queries.yaml")
CORPUS = yaml.safe_load(CORPUS_FILE.read_text(encoding="utf-8"))
ENGINE_OUTCOMES = {"blocked", "reveals", "reaches_postgres"}
# Long generated attacks, too big to write out in the corpus file.
GENERATED = {
    "nested_parentheses": "SELECT " + "(" * 200 + "1" + ")" * 200,
    "nested_subqueries": "SELECT * FROM " + "(SELECT * FROM " * 100 + "blocks" + ")" * 100,
    "nested_lists": "SELECT " + "[" * 300 + "1" + "]" * 300,
    "not_chain": "SELECT " + "NOT " * 3000 + "true",
    "too_long": "SELECT 1 AS a" + ", 1" * 40_000,
}


def test_the_corpus_is_large_and_well_formed():
    ids = [case["id"] for case in CORPUS]
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids), "duplicate ids"
    for case in CORPUS:
        assert set(case) <= {"id", "attack", "sql", "refused", "reason", "engine"}, case["id"]
        assert case["attack"] and case["sql"], case["id"]
        assert case["refused"] in REFUSAL_CODES, case["id"]
        assert case.get("engine", "blocked") in ENGINE_OUTCOMES, case["id"]


def render(sql: str, world: World, scratch: Path) -> str:
    values = {
        **{f"decoy_{name}": path for name, path in world.decoys.items()},
        "allowed": world.allowed_files[0],
        "cold_dir": str(world.cold_dir),
        "url": world.url,
        "dsn": world.postgres.dsn,
        "superuser_dsn": world.superuser_dsn,
        "scratch": str(scratch),
        "extension": str(extension_path("postgres_scanner")),
        **GENERATED,
    }
    for name, value in values.items():
        sql = sql.replace(f"<<{name}>>", value)
    assert "<<" not in sql, f"unknown placeholder in {sql[:80]}"
    return sql


@pytest.fixture
def scratch(tmp_path) -> Path:
    path = tmp_path / "scratch"
    path.mkdir()
    return path


@pytest.mark.parametrize("case", CORPUS, ids=[case["id"] for case in CORPUS])
def test_the_gate_refuses_it(case, world, scratch):
    sql = render(case["sql"], world, scratch)
    with pytest.raises(QueryRefused) as refused:
        gate(sql, relations=RELATIONS)
    assert refused.value.code == case["refused"], refused.value.reason
    assert refused.value.reason
    if "reason" in case:
        assert case["reason"] in refused.value.reason


@dataclass
class Outcome:
    text: str  # what came back: the rows, or the (redacted) error a user would see
    error: QueryError | None


def run_ungated(world: World, sql: str, temp: Path) -> Outcome:
    with make_sandbox(world, temp) as sandbox:
        try:
            with sandbox.guard(seconds=20):
                cursor = sandbox.connection.execute(sql)
                rows = cursor.fetchall() if cursor.description else []
        except QueryError as error:
            return Outcome(text=f"{error.code}: {error.reason}", error=error)
        return Outcome(text=repr(rows), error=None)


@pytest.mark.parametrize("case", CORPUS, ids=[case["id"] for case in CORPUS])
def test_the_hardened_connection_holds_without_the_gate(case, world, scratch, tmp_path):
    sql = render(case["sql"], world, scratch)
    temp = tmp_path / "query-temp"
    engine = case.get("engine", "blocked")
    world.hits.clear()

    outcome = run_ungated(world, sql, temp)

    assert world.hits == [], f"the query reached the URL: {world.hits}"
    assert list(scratch.iterdir()) == [], "the query wrote a file"
    never = {"file canary", "/etc/passwd"} | {f"decoy {name}" for name in world.decoys}
    if engine != "reaches_postgres":
        never.add("postgres canary")
    if engine == "blocked":
        never = set(world.markers(temp))
    for label, marker in world.markers(temp).items():
        if label in never:
            assert marker not in outcome.text, f"{label} came back: {outcome.text[:300]}"
