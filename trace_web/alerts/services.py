"""Writes of alerting's control plane: create, update and delete alert definitions and
channels (checked whole, names looked up in the org only), rotate a webhook's signing secret,
queue a backtest as a manual task of the `alert_evaluate` job, and replay a dead letter. The
API, the admin and the `trace alerts` command all come through here."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from trace_operators.validation import Problem, Problems, join_path, validate
from trace_web.alerts.models import AlertDefinition, Channel, ChannelKind, DeadLetterBatch
from trace_web.alerts.selectors import (
    alert_evaluate_job_for,
    channel_spec_of,
    definition_spec_of,
    definitions_of,
)
from trace_web.alerts.sink import SinkOutcome
from trace_web.alerts.spec import (
    BacktestSpec,
    ChannelSpec,
    DefinitionSpec,
    channel_rules,
    definition_rules,
    merged,
)
from trace_web.errors import Conflict, NotFound, ValidationFailed
from trace_web.orchestration.models import Task
from trace_web.orgs.models import Org
from trace_web.udf.models import Bundle
from trace_web.udf.selectors import bundle_find


@dataclass(frozen=True)
class CheckedDefinition:
    """A definition spec that passed every check, with what its names resolved to."""

    spec: DefinitionSpec
    bundle: Bundle | None
    channels: list[Channel]
    datasets: list[str]
    condition: Any = None


@dataclass(frozen=True)
class ChannelWritten:
    """A channel after a write; `secret` is its new webhook signing secret when this write
    made one (shown this once), else None."""

    channel: Channel
    secret: str | None = field(default=None, repr=False)


# --- definitions ---------------------------------------------------------------------------------
def alert_definition_check(
    *, org: Org, spec: Any, instance: AlertDefinition | None = None
) -> CheckedDefinition:
    """`spec` checked whole (every problem in one ValidationFailed, each naming its field):
    structure, the condition parsed, the bundle and channels looked up in `org` (another
    org's are no such thing), and the name free in the org (a Conflict when taken)."""
    parsed: DefinitionSpec = _validated(DefinitionSpec, spec, rules=definition_rules)
    problems: list[Problem] = []
    bundle = None
    datasets = list(parsed.datasets or [])
    if parsed.condition is not None:
        condition_problems, datasets = _condition_checked(parsed.condition)
        problems += condition_problems
    else:
        bundle = bundle_find(org_id=org.pk, ref=parsed.bundle or "")
        if bundle is None:
            problems.append(("bundle", f"no bundle {parsed.bundle!r} in this org"))
    channels, channel_problems = _channels_resolved(org=org, refs=parsed.channels)
    problems += channel_problems
    if problems:
        raise ValidationFailed.of([f"{p}: {m}" if p else m for p, m in problems])
    taken = AlertDefinition.objects.filter(org=org, name=parsed.name)
    if instance is not None:
        taken = taken.exclude(pk=instance.pk)
    if taken.exists():
        raise _name_taken("an alert", parsed.name)
    return CheckedDefinition(
        spec=parsed,
        bundle=bundle,
        channels=channels,
        datasets=sorted(datasets),
        condition=parsed.condition,
    )


def alert_definition_create(*, org: Org, spec: Any, user=None) -> AlertDefinition:
    checked = alert_definition_check(org=org, spec=spec)
    with transaction.atomic():
        definition = AlertDefinition(org=org, owner=user if _is_user(user) else None)
        _definition_fill(definition, checked)
        try:
            with transaction.atomic():
                definition.save()
        except IntegrityError:  # the same name created concurrently
            raise _name_taken("an alert", checked.spec.name) from None
        definition.channels.set(checked.channels)
    return definition


def alert_definition_update(
    *, definition: AlertDefinition, changes: Any, partial: bool = True
) -> AlertDefinition:
    """Apply `changes` (PATCH: the fields given; PUT, `partial=False`: the whole spec) and
    check the result whole, as a create would."""
    spec = merged(definition_spec_of(definition), changes) if partial else changes
    checked = alert_definition_check(org=definition.org, spec=spec, instance=definition)
    with transaction.atomic():
        locked = AlertDefinition.objects.select_for_update().get(pk=definition.pk)
        _definition_fill(locked, checked)
        try:
            with transaction.atomic():
                locked.save()
        except IntegrityError:
            raise _name_taken("an alert", checked.spec.name) from None
        locked.channels.set(checked.channels)
    return locked


def alert_definition_delete(*, definition: AlertDefinition) -> None:
    """Delete the definition with its events and their deliveries (a job's config that
    names it then evaluates the others)."""
    definition.delete()


def _definition_fill(definition: AlertDefinition, checked: CheckedDefinition) -> None:
    spec = checked.spec
    definition.name = spec.name
    definition.description = spec.description
    definition.severity = spec.severity
    definition.enabled = spec.enabled
    definition.chain_id = spec.chain_id
    definition.condition = checked.condition
    definition.bundle = checked.bundle
    definition.entrypoint = spec.entrypoint if checked.bundle else ""
    definition.params = dict(spec.params) if checked.bundle else {}
    definition.datasets = checked.datasets
    definition.confirmations = spec.confirmations
    definition.max_staleness_seconds = spec.max_staleness_seconds


def _condition_checked(condition: Any) -> tuple[list[Problem], list[str]]:
    """The condition parsed by the declarative language (trace_web.alerts.conditions): its
    problems under `condition`, and the datasets it reads."""
    from trace_web.alerts.conditions import condition_datasets, condition_parse

    try:
        parsed = condition_parse(condition)
    except Problems as exc:
        return [(join_path("condition", p), m) for p, m in exc.problems], []
    except ValidationFailed as exc:
        lines = exc.details if isinstance(exc.details, list) else [exc.message]
        return [
            ("", line if line.startswith("condition") else f"condition: {line}") for line in lines
        ], []
    return [], list(condition_datasets(parsed))


def _channels_resolved(*, org: Org, refs: list[int | str]) -> tuple[list[Channel], list[Problem]]:
    """Each reference (an id or a name) as the org's channel; another org's is not found."""
    ids = [r for r in refs if isinstance(r, int)]
    names = [r for r in refs if isinstance(r, str)]
    found = Channel.objects.filter(org=org)
    by_id = {c.pk: c for c in found.filter(pk__in=ids)} if ids else {}
    by_name = {c.name: c for c in found.filter(name__in=names)} if names else {}
    channels: list[Channel] = []
    problems: list[Problem] = []
    for index, ref in enumerate(refs):
        channel = by_id.get(ref) if isinstance(ref, int) else by_name.get(ref)
        if channel is None:
            problems.append((f"channels[{index}]", f"no channel {ref!r} in this org"))
        elif channel in channels:
            problems.append((f"channels[{index}]", f"{ref!r} is a channel already named"))
        else:
            channels.append(channel)
    return channels, problems


# --- channels ------------------------------------------------------------------------------------
def channel_check(*, org: Org, spec: Any, instance: Channel | None = None) -> ChannelSpec:
    parsed: ChannelSpec = _validated(ChannelSpec, spec, rules=channel_rules)
    taken = Channel.objects.filter(org=org, name=parsed.name)
    if instance is not None:
        taken = taken.exclude(pk=instance.pk)
    if taken.exists():
        raise _name_taken("a channel", parsed.name)
    return parsed


def channel_create(*, org: Org, spec: Any, user=None) -> ChannelWritten:
    """A new channel; a webhook gets its signing secret, returned this once."""
    parsed = channel_check(org=org, spec=spec)
    channel = Channel(org=org, created_by=user if _is_user(user) else None)
    secret = _channel_fill(channel, parsed)
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError:
        raise _name_taken("a channel", parsed.name) from None
    return ChannelWritten(channel=channel, secret=secret)


def channel_update(*, channel: Channel, changes: Any, partial: bool = True) -> ChannelWritten:
    """Apply `changes` (PATCH, or the whole spec with `partial=False`). A channel that becomes
    a webhook gets a secret (returned this once); one that stops being one loses its secret."""
    current = channel_spec_of(channel)
    if isinstance(changes, dict) and changes.get("kind") not in (None, ChannelKind.TELEGRAM):
        current["chat_id"] = ""  # made another kind: Telegram's chat id goes with it
    spec = merged(current, changes) if partial else changes
    parsed = channel_check(org=channel.org, spec=spec, instance=channel)
    with transaction.atomic():
        locked = Channel.objects.select_for_update().get(pk=channel.pk)
        secret = _channel_fill(locked, parsed)
        try:
            with transaction.atomic():
                locked.save()
        except IntegrityError:
            raise _name_taken("a channel", parsed.name) from None
    return ChannelWritten(channel=locked, secret=secret)


def channel_delete(*, channel: Channel) -> None:
    """Delete the channel with its deliveries; definitions that named it keep their others."""
    channel.delete()


def channel_secret_rotate(*, channel: Channel) -> str:
    """A new signing secret for a webhook channel, returned this once; the old one stops
    verifying at once (deliveries signed after this use the new one)."""
    if channel.kind != ChannelKind.WEBHOOK:
        raise ValidationFailed.one("kind", f"only a webhook channel has a secret ({channel.kind})")
    secret = _new_secret()
    Channel.objects.filter(pk=channel.pk).update(secret=secret)
    channel.secret = secret
    return secret


def _channel_fill(channel: Channel, parsed: ChannelSpec) -> str | None:
    for name in ChannelSpec.model_fields:
        setattr(channel, name, getattr(parsed, name))
    if parsed.kind != ChannelKind.WEBHOOK:
        channel.secret = ""
        return None
    if channel.secret:
        return None
    channel.secret = _new_secret()
    return channel.secret


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


# --- backtest ------------------------------------------------------------------------------------
def alert_backtest(
    *, definition: AlertDefinition, range_start: int, range_end: int, deliver: bool
) -> Task:
    """Queue a backtest of the definition over blocks `[range_start, range_end)`: a manual
    task of the active `alert_evaluate` job that evaluates it live (the same code over the
    same data), whose events are marked backtest and delivered only if `deliver`. A Conflict
    when no such job is deployed."""
    from trace_web.orchestration.services.sources import job_run_manual
    from trace_web.orchestration.services.tasks import TaskScope

    body: BacktestSpec = _validated(
        BacktestSpec,
        {"range_start": range_start, "range_end": range_end, "deliver": deliver},
        rules=backtest_rules,
    )
    job = alert_evaluate_job_for(definition=definition)
    if job is None:
        raise Conflict(
            f"no alert_evaluate job evaluates alert {definition.name!r} (chain "
            f"{definition.chain_id}); deploy one: see docs/alerts.md"
        )
    return job_run_manual(
        org=definition.org,
        dag_name=job.dag_version.name,
        job_name=job.name,
        scope=TaskScope(range_start=body.range_start, range_end=body.range_end),
        payload={"backtest": True, "deliver": body.deliver, "definitions": [definition.pk]},
    )


def backtest_rules(raw: dict[str, Any]) -> list[Problem]:
    start, end = raw.get("range_start"), raw.get("range_end")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        return []
    if end <= start:
        return [("range_end", f"must be > range_start ({start}): the range is end-exclusive")]
    limit = settings.TRACE_ALERT_BACKTEST_MAX_BLOCKS
    if end - start > limit:
        return [
            (
                "range_end",
                f"a backtest covers at most {limit} blocks (TRACE_ALERT_BACKTEST_MAX_BLOCKS), "
                f"got {end - start}",
            )
        ]
    return []


# --- dead letters --------------------------------------------------------------------------------
def dead_letter_replay_by_id(*, dead_letter_id: int, org_id: int | None = None) -> SinkOutcome:
    """Replay one dead letter through the sink (after its rows were repaired); returns what
    the sink wrote. `org_id` narrows the lookup to one org."""
    from trace_web.alerts.sink import dead_letter_replay

    found = DeadLetterBatch.objects.filter(pk=dead_letter_id)
    if org_id is not None:
        found = found.filter(org_id=org_id)
    dead_letter = found.first()
    if dead_letter is None:
        raise NotFound(f"no dead letter {dead_letter_id}")
    return dead_letter_replay(dead_letter=dead_letter)


# --- apply a file --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Applied:
    """One channel or alert of an applied file: `created`, `updated` or `unchanged`, and a
    webhook's new signing secret when this apply made one (shown this once)."""

    what: str  # channel | alert
    name: str
    state: str
    secret: str | None = field(default=None, repr=False)


APPLY_KEYS = ("channels", "alerts")


def alerts_apply(*, org: Org, yaml_text: str, user=None) -> list[Applied]:
    """Create or update the org's channels, then its alerts, from one YAML document
    (`channels:` and `alerts:` lists of the specs the API takes, matched by name), all or
    nothing: one bad entry writes none, and every problem is named `alerts[1].condition…`."""
    from trace_web.orchestration.dag_spec import DagSpecError, load_strict_yaml

    try:
        document = load_strict_yaml(yaml_text)
    except DagSpecError as exc:
        raise ValidationFailed.of(exc.errors) from None
    if not isinstance(document, dict) or not document:
        raise ValidationFailed.one("", "the file must be a mapping with `channels` and `alerts`")
    problems = [
        f"{key}: unknown field (use {' or '.join(APPLY_KEYS)})"
        for key in document
        if key not in APPLY_KEYS
    ]
    for key in APPLY_KEYS:
        if not isinstance(document.get(key, []), list):
            problems.append(f"{key}: must be a list")
    if problems:
        raise ValidationFailed.of(problems)
    applied: list[Applied] = []
    with transaction.atomic():
        for key, apply_one in (("channels", _channel_apply), ("alerts", _alert_apply)):
            for index, spec in enumerate(document.get(key, [])):
                try:
                    applied.append(apply_one(org, spec, user))
                except (ValidationFailed, Conflict) as exc:
                    lines = exc.details if isinstance(exc.details, list) else [exc.message]
                    problems += [_under(f"{key}[{index}]", line) for line in lines]
        if problems:
            transaction.set_rollback(True)
            raise ValidationFailed.of(problems)
    return applied


_FIELD_PATH = re.compile(r"^[A-Za-z_][\w.\[\]]*: ")


def _under(prefix: str, line: str) -> str:
    """A problem line of one entry as a problem of the file: `target: …` -> `channels[0].target:
    …`, a line about the entry as a whole -> `channels[0]: …`."""
    return f"{prefix}.{line}" if _FIELD_PATH.match(line) else f"{prefix}: {line}"


def _channel_apply(org: Org, spec: Any, user) -> Applied:
    name = spec.get("name") if isinstance(spec, dict) else None
    existing = Channel.objects.filter(org=org, name=name).first() if name else None
    if existing is None:
        written = channel_create(org=org, spec=spec, user=user)
        return Applied("channel", written.channel.name, "created", written.secret)
    before = channel_spec_of(existing)
    written = channel_update(channel=existing, changes=spec, partial=False)
    state = "unchanged" if channel_spec_of(written.channel) == before else "updated"
    return Applied("channel", written.channel.name, state, written.secret)


def _alert_apply(org: Org, spec: Any, user) -> Applied:
    name = spec.get("name") if isinstance(spec, dict) else None
    existing = definitions_of(org_id=org.pk).filter(name=name).first() if name else None
    if existing is None:
        definition = alert_definition_create(org=org, spec=spec, user=user)
        return Applied("alert", definition.name, "created")
    before = definition_spec_of(existing)
    definition = alert_definition_update(definition=existing, changes=spec, partial=False)
    state = "unchanged" if definition_spec_of(definition) == before else "updated"
    return Applied("alert", definition.name, state)


# --- shared --------------------------------------------------------------------------------------
def _validated(model, data: Any, *, rules) -> Any:
    try:
        return validate(model, data, rules=rules)
    except Problems as exc:
        raise ValidationFailed.of(exc.errors) from None


def _name_taken(what: str, name: str) -> Conflict:
    line = f"name: the org already has {what} named {name!r}"
    return Conflict(line, details=[line])


def _is_user(user) -> bool:
    return user is not None and getattr(user, "is_authenticated", False)
