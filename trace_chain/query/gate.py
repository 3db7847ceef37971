"""The SQL gate: one user query in; out, the SQL regenerated from the checked tree, or a refusal.

Parse once with sqlglot's DuckDB dialect and fail closed (after Superset's `SQLStatement`):
length capped before parsing, nesting capped before the parser recurses, exactly one SELECT,
every node of the tree of a type named in `allowlist`, every function allowed by name, every
relation resolved by scope (a CTE masks a relation of its name, as Superset's `is_cte`) and
authorized, and what runs is the tree regenerated, never the user's string. The regenerated SQL
must gate to itself again, so a parser/generator disagreement is a refusal, not a hole.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, TokenError, UnsupportedError
from sqlglot.tokens import Token, TokenType

from trace_chain.query.allowlist import (
    ALLOWED_FUNCTION_CLASSES,
    ALLOWED_FUNCTION_NAMES,
    ALLOWED_SYNTAX,
    QUERY_CLAUSES,
)
from trace_chain.query.errors import QueryRefused

log = logging.getLogger(__name__)

MAX_LENGTH = 100_000
MAX_DEPTH = 64
# sqlglot's parser and generator recurse, ~30 frames per nesting level: make sure a gate call
# has this many frames above wherever it is called from, so MAX_DEPTH levels always fit and a
# deeper tree is a RecursionError caught as `too_deep`, never a failure in the caller.
_RECURSION_HEADROOM = 4_000

# Refusal codes, stable: the API's error codes and the hostile corpus assert them.
TOO_LONG = "too_long"
TOO_DEEP = "too_deep"
EMPTY = "empty"
SYNTAX = "syntax"
MULTIPLE_STATEMENTS = "multiple_statements"
NOT_A_QUERY = "not_a_query"
TABLE_FUNCTION = "table_function"
FUNCTION = "function"
QUALIFIED_NAME = "qualified_name"
STRING_RELATION = "string_relation"
UNKNOWN_RELATION = "unknown_relation"
CONSTRUCT = "construct"
UNSTABLE = "unstable"
REFUSAL_CODES = frozenset(
    {
        TOO_LONG, TOO_DEEP, EMPTY, SYNTAX, MULTIPLE_STATEMENTS, NOT_A_QUERY, TABLE_FUNCTION,
        FUNCTION, QUALIFIED_NAME, STRING_RELATION, UNKNOWN_RELATION, CONSTRUCT, UNSTABLE,
    }
)  # fmt: skip

_DIALECT = Dialect.get_or_raise("duckdb")
_OPEN = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE}
_CLOSE = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE}
# Statements a query may start with; any other first keyword names what was refused.
_QUERY_STARTS = {TokenType.SELECT, TokenType.WITH, TokenType.FROM, TokenType.L_PAREN}
# Bare names DuckDB binds to built-in values when no column has the name, quoted or not.
_SQL_VALUE_NAMES = frozenset(
    {"current_catalog", "current_role", "current_schema", "current_user", "session_user", "user"}
)
_RELATION_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")  # trusted configuration, not user SQL
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_FRIENDLY = {
    exp.Placeholder: "a query parameter ($1, ?)",
    exp.Parameter: "a query parameter",
    exp.Lock: "FOR UPDATE / FOR SHARE",
    exp.Into: "SELECT ... INTO",
    exp.Pivot: "PIVOT / UNPIVOT",
    exp.HistoricalData: "time travel (AT ...)",
}
_CLAUSES = {
    "into": "SELECT ... INTO",
    "locks": "FOR UPDATE / FOR SHARE",
    "pivots": "PIVOT / UNPIVOT",
    "version": "time travel (AT ...)",
    "system_time": "time travel (FOR SYSTEM_TIME)",
}


class _DropSqlglotRecords(logging.Filter):
    """sqlglot's own warnings quote the SQL they parsed; Trace's logs never hold user SQL."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


logging.getLogger("sqlglot").addFilter(_DropSqlglotRecords())


@dataclass(frozen=True)
class GatedQuery:
    """A query the gate accepted: `sql` is what runs (regenerated, never the user's text)."""

    sql: str
    relations: frozenset[str]  # the authorized relations it reads (CTEs not counted)
    sql_sha256: str  # of the user's text, for audit rows and logs


def sql_sha256(sql: str) -> str:
    return hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest()


