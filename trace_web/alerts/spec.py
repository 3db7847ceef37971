"""What an alert definition and a channel are made of, as a user writes them (the API's bodies,
the admin's forms): strict pydantic models for structure and types, and rules for what spans
fields. Looking names up in the org (bundle, channels) and parsing a condition are the
services' part, after these pass."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator, validate_email
from pydantic import Field, StringConstraints

from trace_operators.validation import (
    BlockNumber,
    ChainId,
    Problem,
    StrictModel,
    as_dict,
    join_path,
    json_problems,
)
from trace_web.alerts.models import ChannelKind, Severity

# A definition or channel name: what a DAG's `alert_evaluate` config lists (`alerts: [...]`)
# and a definition's `channels` name, so the same characters as a DAG or job name.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
# A bundle as a definition names it: `name@version` (trace_web.udf.selectors) or its sha256.
BundleRef = Annotated[
    str,
    StringConstraints(
        pattern=r"^(?:[0-9a-f]{64}|[a-z][a-z0-9_-]{0,99}@[0-9A-Za-z][0-9A-Za-z._+-]{0,63})$"
    ),
]
Entrypoint = Annotated[str, StringConstraints(pattern=r"^(?:[A-Za-z_][A-Za-z0-9_]{0,99})?$")]
ChannelRef = Annotated[int, Field(ge=1, le=2**63 - 1)] | Name
Dataset = Literal["blocks", "transactions", "logs"]
DATASETS = ["blocks", "transactions", "logs"]
SEVERITIES = list(Severity.values)
SeverityName = Literal["info", "low", "medium", "high", "critical"]
KindName = Literal["webhook", "email", "sms", "slack", "discord", "telegram"]

MAX_CONFIRMATIONS = 1000
MAX_STALENESS_SECONDS = 30 * 24 * 3600
MAX_CHANNELS = 50
MAX_RATE_LIMIT = 10_000
# A handler's `params` and a condition are stored whole (jsonb) and sent to every run.
MAX_PARAMS_BYTES = 16_384
MAX_CONDITION_BYTES = 65_536

assert set(SeverityName.__args__) == set(Severity.values)  # type: ignore[attr-defined]
assert set(KindName.__args__) == set(ChannelKind.values)  # type: ignore[attr-defined]


class DefinitionSpec(StrictModel):
    """An alert definition: exactly one of `condition` (declarative) and `bundle` (a UDF
    handler with `entrypoint` and `params`)."""

    name: Name
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    severity: SeverityName = "medium"
    enabled: bool = True
    chain_id: Annotated[ChainId, Field(ge=1)]
    condition: Any = None
    bundle: BundleRef | None = None
    entrypoint: Entrypoint = ""
    params: dict[str, Any] = Field(default_factory=dict)
    datasets: Annotated[list[Dataset], Field(max_length=3)] | None = None
    channels: Annotated[list[ChannelRef], Field(max_length=MAX_CHANNELS)] = Field(
        default_factory=list
    )
    confirmations: Annotated[int, Field(ge=0, le=MAX_CONFIRMATIONS)] = 0
    max_staleness_seconds: Annotated[int, Field(ge=1, le=MAX_STALENESS_SECONDS)] | None = None


def definition_rules(raw: dict[str, Any]) -> list[Problem]:
    """What spans fields: condition xor bundle, what only a handler takes, sizes of JSON."""
    problems: list[Problem] = []
    has_condition = raw.get("condition") is not None
    has_bundle = raw.get("bundle") is not None
    if has_condition == has_bundle:
        problems.append(("", "give exactly one of `condition` or `bundle`"))
    if has_condition:
        for field in ("entrypoint", "params"):
            if raw.get(field) not in (None, "", {}):
                problems.append((field, "only for a bundle handler (this alert has a condition)"))
        if raw.get("datasets") is not None:
            problems.append(("datasets", "derived from the condition; leave it out"))
        problems += _json_size("condition", raw["condition"], MAX_CONDITION_BYTES)
    if has_bundle:
        if not raw.get("datasets"):
            problems.append(("datasets", "required for a handler: blocks, transactions, logs"))
        problems += _json_size("params", raw.get("params"), MAX_PARAMS_BYTES)
    datasets = raw.get("datasets")
    if isinstance(datasets, list) and len(set(map(str, datasets))) != len(datasets):
        problems.append(("datasets", "each dataset at most once"))
    channels = raw.get("channels")
    if isinstance(channels, list):
        seen: set[str] = set()
        for index, ref in enumerate(channels):
            if str(ref) in seen:
                problems.append((f"channels[{index}]", f"{ref!r} is named twice"))
            seen.add(str(ref))
    return problems


def _json_size(field: str, value: Any, limit: int) -> list[Problem]:
    if value is None:
        return []
    problems = [(join_path(field, path), message) for path, message in json_problems(value)]
    if problems:
        return problems
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > limit:
        return [(field, f"at most {limit} bytes as JSON, got {size}")]
    return []


class ChannelSpec(StrictModel):
    """A channel: `target` is a URL (webhook, Slack, Discord, Telegram's sendMessage URL), an
    email address or an E.164 phone number, by `kind`."""

    name: Name
    kind: KindName
    target: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    chat_id: Annotated[str, StringConstraints(max_length=100)] = ""
    rate_limit_per_minute: Annotated[int, Field(ge=1, le=MAX_RATE_LIMIT)] = 60
    min_severity: SeverityName = "info"
    send_retractions: bool = True
    enabled: bool = True


class BacktestSpec(StrictModel):
    """A backtest's blocks, `[range_start, range_end)`, and whether its events are delivered."""

    range_start: BlockNumber
    range_end: BlockNumber
    deliver: bool = False


URL_KINDS = {ChannelKind.WEBHOOK, ChannelKind.SLACK, ChannelKind.DISCORD, ChannelKind.TELEGRAM}
E164_RE = re.compile(r"\+[1-9][0-9]{1,14}")
# A Telegram chat: a numeric id (negative for groups) or a public @channelname.
CHAT_ID_RE = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31}")
_URL = URLValidator(schemes=["http", "https"])


