"""factory-boy factories for alerting: a channel, a definition (a declarative placeholder
condition: the model does not validate it), an event of that definition and its delivery."""

from __future__ import annotations

import factory
from django.utils import timezone

from tests.factories import OrgFactory
from trace_web.alerts.models import (
    AlertDefinition,
    AlertEvent,
    Channel,
    ChannelKind,
    Delivery,
    Severity,
)


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel

    org = factory.SubFactory(OrgFactory)
    name = factory.Sequence(lambda n: f"channel-{n}")
    kind = ChannelKind.WEBHOOK
    target = "https://hooks.example.com/trace"
    secret = factory.Sequence(lambda n: f"whsec-test-{n:04d}")


class AlertDefinitionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AlertDefinition

    org = factory.SubFactory(OrgFactory)
    name = factory.Sequence(lambda n: f"alert-{n}")
    severity = Severity.HIGH
    chain_id = 31337
    condition = factory.LazyFunction(lambda: {"match": "transaction"})
    datasets = factory.LazyFunction(lambda: ["transactions"])


class AlertEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AlertEvent

    definition = factory.SubFactory(AlertDefinitionFactory)
    org = factory.SelfAttribute("definition.org")
    chain_id = factory.SelfAttribute("definition.chain_id")
    block_number = factory.Sequence(lambda n: 100 + n)
    block_hash = factory.Sequence(lambda n: "0x" + f"{n:064x}")
    tx_hash = factory.Sequence(lambda n: "0x" + f"{n + 0xABC000:064x}")
    log_index = None
    dedupe_key = factory.Sequence(lambda n: f"dedupe-{n}")
    match_key = factory.Sequence(lambda n: f"match-{n}")
    event_time = factory.LazyFunction(timezone.now)
    payload = factory.LazyFunction(lambda: {"value": "2000000000000000000", "to": "0xdead"})
    producer_task_id = 1
    producer_attempt = 1


class DeliveryFactory(factory.django.DjangoModelFactory):
    """A pending delivery, due now, of an event to a channel of the same org."""

    class Meta:
        model = Delivery

    channel = factory.SubFactory(ChannelFactory)
    org = factory.SelfAttribute("channel.org")
    event = factory.SubFactory(
        AlertEventFactory, definition__org=factory.SelfAttribute("...channel.org")
    )
    next_attempt_at = factory.LazyFunction(timezone.now)
