"""ABI helpers for handlers (`ctx.abi` in the sandbox): decode a log row by its event's
signature, a transaction's input by its function's signature, and compute the topic or the
selector a query filters on. Built on eth-abi (decoding) and pycryptodome (keccak-256).

A signature is written as in Solidity, with names and `indexed` where the event has them:
`Transfer(address indexed from, address indexed to, uint256 value)`. Rows are as the query
API returns them (docs/schema.md): `topic0`..`topic3` and `data` (logs), `input`
(transactions), all `0x` hex. Decoded values are plain JSON-able Python: integers as `int`,
addresses as lowercase `0x` hex, byte strings as `0x` hex, tuples and arrays as lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "AbiError",
    "Param",
    "Signature",
    "decode_function_input",
    "decode_log",
    "event_topic",
    "function_selector",
    "signature_parse",
]

_NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_TYPE = re.compile(
    r"^(address|bool|string|bytes([1-9]|[12][0-9]|3[0-2])?|u?int(8|16|24|32|40|48|56|64|72|80|88|96"
    r"|104|112|120|128|136|144|152|160|168|176|184|192|200|208|216|224|232|240|248|256)?)"
    r"(\[[0-9]*\])*$"
)


class AbiError(ValueError):
    """A signature that does not parse, or a row that does not decode by it."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # canonical: `uint` → `uint256`, tuples as `(t1,t2)`
    indexed: bool

    @property
    def dynamic(self) -> bool:
        """Whether an indexed value of this type is stored as the keccak of its encoding."""
        return self.type in ("string", "bytes") or self.type.startswith("(") or "[" in self.type


@dataclass(frozen=True)
class Signature:
    name: str
    params: tuple[Param, ...]

    @property
    def canonical(self) -> str:
        return f"{self.name}({','.join(p.type for p in self.params)})"


def _split_top(text: str) -> list[str]:
    """Split on the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise AbiError(f"unbalanced ')' in {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise AbiError(f"unbalanced '(' in {text!r}")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _type_canonical(text: str) -> str:
    if text.startswith("("):
        close = text.rfind(")")
        inner, suffix = text[1:close], text[close + 1 :]
        if not re.fullmatch(r"(\[[0-9]*\])*", suffix):
            raise AbiError(f"bad array suffix {suffix!r} in type {text!r}")
        members = [] if not inner.strip() else _split_top(inner)
        return "(" + ",".join(_param_parse(m, event=False).type for m in members) + ")" + suffix
    if text.startswith("tuple"):
        raise AbiError(f"write tuple types as '(t1,t2)', not {text!r}")
    base = re.sub(r"^(u?int)(?=$|\[)", r"\g<1>256", text)
    if not _TYPE.match(base):
        raise AbiError(f"unknown ABI type {text!r}")
    return base


def _param_parse(text: str, *, event: bool) -> Param:
    if not text:
        raise AbiError("empty parameter")
    if text.startswith("("):
        close = text.rfind(")")
        end = close + 1
        while end < len(text) and text[end] in "[]0123456789":
            end += 1
        type_text, rest = text[:end], text[end:].split()
    else:
        type_text, *rest = text.split()
    indexed = bool(rest) and rest[0] == "indexed"
    if indexed:
        if not event:
            raise AbiError(f"'indexed' outside an event parameter: {text!r}")
        rest = rest[1:]
    if len(rest) > 1 or (rest and not _NAME.match(rest[0])):
        raise AbiError(f"cannot read parameter {text!r}: expected 'type [indexed] [name]'")
    return Param(name=rest[0] if rest else "", type=_type_canonical(type_text), indexed=indexed)


@lru_cache(maxsize=256)
def signature_parse(signature: str, *, event: bool = True) -> Signature:
    """`Name(type [indexed] [name], ...)` → its parts; names default to `arg0`, `arg1`, …"""
    if not isinstance(signature, str):
        raise AbiError(f"a signature is a string, not {type(signature).__name__}")
    text = signature.strip()
    if text.startswith(("event ", "function ")):
        text = text.split(None, 1)[1]
    open_at = text.find("(")
    if open_at <= 0 or not text.endswith(")"):
        raise AbiError(f"cannot read signature {signature!r}: expected 'Name(type name, ...)'")
    name = text[:open_at].strip()
    if not _NAME.match(name):
        raise AbiError(f"bad name {name!r} in signature {signature!r}")
    inner = text[open_at + 1 : -1]
    params = [] if not inner.strip() else [_param_parse(p, event=event) for p in _split_top(inner)]
    named = tuple(Param(p.name or f"arg{i}", p.type, p.indexed) for i, p in enumerate(params))
    if len({p.name for p in named}) != len(named):
        raise AbiError(f"two parameters share a name in {signature!r}")
    if sum(p.indexed for p in named) > 3:
        raise AbiError(f"an event has at most 3 indexed parameters: {signature!r}")
    return Signature(name=name, params=named)


def _keccak(data: bytes) -> bytes:
    from Crypto.Hash import keccak

    return keccak.new(digest_bits=256, data=data).digest()


def event_topic(signature: str) -> str:
    """topic0 of an event: `event_topic("Transfer(address indexed from, address indexed to,
    uint256 value)")` = `0xddf252ad…`."""
    return "0x" + _keccak(signature_parse(signature).canonical.encode()).hex()


def function_selector(signature: str) -> str:
    """The 4-byte selector a transaction's `input` starts with: `0xa9059cbb` for
    `transfer(address to, uint256 amount)`."""
    canonical = signature_parse(signature, event=False).canonical
    return "0x" + _keccak(canonical.encode())[:4].hex()


def _hex_bytes(value: Any, what: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str) or not value.startswith(("0x", "0X")):
        raise AbiError(f"{what} is not 0x hex: {value!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise AbiError(f"{what} is not 0x hex: {value!r}") from None


def _plain(value: Any) -> Any:
    """eth-abi's values as JSON-able Python (addresses come back checksummed: lowercase them,
    as the chain schema spells them)."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        return value.lower()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _decode(types: list[str], data: bytes, what: str) -> tuple[Any, ...]:
    from eth_abi import decode
    from eth_abi.exceptions import DecodingError

    try:
        return decode(types, data, strict=False)
    except (DecodingError, ValueError, OverflowError) as exc:
        raise AbiError(f"{what} does not decode as ({','.join(types)}): {exc}") from None