def channel_rules(raw: dict[str, Any]) -> list[Problem]:
    """The target each kind takes; a chat id only (and always) for Telegram."""
    kind, target = raw.get("kind"), raw.get("target")
    if not isinstance(target, str) or not target or kind not in ChannelKind.values:
        return []
    problems: list[Problem] = []
    if kind in URL_KINDS:
        try:
            _URL(target)
        except DjangoValidationError:
            problems.append(("target", f"{kind} needs an http(s) URL"))
    elif kind == ChannelKind.EMAIL:
        try:
            validate_email(target)
        except DjangoValidationError:
            problems.append(("target", "email needs an email address"))
    elif kind == ChannelKind.SMS and not E164_RE.fullmatch(target):
        problems.append(("target", "sms needs a phone number in E.164 form, e.g. +14155550100"))
    chat_id = raw.get("chat_id") or ""
    if kind == ChannelKind.TELEGRAM:
        if not isinstance(chat_id, str) or not CHAT_ID_RE.fullmatch(chat_id):
            problems.append(("chat_id", "telegram needs the chat id (a number, or @channel)"))
    elif chat_id:
        problems.append(("chat_id", "only for a telegram channel"))
    return problems


HANDLER_FIELDS = ("bundle", "entrypoint", "params", "datasets")


def merged(current: dict[str, Any], changes: Any) -> Any:
    """A partial update applied to the current spec (PATCH): the fields given replace the
    current ones. Switching a definition from a handler to a condition (or back) drops the
    other kind's fields unless they are given. Anything but a mapping is returned as is, for
    the model to refuse."""
    if not isinstance(changes, dict):
        return changes
    base = dict(as_dict(current))
    if changes.get("condition") is not None:
        for field in HANDLER_FIELDS:
            base.pop(field, None)
    if changes.get("bundle") is not None:
        base.pop("condition", None)
    return {**base, **changes}
