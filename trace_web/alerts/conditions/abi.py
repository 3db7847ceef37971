"""Solidity signatures as a security team writes them (`Transfer(address indexed from, address
indexed to, uint256 value)`, `transfer(address to, uint256 amount)`): parsed, canonicalized,
hashed (topic0, selector) and used to decode a log's topics and data or a call's input."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trace_operators.validation import Problems

SIGNATURE_MAX_CHARS = 2000
MAX_PARAMS = 32
MAX_TUPLE_DEPTH = 8
MAX_INDEXED = 3
# Python cannot spell `$` in a name, so argument names are identifiers without it.
ARG_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_WORD_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_ARRAY_RE = re.compile(r"\[[0-9]*\]")
_TYPE_WORD_RE = re.compile(r"^[a-z]+[0-9x]*$")


def keccak(data: bytes) -> str:
    """keccak-256 of `data` as 64 lowercase hex digits (the EVM's hash, not SHA3-256)."""
    from Crypto.Hash import keccak as _keccak

    return _keccak.new(digest_bits=256, data=data).hexdigest()


def checksum_ok(address: str) -> bool:
    """Whether a mixed-case `0x` address carries a valid EIP-55 checksum (one case only:
    there is no checksum to check, so it is accepted)."""
    digits = address[2:]
    if digits == digits.lower() or digits == digits.upper():
        return True
    hashed = keccak(digits.lower().encode())
    return all(
        (c.isupper() if int(h, 16) >= 8 else c.islower()) if c.isalpha() else True
        for c, h in zip(digits, hashed[: len(digits)], strict=True)
    )


@dataclass(frozen=True)
class Param:
    name: str | None
    type: str  # canonical ABI type (`uint256`, `(address,uint256)[]`)
    indexed: bool
    # What the value is in a where-expression: int, str, bool or list.
    kind: str
    # An indexed string, bytes, array or tuple is only its keccak hash in the topic.
    hashed: bool = False


@dataclass(frozen=True)
class Signature:
    name: str
    params: tuple[Param, ...]

    @property
    def canonical(self) -> str:
        return f"{self.name}({','.join(p.type for p in self.params)})"

    @functools.cached_property
    def hash(self) -> str:
        return "0x" + keccak(self.canonical.encode())

    @functools.cached_property
    def plan(self) -> _Plan:
        return _Plan(self)

    @property
    def selector(self) -> str:
        return self.hash[:10]

    def fields(self) -> dict[str, str]:
        """Named arguments and what they are (`{"value": "int"}`)."""
        return {p.name: p.kind for p in self.params if p.name is not None}


class _Parser:
    """Recursive descent over `Name(type [indexed] [name], ...)`; `(`…`)` or `tuple(`…`)`
    for tuple types, with optional component names, `[]`/`[N]` suffixes anywhere."""

    def __init__(self, text: str, *, event: bool) -> None:
        self.text, self.pos, self.event = text, 0, event

    def fail(self, message: str) -> Problems:
        return Problems([("", f"{message} (column {self.pos + 1})")])

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos : self.pos + 1]

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = self.peek() or "the end"
            raise self.fail(f"expected {char!r}, found {found!r}")
        self.pos += 1

    def word(self) -> str | None:
        self.skip()
        found = _WORD_RE.match(self.text, self.pos)
        if not found:
            return None
        self.pos = found.end()
        return found.group()

    def signature(self) -> Signature:
        name = self.word()
        if name is None:
            raise self.fail("expected a name, as in Transfer(address indexed from, ...)")
        params = self.params(depth=0, top=True)
        rest = self.word()
        if rest == "anonymous" and self.event:
            raise self.fail("anonymous events are not supported (they have no topic0)")
        if rest is not None or self.peek():
            raise self.fail("unexpected text after the closing ')'")
        return Signature(name, tuple(params))

    def params(self, *, depth: int, top: bool) -> list[Param]:
        if depth > MAX_TUPLE_DEPTH:
            raise self.fail(f"tuples nested more than {MAX_TUPLE_DEPTH} deep")
        self.expect("(")
        params: list[Param] = []
        if self.peek() == ")":
            self.pos += 1
            return params
        while True:
            params.append(self.param(depth=depth, top=top))
            if len(params) > MAX_PARAMS:
                raise self.fail(f"more than {MAX_PARAMS} parameters")
            if self.peek() == ",":
                self.pos += 1
                continue
            self.expect(")")
            return params

    def param(self, *, depth: int, top: bool) -> Param:
        start = self.pos
        type_str = self.type(depth=depth)
        indexed, name = False, None
        word = self.word()
        if word == "indexed":
            if not (self.event and top):
                self.pos -= len(word)
                raise self.fail("'indexed' is only for the arguments of an event")
            indexed, word = True, self.word()
        if word in ("memory", "calldata", "storage"):
            word = self.word()  # copied from source code: the location does not matter
        if word is not None:
            if not ARG_NAME_RE.match(word):
                self.pos -= len(word)
                raise self.fail(f"argument name {word!r} must be letters, digits and _")
            name = word
        kind, hashed = _kind(type_str), False
        if indexed and (kind == "list" or type_str in ("string", "bytes")):
            kind, hashed = "str", True
        if self.peek() not in (",", ")"):
            self.pos = max(self.pos, start)
            raise self.fail("expected ',' or ')' after an argument")
        return Param(name, type_str, indexed, kind, hashed)

    def type(self, *, depth: int) -> str:
        self.skip()
        type_start = self.pos
        if self.peek() == "(":
            inner = self.params(depth=depth + 1, top=False)
            base = f"({','.join(p.type for p in inner)})"
        else:
            start = self.pos
            word = self.word()
            if word == "tuple" and self.peek() == "(":
                inner = self.params(depth=depth + 1, top=False)
                base = f"({','.join(p.type for p in inner)})"
            elif word is None or not _TYPE_WORD_RE.match(word):
                self.pos = start
                raise self.fail("expected an ABI type (uint256, address, bytes32, ...)")
            else:
                base = word
        self.skip()
        while found := _ARRAY_RE.match(self.text, self.pos):
            base += found.group()
            self.pos = found.end()
        return self._checked(base, type_start)

    def _checked(self, type_str: str, start: int) -> str:
        from eth_abi.exceptions import ABITypeError, ParseError
        from eth_abi.grammar import normalize, parse

        try:
            canonical = normalize(type_str)
            parse(canonical).validate()
            if not _registry().has_encoder(canonical):
                raise ABITypeError("no such type")
        except (ParseError, ABITypeError, ValueError, KeyError) as exc:
            self.pos = start
            raise self.fail(f"{type_str!r} is not an ABI type ({_short(exc)})") from None
        return canonical


