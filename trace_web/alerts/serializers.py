"""Bodies of the alerting API: the output of definitions, channels, events and deliveries,
the query parameters of their lists, and, for the schema only, a PATCH's partial bodies (the
service checks the merged whole against trace_web.alerts.spec)."""

from __future__ import annotations

from typing import Any

from pydantic import create_model
from rest_framework import serializers

from trace_operators.validation import StrictModel
from trace_web.alerts.models import (
    AlertDefinition,
    AlertEvent,
    Channel,
    ChannelKind,
    DeliveryPurpose,
    DeliveryStatus,
    EventState,
    Severity,
)
from trace_web.alerts.spec import DATASETS, ChannelSpec, DefinitionSpec
from trace_web.serializers import BigIntField, StrictSerializer


def _partial(model: type[StrictModel], name: str) -> type[StrictModel]:
    """`model` with every field optional: what a PATCH may hold (documentation)."""
    fields: dict[str, Any] = {
        field: (info.annotation | None, None) for field, info in model.model_fields.items()
    }
    return create_model(name, __base__=StrictModel, __doc__=model.__doc__, **fields)


DefinitionPatch = _partial(DefinitionSpec, "DefinitionPatch")
ChannelPatch = _partial(ChannelSpec, "ChannelPatch")


class ChannelRefOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=ChannelKind.choices)


class DefinitionOut(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", default=None, allow_null=True)
    bundle = serializers.SerializerMethodField(
        help_text="The UDF handler's `name@version`; null for a condition"
    )
    condition = serializers.JSONField(allow_null=True, help_text="Null for a UDF handler")
    params = serializers.DictField()
    datasets = serializers.ListField(
        child=serializers.ChoiceField(choices=DATASETS),
        help_text="What the rule reads: derived from a condition, as given for a handler",
    )
    channels = ChannelRefOut(many=True)

    class Meta:
        model = AlertDefinition
        fields = [
            "id",
            "name",
            "description",
            "severity",
            "enabled",
            "chain_id",
            "condition",
            "bundle",
            "entrypoint",
            "params",
            "datasets",
            "channels",
            "confirmations",
            "max_staleness_seconds",
            "owner",
            "created_at",
            "updated_at",
        ]

    def get_bundle(self, obj: AlertDefinition) -> str | None:
        return f"{obj.bundle.name}@{obj.bundle.version}" if obj.bundle_id else None


class ChannelOut(serializers.ModelSerializer):
    has_secret = serializers.SerializerMethodField(
        help_text="A webhook's signing secret exists; it is shown only when made"
    )

    class Meta:
        model = Channel
        fields = [
            "id",
            "name",
            "kind",
            "target",
            "chat_id",
            "rate_limit_per_minute",
            "min_severity",
            "send_retractions",
            "enabled",
            "has_secret",
            "created_at",
            "updated_at",
        ]

    def get_has_secret(self, obj: Channel) -> bool:
        return bool(obj.secret)


class ChannelWrittenOut(ChannelOut):
    """A channel just written. `secret`: its new webhook signing secret, shown this once
    (HMAC-SHA256 of each delivery's body); absent when this write made none."""

    secret = serializers.CharField(required=False)  # documentation only: see api._written

    class Meta(ChannelOut.Meta):
        fields = [*ChannelOut.Meta.fields, "secret"]


class ChannelSecretOut(serializers.Serializer):
    """A webhook channel's new signing secret: shown this once."""

    id = serializers.IntegerField()
    secret = serializers.CharField()


class EventOut(serializers.ModelSerializer):
    definition = serializers.IntegerField(source="definition_id")

    class Meta:
        model = AlertEvent
        fields = [
            "id",
            "definition",
            "state",
            "backtest",
            "chain_id",
            "block_number",
            "block_hash",
            "tx_hash",
            "log_index",
            "event_time",
            "payload",
            "dedupe_key",
            "match_key",
            "producer_task_id",
            "producer_attempt",
            "created_at",
            "retracted_at",
        ]


class DeliveryOut(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.IntegerField(source="event_id")
    channel = ChannelRefOut()
    purpose = serializers.ChoiceField(choices=DeliveryPurpose.choices)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempt = serializers.IntegerField(help_text="Attempts made so far")
    next_attempt_at = serializers.DateTimeField(help_text="When a pending delivery is tried next")
    provider_message_id = serializers.CharField()
    error = serializers.CharField(help_text="The last attempt's error; empty once delivered")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)


class DeletedOut(serializers.Serializer):
    id = serializers.IntegerField()
    deleted = serializers.BooleanField(help_text="Always true")


class BacktestOut(serializers.Serializer):
    task_id = serializers.IntegerField(help_text="The queued task: GET /v1/tasks/{task_id}")
    status = serializers.CharField()
    dag = serializers.CharField(help_text="The DAG of the alert_evaluate job that runs it")
    job = serializers.CharField()
    range_start = serializers.IntegerField()
    range_end = serializers.IntegerField(help_text="Excluded")
    deliver = serializers.BooleanField()


class _PageQuery(StrictSerializer):
    limit = serializers.IntegerField(
        min_value=1, max_value=1000, default=100, help_text="At most this many, newest first"
    )
    before_id = BigIntField(
        required=False,
        min_value=1,
        help_text="Cursor: only rows with a smaller id (older). A full page's `Link` header "
        'gives the next page\'s URL (`rel="next"`)',
    )


class EventListQuery(_PageQuery):
    state = serializers.ChoiceField(choices=EventState.choices, required=False)
    backtest = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: only a backtest's events; false: only live ones; absent: both",
    )
    block_from = BigIntField(required=False, help_text="Only events at this block or later")
    block_to = BigIntField(required=False, help_text="Only events before this block (excluded)")


class DeliveryListQuery(_PageQuery):
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, required=False)
    purpose = serializers.ChoiceField(choices=DeliveryPurpose.choices, required=False)
    channel = BigIntField(required=False, min_value=1, help_text="A channel id")
    event = BigIntField(required=False, min_value=1, help_text="An event id")


class DefinitionListQuery(StrictSerializer):
    chain_id = BigIntField(required=False, min_value=1)
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