def gate(
    sql: str,
    *,
    relations: Collection[str],
    max_length: int = MAX_LENGTH,
    max_depth: int = MAX_DEPTH,
) -> GatedQuery:
    """Check one user query against the relations the caller may read.

    Returns the SQL to run; raises `QueryRefused(code, reason)` otherwise, after logging a
    `query_refused` event with the code and a hash of the SQL (never the SQL)."""
    if not isinstance(sql, str):
        raise TypeError("sql must be a str")
    catalog = _catalog(relations)
    digest = sql_sha256(sql)
    _ensure_recursion_headroom()
    try:
        checked, read = _Check(catalog, max_length, max_depth).run(sql)
        again, _ = _Check(catalog, max_length, max_depth).run(checked)
        if again != checked:
            raise QueryRefused(UNSTABLE, "the query could not be checked reliably; simplify it")
    except QueryRefused as refused:
        log.info(
            "query refused: %s",
            refused.code,
            extra={
                "trace_event": "query_refused",
                "code": refused.code,
                "sql_sha256": digest,
                "sql_length": len(sql),
            },
        )
        raise
    return GatedQuery(sql=checked, relations=frozenset(read), sql_sha256=digest)


def _ensure_recursion_headroom() -> None:
    """Raise (never lower) the interpreter's recursion limit to leave room above this frame.
    Process-wide, so only ever raised; pure-Python recursion does not grow the C stack on 3.11."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    if sys.getrecursionlimit() < depth + _RECURSION_HEADROOM:
        sys.setrecursionlimit(depth + _RECURSION_HEADROOM)


def _catalog(relations: Collection[str]) -> dict[str, str]:
    if isinstance(relations, str):
        raise TypeError("relations must be a collection of names, not one string")
    catalog = {}
    for name in relations:
        if not isinstance(name, str) or not _RELATION_NAME.match(name):
            raise ValueError(f"relation names are lowercase identifiers: {name!r}")
        catalog[name] = name
    return catalog


def _fold(name: str) -> str | None:
    """DuckDB folds identifiers' ASCII letters only; a non-ASCII name never matches ours."""
    return name.translate(_ASCII_LOWER) if name.isascii() else None


