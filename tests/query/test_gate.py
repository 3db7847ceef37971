"""The SQL gate by itself: what it returns (the regenerated SQL, the relations read), how it
resolves names by scope, the caps on length and nesting, its reasons, and what it logs."""

# ruff: noqa: S608 - these tests build SQL from their own fixtures and attacks, on purpose

from __future__ import annotations

import logging

import pytest

from trace_chain.query.errors import QueryRefused
from trace_chain.query.gate import MAX_DEPTH, GatedQuery, gate, sql_sha256

RELATIONS = frozenset({"blocks", "transactions", "logs"})


def refused(sql: str, **kwargs) -> QueryRefused:
    with pytest.raises(QueryRefused) as caught:
        gate(sql, relations=kwargs.pop("relations", RELATIONS), **kwargs)
    return caught.value


# What it returns.


def test_returns_the_regenerated_sql_and_the_relations_read():
    gated = gate(
        "select b.miner, count(*) from BLOCKS b join transactions t using (block_number) "
        "/* a comment */ group by 1 -- another",
        relations=RELATIONS,
    )
    assert isinstance(gated, GatedQuery)
    assert gated.sql == (
        'SELECT "b"."miner", COUNT(*) FROM "blocks" AS "b" JOIN "transactions" AS "t" '
        'USING ("block_number") GROUP BY 1'
    )
    assert gated.relations == {"blocks", "transactions"}


def test_what_runs_is_never_the_users_text():
    sql = "SELECT count(*) FROM blocks -- */, read_csv('/etc/passwd') /*"
    gated = gate(sql, relations=RELATIONS)
    assert gated.sql == 'SELECT COUNT(*) FROM "blocks"'
    assert "read_csv" not in gated.sql and "--" not in gated.sql and "/*" not in gated.sql


def test_relation_names_are_rewritten_to_the_authorized_spelling():
    gated = gate('SELECT * FROM "BLOCKS", Logs', relations=RELATIONS)
    assert gated.sql == 'SELECT * FROM "blocks", "logs"'
    assert gated.relations == {"blocks", "logs"}


def test_allowlisted_untyped_functions_run_under_their_allowlisted_name():
    gated = gate("SELECT \"NOW\"(), Date_Part('hour', now())", relations=RELATIONS)
    assert gated.sql == "SELECT NOW(), DATE_PART('hour', NOW())"


def test_the_output_gates_to_itself():
    for sql in (
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) "
        "SELECT * FROM t",
        "SELECT list_transform([1, 2], x -> x + 1), {'a': 1}.a, [x FOR x IN [1, 2]]",
        "FROM blocks SELECT block_number QUALIFY row_number() OVER (ORDER BY timestamp) = 1",
    ):
        once = gate(sql, relations=RELATIONS)
        assert gate(once.sql, relations=RELATIONS).sql == once.sql


def test_a_trailing_semicolon_is_one_statement():
    assert gate("SELECT 1;", relations=RELATIONS).sql == "SELECT 1"
    assert gate("SELECT 1 ; ;", relations=RELATIONS).sql == "SELECT 1"


def test_the_hash_is_of_the_users_text():
    sql = "SELECT 1 -- mine"
    assert gate(sql, relations=RELATIONS).sql_sha256 == sql_sha256(sql)
    assert len(sql_sha256(sql)) == 64 and sql_sha256(sql) != sql_sha256("SELECT 1")


# The reasons a user reads (the brief's examples, word for word).


def test_reasons_say_what_to_change():
    assert refused("ATTACH 'x.db' AS x").reason.startswith("ATTACH is not allowed")
    assert refused("SELECT * FROM secret").reason == (
        "unknown relation 'secret'; available: blocks, logs, transactions"
    )
    assert refused("SELECT read_csv('x')").reason == "function read_csv is not allowed"
    assert refused("SELECT * FROM read_csv('x')").reason.startswith(
        "table function read_csv is not allowed"
    )
    assert refused("SELECT 1; SELECT 2").reason == "only one SELECT statement is allowed"
    assert refused("SELECT * FROM range(3)").reason.startswith("table function range is")
    assert "hot.public.t" in refused("SELECT * FROM hot.public.t").reason


def test_an_empty_catalog_says_so():
    assert refused("SELECT * FROM blocks", relations=[]).reason.endswith("available: none")


def test_syntax_errors_name_the_place_and_carry_no_terminal_codes():
    error = refused("SELECT * FROM blocks WHERE")
    assert error.code == "syntax"
    assert "line 1" in error.reason and "\x1b" not in error.reason


@pytest.mark.parametrize("sql", ["", "   ", ";", " ; ; ", "-- only a comment", "/* */"])
def test_empty_queries(sql):
    assert refused(sql).code == "empty"


# Scope: CTEs mask relations exactly where DuckDB says they do.


@pytest.mark.parametrize(
    ("sql", "reads"),
    [
        ("WITH secret AS (SELECT 1) SELECT * FROM secret", set()),
        ("WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b", set()),
        ("WITH blocks AS (SELECT * FROM blocks) SELECT * FROM blocks", {"blocks"}),
        ("WITH x AS (SELECT 1) SELECT * FROM (SELECT * FROM x) s", set()),
        ("WITH x AS (SELECT 1) SELECT * FROM (WITH y AS (SELECT * FROM x) SELECT * FROM y)", set()),
        ("WITH x AS (SELECT 1) SELECT * FROM x UNION ALL SELECT * FROM x", set()),
        ("WITH x AS (SELECT 1) SELECT (SELECT count(*) FROM x)", set()),
        ("WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x", set()),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
            "SELECT * FROM r",
            set(),
        ),
        ("WITH Secret AS (SELECT 1) SELECT * FROM SECRET", set()),
    ],
)
def test_references_to_a_cte_in_scope_are_the_cte(sql, reads):
    assert gate(sql, relations=RELATIONS).relations == reads