def _topics(log: dict[str, Any]) -> list[str]:
    if "topics" in log:
        return [t for t in log["topics"] if t is not None]
    topics = [log.get(f"topic{i}") for i in range(4)]
    present = [t for t in topics if t is not None]
    if any(t is None for t in topics[: len(present)]):
        raise AbiError("log has a gap in its topics")
    return present


def decode_log(log: dict[str, Any], signature: str) -> dict[str, Any] | None:
    """The arguments of `log` by name, or None when it is not this event: another topic0,
    or another count of indexed arguments (ERC-20's and ERC-721's `Transfer` share topic0
    but index 2 and 3 arguments). An indexed string, bytes, array or tuple is stored as the
    keccak of its value: it comes back as that hash. A log that is this event but does not
    decode by it raises AbiError."""
    sig = signature_parse(signature)
    topics = _topics(log)
    indexed = [p for p in sig.params if p.indexed]
    if not topics or topics[0].lower() != event_topic(signature):
        return None
    if len(topics) != 1 + len(indexed):
        return None
    values: dict[str, Any] = {}
    for param, topic in zip(indexed, topics[1:], strict=True):
        raw = _hex_bytes(topic, f"topic of {param.name!r}")
        if len(raw) != 32:
            raise AbiError(f"topic of {param.name!r} is {len(raw)} bytes, not 32")
        values[param.name] = (
            "0x" + raw.hex() if param.dynamic else _plain(_decode([param.type], raw, param.name)[0])
        )
    plain = [p for p in sig.params if not p.indexed]
    decoded = _decode([p.type for p in plain], _hex_bytes(log.get("data"), "data"), "data")
    values.update({p.name: _plain(v) for p, v in zip(plain, decoded, strict=True)})
    return {p.name: values[p.name] for p in sig.params}


def decode_function_input(input_data: str, signature: str) -> dict[str, Any] | None:
    """The arguments of a call by name, or None when `input_data` does not start with this
    function's selector."""
    raw = _hex_bytes(input_data, "input")
    selector = bytes.fromhex(function_selector(signature)[2:])
    if raw[:4] != selector:
        return None
    sig = signature_parse(signature, event=False)
    decoded = _decode([p.type for p in sig.params], raw[4:], "input")
    return {p.name: _plain(v) for p, v in zip(sig.params, decoded, strict=True)}