class _Check:
    def __init__(self, catalog: dict[str, str], max_length: int, max_depth: int) -> None:
        self.catalog = catalog
        self.max_length = max_length
        self.max_depth = max_depth
        self.read: set[str] = set()
        self.string_starts: set[int] = set()
        self.sql = ""

    @property
    def available(self) -> str:
        return ", ".join(sorted(self.catalog)) or "none"

    def run(self, sql: str) -> tuple[str, set[str]]:
        if len(sql) > self.max_length:
            raise QueryRefused(
                TOO_LONG,
                f"the query is {len(sql)} characters long; at most {self.max_length} are allowed",
            )
        if "\0" in sql:
            raise QueryRefused(SYNTAX, "the query contains a NUL character")
        self.sql = sql
        tokens = self._tokens(sql)
        statement = self._parse(sql, tokens)
        for node in _walk(statement):
            self._check(node)
        try:
            generated = statement.sql(
                dialect=_DIALECT,
                identify=True,
                comments=False,
                unsupported_level=ErrorLevel.RAISE,
            )
        except UnsupportedError as error:
            raise QueryRefused(CONSTRUCT, f"not supported: {_first_line(error)}") from None
        except RecursionError:
            raise QueryRefused(TOO_DEEP, "the query is nested too deeply") from None
        return generated, self.read

    # Before the parser: tokens, one statement, bounded nesting.

    def _tokens(self, sql: str) -> list[Token]:
        try:
            tokens = _DIALECT.tokenize(sql)
        except TokenError as error:
            raise QueryRefused(SYNTAX, f"syntax error: {_first_line(error)}") from None
        if not tokens:
            raise QueryRefused(EMPTY, "the query is empty")
        depth = deepest = 0
        ended = False
        for token in tokens:
            if token.token_type == TokenType.SEMICOLON:
                ended = True
                continue
            if ended:
                raise QueryRefused(MULTIPLE_STATEMENTS, "only one SELECT statement is allowed")
            if token.token_type in _OPEN:
                depth += 1
                deepest = max(deepest, depth)
            elif token.token_type in _CLOSE:
                depth -= 1
            if token.token_type == TokenType.STRING:
                self.string_starts.add(token.start)
        if all(token.token_type == TokenType.SEMICOLON for token in tokens):
            raise QueryRefused(EMPTY, "the query is empty")
        if deepest > self.max_depth:
            raise QueryRefused(
                TOO_DEEP,
                f"the query nests {deepest} levels deep; at most {self.max_depth} are allowed",
            )
        return tokens

    def _parse(self, sql: str, tokens: list[Token]) -> exp.Expr:
        first = tokens[0]
        try:
            statements = _DIALECT.parser(error_level=ErrorLevel.RAISE).parse(tokens, sql)
        except ParseError as error:
            if first.token_type not in _QUERY_STARTS:
                raise _not_a_query(first.text) from None
            raise QueryRefused(SYNTAX, _syntax_reason(error)) from None
        except RecursionError:
            raise QueryRefused(TOO_DEEP, "the query is nested too deeply") from None
        except SqlglotError as error:
            raise QueryRefused(SYNTAX, f"syntax error: {_first_line(error)}") from None
        statements = [statement for statement in statements if statement is not None]
        if len(statements) != 1:
            raise QueryRefused(MULTIPLE_STATEMENTS, "only one SELECT statement is allowed")
        statement = statements[0]
        query = statement.this if isinstance(statement, exp.Subquery) else statement
        if not isinstance(query, exp.Select | exp.SetOperation) or first.token_type not in (
            _QUERY_STARTS
        ):
            keyword = first.text if first.token_type not in _QUERY_STARTS else statement.key
            raise _not_a_query(keyword)
        return statement

    # The tree, node by node.

    def _check(self, node: exp.Expr) -> None:
        if isinstance(node, exp.Table):
            self._table(node)
        elif isinstance(node, exp.Func):
            self._function(node)
        elif type(node) not in ALLOWED_SYNTAX:
            raise QueryRefused(CONSTRUCT, f"{_describe(node)} is not allowed")
        elif isinstance(node, exp.Column) and (node.args.get("db") or node.args.get("catalog")):
            raise QueryRefused(
                QUALIFIED_NAME,
                f"qualified name {_plain(node)} is not allowed; name a column as column or "
                "relation.column (struct fields as (column).field)",
            )
        elif (
            isinstance(node, exp.Column)
            and not node.args.get("table")
            and isinstance(node.this, exp.Identifier)
            and _fold(node.name) in _SQL_VALUE_NAMES
        ):
            raise QueryRefused(
                FUNCTION,
                f"{node.name} names a built-in value and is not allowed; "
                f"qualify a column of that name as relation.{node.name}",
            )
        elif isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            raise QueryRefused(
                QUALIFIED_NAME,
                f"qualified function name {_plain(node)} is not allowed; call functions by name",
            )
        elif isinstance(node, exp.Lateral) and not isinstance(node.this, exp.Subquery):
            raise QueryRefused(TABLE_FUNCTION, "LATERAL is allowed over a subquery only")
        clauses = QUERY_CLAUSES.get(type(node))
        if clauses is not None:
            for key, value in node.args.items():
                if value and key not in clauses:
                    raise QueryRefused(CONSTRUCT, f"{_clause(key)} is not allowed here")

    def _table(self, table: exp.Table) -> None:
        source = table.this
        if isinstance(source, exp.Func):
            raise QueryRefused(
                TABLE_FUNCTION,
                f"table function {self._name(source)} is not allowed; "
                f"query the relations {self.available}",
            )
        if not isinstance(source, exp.Identifier):
            raise QueryRefused(CONSTRUCT, f"{_describe(source)} is not a relation")
        if table.args.get("db") or table.args.get("catalog"):
            raise QueryRefused(
                QUALIFIED_NAME,
                f"qualified name {_plain(table, alias=False)} is not allowed; "
                f"use a relation name alone: {self.available}",
            )
        if source.meta.get("start") in self.string_starts:
            raise QueryRefused(
                STRING_RELATION,
                f"'{source.name}' is a string, not a relation (files and URLs cannot be read); "
                f"available: {self.available}",
            )
        if table.args.get("pivots"):
            raise QueryRefused(CONSTRUCT, "PIVOT / UNPIVOT is not allowed")
        name = _fold(source.name)
        if name is not None and _is_cte(table, name):
            return
        canonical = self.catalog.get(name) if name is not None else None
        if canonical is None:
            raise QueryRefused(
                UNKNOWN_RELATION, f"unknown relation '{source.name}'; available: {self.available}"
            )
        # What runs names the authorized relation exactly as the sandbox created it.
        table.set("this", exp.to_identifier(canonical, quoted=True))
        self.read.add(canonical)

    def _name(self, function: exp.Func) -> str:
        """The function's name as the user wrote it (sqlglot may have renamed it: range ->
        generate_series), read from the source at the parser's own token offsets."""
        start, end = function.meta.get("start"), function.meta.get("end")
        if isinstance(start, int) and isinstance(end, int) and 0 <= start <= end < len(self.sql):
            written = self.sql[start : end + 1].strip('"')
            if written and len(written) <= 64:
                return written
        return _function_name(function)

    def _function(self, function: exp.Func) -> None:
        parent = function.parent
        if isinstance(parent, exp.From | exp.Join | exp.Lateral) and function.arg_key == "this":
            raise QueryRefused(
                TABLE_FUNCTION,
                f"table function {self._name(function)} is not allowed; "
                f"query the relations {self.available}",
            )
        if isinstance(function, exp.Anonymous):
            name = function.name
            folded = _fold(name) if isinstance(function.this, str | exp.Identifier) else None
            if folded is None or folded not in ALLOWED_FUNCTION_NAMES:
                raise QueryRefused(FUNCTION, f"function {name} is not allowed")
            function.set("this", folded)  # what runs calls exactly the allowlisted name
        elif type(function) not in ALLOWED_FUNCTION_CLASSES and type(function) not in (
            ALLOWED_SYNTAX
        ):
            raise QueryRefused(FUNCTION, f"function {self._name(function)} is not allowed")


