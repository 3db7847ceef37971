"""One validation mechanism for every document Trace accepts (DAGs, chain_sync declarations,
operator configs, task outputs): strict pydantic models for structure and types, plain rule
functions over the raw data for what spans fields, and both reported together as
`field.path: message` lines. Pure Python (pydantic only): no Django, so operators can use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

# Integers land in Postgres bigint columns (block numbers, ids, cursors, byte counts): a
# larger one would be a database error long after it was accepted.
BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1  # Postgres integer (e.g. Django's PositiveIntegerField)

BlockNumber = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
ChainId = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
Count = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
PoolName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,99}$")]
HEX_RE = r"^0x[0-9a-fA-F]{1,128}$"
HexStr = Annotated[str, StringConstraints(pattern=HEX_RE)]

# What fits in one JSON value we store (jsonb): bounded so a YAML alias bomb or a deeply nested
# body is refused with a message instead of exhausting memory or the stack.
JSON_MAX_DEPTH = 64
JSON_MAX_ITEMS = 100_000


class StrictModel(BaseModel):
    """Unknown fields are refused, never ignored; types are not coerced ("3" is not 3, true is
    not 1): documents come from YAML or JSON, which already carry types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Problem = tuple[str, str]  # (field path, message); an empty path is the document itself


def problem_line(path: str, message: str) -> str:
    return f"{path}: {message}" if path else message


class Problems(Exception):
    """A document is invalid: `problems` holds one `(field.path, message)` per problem and
    `errors` the same as `field.path: message` lines."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(dict.fromkeys(problems))
        self.errors = [problem_line(*p) for p in self.problems]
        super().__init__("; ".join(self.errors))


def text_problem(value: str) -> str | None:
    """Why Postgres cannot store `value` as text or jsonb, or None."""
    if "\x00" in value:
        return "text may not contain NUL (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "text may not contain unpaired surrogates"
    return None


def json_problems(
    value: Any,
    *,
    max_depth: int = JSON_MAX_DEPTH,
    max_items: int = JSON_MAX_ITEMS,
    limit: int = 20,
) -> list[Problem]:
    """Where and why `value` is not a JSON value Postgres can store (at most `limit` of them;
    empty: it is one). Iterative, so a deep value costs no stack; bounded in depth and size,
    and a too deep or too large value is reported at its first levels, not at a path as long
    as the nesting. Paths are relative to `value`."""
    problems: list[Problem] = []
    # (item, depth, its path, the path of its ancestor at depth <= 3)
    stack: list[tuple[Any, int, str, str]] = [(value, 0, "", "")]
    seen = 0
    while stack and len(problems) < limit:
        item, depth, path, near = stack.pop()
        near = path if depth <= 3 else near
        seen += 1
        if depth > max_depth:
            return [*problems, (near, f"nested more than {max_depth} levels deep")]
        if seen > max_items:
            return [*problems, (near, f"more than {max_items} values")]
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    problems.append((path, f"key {key!r} must be a string"))
                elif problem := text_problem(key):
                    problems.append((join_path(path, key), f"key: {problem}"))
            stack.extend((v, depth + 1, join_path(path, str(k)), near) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, depth + 1, f"{path}[{i}]", near) for i, v in enumerate(item))
        elif isinstance(item, str):
            if problem := text_problem(item):
                problems.append((path, problem))
        elif isinstance(item, float):
            if not math.isfinite(item):
                problems.append((path, "numbers must be finite"))
        elif item is not None and not isinstance(item, int):  # bool is an int
            kind = type(item).__name__
            problems.append(
                (path, f"unsupported value of type {kind}: only JSON values are allowed")
            )
    return sorted(problems)


def json_problem(value: Any, **limits: int) -> Problem | None:
    """The first of `json_problems`, or None."""
    found = json_problems(value, limit=1, **limits)
    return found[0] if found else None


# --- pydantic errors as `path: message` ---------------------------------------------------------
# pydantic's own location segments (union members, validators) and our union tags `<Name>`.
_INTERNAL_SEGMENT = re.compile(r"^(?:\[key\]|[a-z-]+\[.*\]|function-.*|<[A-Za-z]+>)$")
_MESSAGES = {
    "missing": "required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be a boolean",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
    "string_pattern_mismatch": "must match {pattern}",
    "uuid_type": "must be a UUID string",
    "uuid_parsing": "must be a UUID",
}
RESERVED_FIELDS = frozenset({"id", "org", "org_id", "version", "status"})
# Overrides of one message by (error type, pattern): e.g. secrets must be names, not values.
PATTERN_MESSAGES: dict[str, str] = {HEX_RE: "must be a 0x-hex string"}
# Type errors say what they got, when it is short enough to show.
_SHOW_INPUT = {"string_type", "int_type", "float_type", "bool_type", "literal_error"}


def join_path(path: str, sub: str) -> str:
    if not path or not sub:
        return path or sub
    return path + sub if sub.startswith("[") else f"{path}.{sub}"


def _message(err: Any) -> str:
    kind, ctx, loc = err["type"], err.get("ctx") or {}, err["loc"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        reserved = key.startswith("_") or key in RESERVED_FIELDS
        return "reserved field" if reserved else "unknown field"
    if kind == "invalid_key":
        return f"key {err['input']!r} must be a string"
    if kind == "literal_error":
        choices = ", ".join(re.findall(r"'[^']*'", ctx.get("expected", "")))
        return f"must be one of {choices}{_got(err)}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in PATTERN_MESSAGES:
        return PATTERN_MESSAGES[ctx["pattern"]]
    if kind in _MESSAGES:
        return _MESSAGES[kind].format(**ctx) + _got(err)
    return str(err["msg"]).removeprefix("Value error, ")


def _got(err: Any) -> str:
    value = err.get("input")
    if err["type"] not in _SHOW_INPUT or not isinstance(value, str | int | float | type(None)):
        return ""
    shown = repr(value)
    return f", got {shown}" if len(shown) <= 40 else ""


def format_errors(exc: ValidationError, prefix: str = "") -> list[Problem]:
    """Each pydantic error as `(prefix.field.path, message)`."""
    out: list[Problem] = []
    for err in exc.errors():
        path, is_key = prefix, False
        for seg in err["loc"][:-1] if err["type"] == "invalid_key" else err["loc"]:
            if isinstance(seg, int):
                path += f"[{seg}]"
            elif seg == "[key]":
                is_key = True
            elif not _INTERNAL_SEGMENT.match(seg):
                path = join_path(path, seg)
        out.append((path, ("key " if is_key else "") + _message(err)))
    return list(dict.fromkeys(out))


# --- tolerant readers, for rules that run on raw (maybe invalid) data ----------------------------
def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def validate(
    model: type[StrictModel],
    data: Any,
    *,
    rules: Callable[[dict[str, Any]], Iterable[Problem]] | None = None,
    prefix: str = "",
    error: type[Problems] = Problems,
) -> Any:
    """`model` validated from `data`, or `error` (Problems) listing every structural error and
    every rule broken. `rules(raw)` yields `(field path, message)` and runs on the raw mapping
    even when fields are invalid, so one answer shows everything wrong."""
    problems: list[Problem] = []
    parsed, cause = None, None
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        problems += format_errors(exc, prefix)
        cause = exc
    if rules is not None and isinstance(data, dict):
        problems += [(join_path(prefix, path), message) for path, message in rules(data)]
    if problems:
        raise error(problems) from cause
    return parsed