def _short(exc: Exception) -> str:
    text = str(exc).split(":")[-1].strip() or type(exc).__name__
    return text[:120]


def _kind(type_str: str) -> str:
    from eth_abi.grammar import parse

    abi_type = parse(type_str)
    if abi_type.is_array or not hasattr(abi_type, "base"):
        return "list"
    base = abi_type.base
    if base in ("uint", "int", "fixed", "ufixed"):
        return "int"
    if base == "bool":
        return "bool"
    return "str"  # address, bytesN, bytes, string, function


def signature_parse(text: str, *, event: bool) -> Signature:
    """The signature in `text`, or Problems (path "") saying what is wrong and where.
    Argument names must be distinct; an event has at most three indexed arguments."""
    if len(text) > SIGNATURE_MAX_CHARS:
        raise Problems([("", f"longer than {SIGNATURE_MAX_CHARS} characters")])
    parser = _Parser(text, event=event)
    signature = parser.signature()
    names = [p.name for p in signature.params if p.name is not None]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise Problems([("", f"argument name {name!r} is used twice")])
    if sum(p.indexed for p in signature.params) > MAX_INDEXED:
        raise Problems([("", f"an event has at most {MAX_INDEXED} indexed arguments")])
    return signature


# --- decoding ---------------------------------------------------------------------------------
class Undecodable(Exception):
    """A row whose topics or data do not fit the signature (wrong length, bad padding)."""


WordDecoder = Callable[[bytes], Any]


def _word_decoder(type_str: str) -> WordDecoder | None:
    """A decoder of one 32-byte word for the static basic types (address, uintN, intN, bool,
    bytesN), checking padding exactly as eth_abi's strict decoders do; None for the rest
    (eth_abi decodes those). Events are mostly these, and eth_abi costs ~100 µs a call."""
    from eth_abi.grammar import parse

    abi_type = parse(type_str)
    if abi_type.is_array or not hasattr(abi_type, "base") or abi_type.arrlist:
        return None
    base, sub = abi_type.base, abi_type.sub
    if base == "address":

        def address(word: bytes) -> str:
            if any(word[:12]):
                raise Undecodable("NonEmptyPaddingBytes")
            return "0x" + word[12:].hex()

        return address
    if base == "uint":

        def uint(word: bytes) -> int:
            value = int.from_bytes(word, "big")
            if value >> sub:
                raise Undecodable("NonEmptyPaddingBytes")
            return value

        return uint
    if base == "int":

        def sint(word: bytes) -> int:
            value = int.from_bytes(word, "big", signed=True)
            if not -(1 << (sub - 1)) <= value < 1 << (sub - 1):
                raise Undecodable("NonEmptyPaddingBytes")
            return value

        return sint
    if base == "bool":

        def boolean(word: bytes) -> bool:
            value = int.from_bytes(word, "big")
            if value > 1:
                raise Undecodable("NonEmptyPaddingBytes")
            return value == 1

        return boolean
    if base == "bytes" and isinstance(sub, int):

        def fixed_bytes(word: bytes) -> str:
            if any(word[sub:]):
                raise Undecodable("NonEmptyPaddingBytes")
            return "0x" + word[:sub].hex()

        return fixed_bytes
    return None