def _walk(root: exp.Expr) -> Iterator[exp.Expr]:
    """Every node, parents before children, without recursion (deep trees are user input)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        children = list(node.iter_expressions())
        stack.extend(reversed(children))


def _is_cte(table: exp.Table, name: str) -> bool:
    """Does `table` name a CTE in scope where it stands? Resolved the way DuckDB does.

    A CTE is visible to the query its WITH belongs to and to the CTEs defined after it in the
    same WITH, never to those before it nor (outside WITH RECURSIVE) to its own body, where the
    name means the relation it shadows. In a recursive CTE only the recursive branch (the right
    side of its UNION) sees itself. Anything else falls through to the catalog, fail closed."""
    child: exp.Expr = table
    node = table.parent
    while node is not None:
        if isinstance(node, exp.CTE) and isinstance(node.parent, exp.With):
            with_ = node.parent
            ctes = with_.expressions
            position = next(i for i, cte in enumerate(ctes) if cte is node)
            if any(_fold(cte.alias_or_name) == name for cte in ctes[:position]):
                return True
            if (
                with_.args.get("recursive")
                and _fold(node.alias_or_name) == name
                and _in_recursive_branch(table, node)
            ):
                return True
            child, node = with_, with_.parent  # its query's WITH is done; go on outward
            continue
        with_ = node.args.get("with_") if isinstance(node, exp.Expr) else None
        if (
            isinstance(with_, exp.With)
            and child is not with_
            and any(_fold(cte.alias_or_name) == name for cte in with_.expressions)
        ):
            return True
        child, node = node, node.parent
    return False


def _in_recursive_branch(table: exp.Table, cte: exp.CTE) -> bool:
    body = cte.this
    if not isinstance(body, exp.SetOperation):
        return False
    node: exp.Expr | None = table
    while node is not None and node.parent is not body:
        node = node.parent
    return node is not None and node is body.expression


def _not_a_query(keyword: str) -> QueryRefused:
    return QueryRefused(
        NOT_A_QUERY, f"{keyword.upper()} is not allowed: only one SELECT query can run"
    )


def _syntax_reason(error: ParseError) -> str:
    detail = error.errors[0] if error.errors else {}
    description = detail.get("description") or _first_line(error)
    if detail.get("line"):
        return f"syntax error at line {detail['line']}, column {detail['col']}: {description}"
    return f"syntax error: {description}"


def _first_line(error: Exception) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # sqlglot underlines with ANSI codes
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _function_name(function: exp.Func) -> str:
    if isinstance(function, exp.Anonymous):
        return function.name
    return function.sql_name().lower()


def _describe(node: exp.Expr) -> str:
    for kind, text in _FRIENDLY.items():
        if isinstance(node, kind):
            return text
    return node.key.upper()


def _clause(key: str) -> str:
    return _CLAUSES.get(key) or key.rstrip("_").replace("_", " ").upper()


def _plain(node: exp.Expr, *, alias: bool = True) -> str:
    """The node as the user would recognize it, for reasons (short, no quotes added)."""
    if not alias:
        node = node.copy()
        node.set("alias", None)
    try:
        text = node.sql(dialect=_DIALECT)
    except (SqlglotError, RecursionError):
        text = node.key
    return text if len(text) <= 80 else text[:77] + "..."