@pytest.mark.parametrize(
    "sql",
    [
        # a CTE's own body sees the relation it shadows, not itself
        "WITH secret AS (SELECT * FROM secret) SELECT * FROM secret",
        # an earlier CTE does not see a later one, RECURSIVE or not
        "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a",
        "WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a",
        # RECURSIVE without a UNION: the self-reference is the relation
        "WITH RECURSIVE secret AS (SELECT * FROM secret) SELECT * FROM secret",
        # the anchor of a recursive UNION reads the relation, only the recursive side the CTE
        "WITH RECURSIVE secret AS (SELECT * FROM secret UNION ALL SELECT * FROM secret) "
        "SELECT * FROM secret",
        # a CTE inside a subquery is not visible outside it
        "SELECT * FROM (WITH s AS (SELECT 1) SELECT * FROM s) t, s",
        # a CTE in one branch of a UNION is not visible in the other
        "SELECT * FROM s UNION ALL (WITH s AS (SELECT 1) SELECT * FROM s)",
        # an alias is not a relation
        "SELECT * FROM blocks AS secret, secret",
        # a nested WITH inside an earlier CTE does not see a later sibling of that CTE
        "WITH a AS (WITH b AS (SELECT * FROM c) SELECT * FROM b), c AS (SELECT 1) SELECT * FROM a",
    ],
)
def test_names_outside_a_ctes_scope_are_relations_and_must_be_authorized(sql):
    error = refused(sql)
    assert error.code == "unknown_relation", error.reason


def test_a_cte_named_like_an_authorized_relation_in_its_own_body_reads_the_relation():
    gated = gate(
        "WITH RECURSIVE blocks AS (SELECT * FROM blocks UNION ALL SELECT * FROM blocks) SELECT 1",
        relations=RELATIONS,
    )
    assert gated.relations == {"blocks"}


def test_non_ascii_names_never_match_an_ascii_relation():
    for name in ("bloc\u212as", "BLOCK\u0053\u0307", "\uff42locks", "bl\u043ecks"):
        assert refused(f'SELECT * FROM "{name}"').code == "unknown_relation", name


# Caps, before and around the parser.


def test_length_is_capped_before_parsing():
    huge = "SELECT " + "(" * 100_000  # would be a nesting or syntax error if it were parsed
    error = refused(huge)
    assert error.code == "too_long"
    assert "100000" in error.reason
    assert refused("SELECT 1", max_length=5).code == "too_long"


def test_nesting_is_capped_at_max_depth():
    at_cap = "SELECT " + "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH
    over = "SELECT " + "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1)
    assert gate(at_cap, relations=RELATIONS).sql.count("(") == MAX_DEPTH
    error = refused(over)
    assert error.code == "too_deep"
    assert f"{MAX_DEPTH + 1} levels" in error.reason


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "NOT " * 5000 + "true",
        "SELECT " + "- " * 20000 + "1",
        "SELECT * FROM blocks WHERE " + " AND ".join(["block_number = 1"] * 4000),
    ],
)
def test_deep_trees_without_brackets_are_refusals_not_crashes(sql):
    try:
        gated = gate(sql, relations=RELATIONS)
    except QueryRefused as error:
        assert error.code in {"too_deep", "syntax"}, error.reason
    else:
        assert gated.sql.startswith("SELECT")


def test_nul_characters_are_refused():
    assert refused("SELECT 'a\0b'").code == "syntax"


# Inputs from trusted code.


def test_relation_names_must_be_plain_identifiers():
    with pytest.raises(ValueError):
        gate("SELECT 1", relations={"Blocks"})
    with pytest.raises(ValueError):
        gate("SELECT 1", relations={"hot.public.t"})
    with pytest.raises(TypeError):
        gate("SELECT 1", relations="blocks")
    with pytest.raises(TypeError):
        gate(b"SELECT 1", relations=RELATIONS)  # type: ignore[arg-type]


# Logging: a structured event, never the SQL.


def test_refusals_are_logged_with_a_hash_and_without_the_sql(caplog):
    secret_text = "SELECT * FROM read_csv('/very/private/path.csv')"
    caplog.set_level(logging.DEBUG)
    refused(secret_text)
    events = [r for r in caplog.records if getattr(r, "trace_event", None) == "query_refused"]
    assert len(events) == 1
    event = events[0]
    assert event.code == "table_function"
    assert event.sql_sha256 == sql_sha256(secret_text)
    assert event.sql_length == len(secret_text)
    for record in caplog.records:
        text = record.getMessage() + " " + " ".join(map(str, vars(record).values()))
        assert "/very/private/path.csv" not in text and "read_csv" not in text


def test_sqlglots_own_warnings_which_quote_the_sql_are_not_logged(caplog):
    caplog.set_level(logging.DEBUG)
    refused("LOAD '/very/private/extension'")  # sqlglot warns while parsing it as a command
    assert all("/very/private" not in record.getMessage() for record in caplog.records)


def test_accepted_queries_log_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger="trace_chain.query")
    gate("SELECT 1 FROM blocks", relations=RELATIONS)
    assert caplog.records == []