class _Plan:
    """How one signature's values are read, worked out once: each indexed argument from its
    topic, the others from the data (word by word when every one is a static basic type)."""

    def __init__(self, signature: Signature) -> None:
        self.params = signature.params
        self.indexed = [
            (i, p, _word_decoder(p.type)) for i, p in enumerate(self.params) if p.indexed
        ]
        self.rest = [(i, p) for i, p in enumerate(self.params) if not p.indexed]
        words = [_word_decoder(p.type) for _, p in self.rest]
        self.rest_words = words if all(w is not None for w in words) else None
        self.rest_types = [p.type for _, p in self.rest]

    def data(self, raw: bytes) -> list[Any]:
        if self.rest_words is None:
            return [
                normalized(v, t)
                for v, t in zip(_decode(self.rest_types, raw), self.rest_types, strict=True)
            ]
        if len(raw) < 32 * len(self.rest_words):
            raise Undecodable("InsufficientDataBytes")
        return [w(raw[32 * k : 32 * k + 32]) for k, w in enumerate(self.rest_words)]  # type: ignore[misc]


def _registry() -> Any:
    global _REGISTRY
    if _REGISTRY is None:
        from eth_abi import decoding, encoding
        from eth_abi.registry import BaseEquals, registry

        class LenientStringDecoder(decoding.StringDecoder):
            """Invalid UTF-8 in a `string` becomes U+FFFD: a malformed string field must not
            hide the rest of the event from an alert."""

            def __init__(self) -> None:
                super().__init__(handle_string_errors="replace")

        copy = registry.copy()
        copy.unregister("string")
        copy.register(
            BaseEquals("string"),
            encoding.TextStringEncoder,
            LenientStringDecoder,
            label="string",
        )
        _REGISTRY = copy
    return _REGISTRY


def _codec() -> Any:
    global _CODEC
    if _CODEC is None:
        from eth_abi.codec import ABICodec

        _CODEC = ABICodec(_registry())
    return _CODEC


_REGISTRY: Any = None
_CODEC: Any = None


def _hex_bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) % 2:
        raise Undecodable("not 0x hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise Undecodable("not 0x hex") from None


def _decode(types: list[str], data: bytes) -> tuple[Any, ...]:
    try:
        return tuple(_codec().decode(types, data))
    except Exception as exc:  # eth_abi raises many kinds (DecodingError, OverflowError, ...)
        raise Undecodable(type(exc).__name__) from None


def log_decode(signature: Signature, topics: list[Any], data: Any) -> dict[str, Any]:
    """The event's named arguments from topic1..3 and `data`, or Undecodable. The topic
    count must equal the indexed arguments (an ERC-721 Transfer shares topic0 with ERC-20's
    but indexes a third argument: not this event)."""
    plan = signature.plan
    count = len(plan.indexed)
    if any(t is None for t in topics[:count]) or any(t is not None for t in topics[count:]):
        raise Undecodable("topic count")
    values: dict[int, Any] = {}
    for (position, param, word), topic in zip(plan.indexed, topics, strict=False):
        raw = _hex_bytes(topic)
        if len(raw) != 32:
            raise Undecodable("topic length")
        if param.hashed:
            values[position] = topic
        elif word is not None:
            values[position] = word(raw)
        else:
            values[position] = normalized(_decode([param.type], raw)[0], param.type)
    if plan.rest:
        for (position, _), value in zip(
            plan.rest, plan.data(_hex_bytes(data or "0x")), strict=True
        ):
            values[position] = value
    return _named(signature, values)


def call_decode(signature: Signature, input_hex: Any) -> dict[str, Any]:
    """A call's named arguments from its input (selector + ABI-encoded arguments), or
    Undecodable."""
    raw = _hex_bytes(input_hex or "0x")
    if raw[:4].hex() != signature.selector[2:]:
        raise Undecodable("selector")
    plan = signature.plan
    values = plan.data(raw[4:])
    return _named(signature, dict(enumerate(values)))


def _named(signature: Signature, values: dict[int, Any]) -> dict[str, Any]:
    return {p.name: values[i] for i, p in enumerate(signature.params) if p.name is not None}


def normalized(value: Any, type_str: str = "") -> Any:
    """A decoded value as a where-expression sees it: addresses and byte strings as
    lowercase 0x hex, tuples and arrays as tuples, ints as ints (exact)."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str):
        return value.lower() if type_str.startswith("address") or _is_hex(value) else value
    if isinstance(value, list | tuple):
        return tuple(normalized(v, type_str) for v in value)
    return value


def _is_hex(value: str) -> bool:
    return value[:2] in ("0x", "0X") and all(c in "0123456789abcdefABCDEF" for c in value[2:])
