"""A condition document (`{"match": "log", "address": [...], "event": "...", "where": "..."}`)
validated whole: structure by strict models, signatures and the where-expression by their own
parsers, every problem at once as `condition.<field>: message`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from trace_chain import chain_schema
from trace_operators.validation import (
    PATTERN_MESSAGES,
    Problem,
    Problems,
    StrictModel,
    join_path,
    json_problems,
    validate,
)

from .abi import Signature, checksum_ok, signature_parse
from .expression import WHERE_MAX_CHARS, Expression, where_parse

PREFIX = "condition"
MAX_ADDRESSES = 1000
ADDRESS_RE = r"^0x[0-9a-fA-F]{40}$"
SELECTOR_RE = r"^0x[0-9a-fA-F]{8}$"
PATTERN_MESSAGES[ADDRESS_RE] = "must be an address, 0x + 40 hex digits"
PATTERN_MESSAGES[SELECTOR_RE] = "must be a function selector, 0x + 8 hex digits"

Address = Annotated[str, StringConstraints(pattern=ADDRESS_RE)]
Addresses = Annotated[list[Address], Field(min_length=1, max_length=MAX_ADDRESSES)]
SignatureText = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
WhereText = Annotated[str, StringConstraints(min_length=1, max_length=WHERE_MAX_CHARS)]
MATCHES = {"log": "logs", "transaction": "transactions", "trace": "traces"}
# Fields of each kind of match, so a field given to another is named, not just "unknown".
_CALL_KEYS = {"from", "to", "selector", "function"}
_KEYS = {"log": {"address", "event"}, "transaction": _CALL_KEYS, "trace": _CALL_KEYS}


class LogConditionModel(StrictModel):
    match: Literal["log"]
    address: Addresses | None = None
    event: SignatureText | None = None
    where: WhereText | None = None


class TransactionConditionModel(StrictModel):
    match: Literal["transaction"]
    from_: Addresses | None = Field(default=None, alias="from")
    to: Addresses | None = None
    selector: Annotated[str, StringConstraints(pattern=SELECTOR_RE)] | None = None
    function: SignatureText | None = None
    where: WhereText | None = None


class TraceConditionModel(TransactionConditionModel):
    """An internal call (or a transaction's top-level call): the same filters, over `traces`."""

    match: Literal["trace"]  # type: ignore[assignment]


_MODELS = {
    "log": LogConditionModel,
    "transaction": TransactionConditionModel,
    "trace": TraceConditionModel,
}


@dataclass(frozen=True)
class Condition:
    """A checked condition: what `condition_sql` pushes down and `condition_matches`
    evaluates. Addresses and the selector are lowercase; `signature` is the event (logs) or
    the function (transactions, traces); `fields` is every name the where-expression may use
    (the columns and the arguments, less an argument named like a column)."""

    match: Literal["log", "transaction", "trace"]
    addresses: tuple[str, ...] = ()  # the log's emitter
    from_addresses: tuple[str, ...] = ()
    to_addresses: tuple[str, ...] = ()
    selector: str | None = None
    signature: Signature | None = None
    where: Expression | None = None
    fields: dict[str, str] = field(default_factory=dict, hash=False)
    arguments: frozenset[str] = frozenset()  # the signature's named arguments

    @property
    def dataset(self) -> str:
        return MATCHES[self.match]

    @property
    def topic0(self) -> str | None:
        return self.signature.hash if self.match == "log" and self.signature else None

    def to_json(self) -> dict[str, Any]:
        """The condition as a normalized document (lowercase addresses; a function's
        selector alongside it; an event's topic0), for storing and showing."""
        out: dict[str, Any] = {"match": self.match}
        for key, values in (
            ("address", self.addresses),
            ("from", self.from_addresses),
            ("to", self.to_addresses),
        ):
            if values:
                out[key] = list(values)
        if self.signature is not None:
            out["event" if self.match == "log" else "function"] = self.signature.canonical
        if self.selector is not None:
            out["selector"] = self.selector
        if self.topic0 is not None:
            out["topic0"] = self.topic0
        if self.where is not None:
            out["where"] = self.where.source
        return out


def column_kinds(dataset: str) -> dict[str, str]:
    kinds = {"int64": "int", "wei": "int", "text": "str", "bool": "bool"}
    return {c.name: kinds[c.kind] for c in chain_schema.COLUMNS[dataset]}


def condition_build(data: Any) -> Condition:
    """`data` checked, or Problems naming every field wrong (`condition.where: ...`)."""
    if not isinstance(data, dict):
        raise Problems([(PREFIX, "must be a mapping")])
    stored = json_problems(data)
    if stored:
        raise Problems([(join_path(PREFIX, path), message) for path, message in stored])
    match = data.get("match")
    if not isinstance(match, str) or match not in MATCHES:
        shown = repr(match) if isinstance(match, str) and len(match) <= 40 else None
        got = f", got {shown}" if shown else ""
        kinds = "must be 'transaction', 'log' or 'trace'"
        message = "required" if "match" not in data else f"{kinds}{got}"
        raise Problems([(f"{PREFIX}.match", message)])
    foreign = sorted({k for keys in _KEYS.values() for k in keys} - _KEYS[match])
    problems: list[Problem] = [
        (f"{PREFIX}.{key}", f"only for match {' or '.join(map(repr, _owners(key)))}")
        for key in foreign
        if key in data
    ]
    body = {k: v for k, v in data.items() if k not in foreign}
    model = _MODELS[match]
    parsed = None
    try:
        parsed = validate(model, body, prefix=PREFIX)
    except Problems as exc:
        problems += [_yaml_hint(body, path, message) for path, message in exc.problems]
    if parsed is None:
        raise Problems(problems)
    condition = _semantic(parsed, problems)
    if problems:
        raise Problems(problems)
    assert condition is not None
    return condition


_HEX_FIELD = re.compile(rf"^{PREFIX}\.(?:address|from|to)\[\d+\]$|^{PREFIX}\.selector$")


def _yaml_hint(body: dict[str, Any], path: str, message: str) -> Problem:
    """YAML reads an unquoted `0x5FbD…` as a number: say so where an address or a selector
    came as an integer."""
    if _HEX_FIELD.match(path) and message.startswith("must be a string"):
        return (path, "must be a string: quote it (YAML reads an unquoted 0x… as a number)")
    return (path, message)


def _semantic(parsed: Any, problems: list[Problem]) -> Condition | None:
    """Addresses' checksums, the signature, the where-expression against the fields they
    make known; problems appended, the Condition returned when there are none."""
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("address", "from", "to"):
        values = getattr(parsed, "from_" if key == "from" else key, None) or []
        for index, value in enumerate(values):
            if not checksum_ok(value):
                problems.append((f"{PREFIX}.{key}[{index}]", "bad EIP-55 checksum"))
        lowered = [v.lower() for v in values]
        for index, value in enumerate(lowered):
            if value in lowered[:index]:
                problems.append((f"{PREFIX}.{key}[{index}]", f"{value} is listed twice"))
        lists[key] = tuple(lowered)
    is_log = parsed.match == "log"
    dataset = MATCHES[parsed.match]
    fields = column_kinds(dataset)
    signature_key = "event" if is_log else "function"
    signature_text = parsed.event if is_log else parsed.function
    signature = None
    if signature_text is not None:
        try:
            signature = signature_parse(signature_text, event=is_log)
        except Problems as exc:
            problems += [(f"{PREFIX}.{signature_key}", m) for _, m in exc.problems]
    # An argument named like a column (`value` of transferFrom) is fine until the
    # where-expression names it: then which one is meant is asked, not guessed.
    ambiguous: dict[str, str] = {}
    if signature is not None:
        for name, kind in signature.fields().items():
            if name in fields:
                ambiguous[name] = (
                    f"{name!r} is both an argument of condition.{signature_key} and a "
                    f"{dataset} column; rename the argument in the signature (names do not "
                    "change the hash)"
                )
                del fields[name]
            else:
                fields[name] = kind
    selector = None
    if not is_log:
        if parsed.selector is not None and parsed.function is not None:
            problems.append((f"{PREFIX}.selector", "give either selector or function, not both"))
        selector = parsed.selector.lower() if parsed.selector else None
        if signature is not None:
            selector = signature.selector
    filters = ("address", "event") if is_log else ("from", "to", "selector", "function")
    if parsed.where is None and not any(getattr(parsed, _attr(k)) for k in filters):
        names = ", ".join((*filters, "where"))
        problems.append((PREFIX, f"give at least one of {names}: it would match every row"))
    where = None
    # A signature that failed would make every argument an "unknown name": say it once.
    if parsed.where is not None and (signature_text is None or signature is not None):
        try:
            where = where_parse(parsed.where, fields, ambiguous=ambiguous)
        except Problems as exc:
            problems += [(f"{PREFIX}.where", m) for _, m in exc.problems]
    if problems:
        return None
    return Condition(
        match=parsed.match,
        addresses=lists["address"],
        from_addresses=lists["from"],
        to_addresses=lists["to"],
        selector=selector,
        signature=signature,
        where=where,
        fields=fields,
        arguments=frozenset(signature.fields()) if signature else frozenset(),
    )


def _owners(key: str) -> list[str]:
    return [match for match, keys in _KEYS.items() if key in keys]


def _attr(key: str) -> str:
    return "from_" if key == "from" else key
