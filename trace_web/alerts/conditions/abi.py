"""Solidity signatures as a security team writes them (`Transfer(address indexed from, address
indexed to, uint256 value)`, `transfer(address to, uint256 amount)`): parsed, canonicalized,
hashed (topic0, selector) and used to decode a log's topics and data or a call's input."""

from __future__ import annotations

import re
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

    @property
    def hash(self) -> str:
        return "0x" + keccak(self.canonical.encode())

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
    """The event's arguments (by position name, unnamed ones left out) from topic1..3 and
    `data`, or Undecodable. The topic count must equal the indexed arguments (an ERC-721
    Transfer shares topic0 with ERC-20's but indexes a third argument: not this event)."""
    indexed = [p for p in signature.params if p.indexed]
    present = [t for t in topics if t is not None]
    if len(present) != len(indexed) or any(t is None for t in topics[: len(indexed)]):
        raise Undecodable("topic count")
    values: dict[int, Any] = {}
    for param, topic in zip(indexed, present, strict=True):
        raw = _hex_bytes(topic)
        if len(raw) != 32:
            raise Undecodable("topic length")
        position = signature.params.index(param)
        values[position] = topic if param.hashed else _decode([param.type], raw)[0]
    rest = [p for p in signature.params if not p.indexed]
    decoded = _decode([p.type for p in rest], _hex_bytes(data or "0x")) if rest else ()
    if not rest and (data or "0x") != "0x":
        raise Undecodable("data where the event has none")
    for param, value in zip(rest, decoded, strict=True):
        values[signature.params.index(param)] = value
    return _named(signature, values)


def call_decode(signature: Signature, input_hex: Any) -> dict[str, Any]:
    """A call's arguments from its input (selector + ABI-encoded arguments), or Undecodable."""
    raw = _hex_bytes(input_hex or "0x")
    if raw[:4].hex() != signature.selector[2:]:
        raise Undecodable("selector")
    decoded = _decode([p.type for p in signature.params], raw[4:])
    return _named(signature, dict(enumerate(decoded)))


def _named(signature: Signature, values: dict[int, Any]) -> dict[str, Any]:
    return {
        p.name: normalized(values[i], p.type)
        for i, p in enumerate(signature.params)
        if p.name is not None
    }


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
