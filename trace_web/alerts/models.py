"""Alerting (state DB): what to watch for (definitions: a declarative condition or a UDF
handler), where to say it (channels), what was found (events, one per dedupe key, active or
retracted), each send to each channel (deliveries, leased and retried like tasks), and the
published batches the sink refused (the dead-letter queue)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from trace_web.orgs.models import Org


class Severity(models.TextChoices):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


SEVERITY_RANK = {s: rank for rank, s in enumerate(Severity)}


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook"  # POST JSON, HMAC-SHA256 signature header, delivery id as idempotency key
    EMAIL = "email"  # Django's email backend (SMTP)
    SMS = "sms"  # AWS SNS
    SLACK = "slack"  # incoming-webhook URL
    DISCORD = "discord"  # webhook URL
    TELEGRAM = "telegram"  # bot API sendMessage URL + chat id


class Channel(models.Model):
    """One destination of an org's alerts. `target` is the URL (webhook, Slack, Discord,
    Telegram's `…/bot<token>/sendMessage`), the email address or the E.164 phone number."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="alert_channels")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    target = models.CharField(max_length=2000)
    chat_id = models.CharField(max_length=100, blank=True, default="")  # Telegram
    # Webhook signing secret (HMAC-SHA256 of the body); generated when a webhook is created.
    secret = models.CharField(max_length=128, blank=True, default="")
    # Token bucket: at most this many sends a minute; over it, sends wait (never dropped).
    rate_limit_per_minute = models.PositiveIntegerField(default=60)
    min_severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.INFO)
    send_retractions = models.BooleanField(default=True)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="uniq_alert_channel_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class AlertDefinition(models.Model):
    """A rule. Exactly one of `condition` (the declarative language, trace_web.alerts.
    conditions) and `bundle` (a UDF handler, run sandboxed, with `params`)."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="alert_definitions")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.MEDIUM)
    enabled = models.BooleanField(default=True)
    chain_id = models.BigIntegerField()
    condition = models.JSONField(null=True, blank=True)
    bundle = models.ForeignKey(
        "udf.Bundle", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    entrypoint = models.CharField(max_length=100, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    # The chain relations the rule reads (blocks, transactions, logs).
    datasets = models.JSONField(default=list, blank=True)
    channels = models.ManyToManyField(Channel, blank=True, related_name="definitions")
    # 0: alert at the tip and retract on a reorg; N: alert only once a block is N deep.
    confirmations = models.PositiveIntegerField(default=0)
    # Staleness gate: an event older than this (block time) when routed is not delivered.
    max_staleness_seconds = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="uniq_alert_definition_name"),
            models.CheckConstraint(
                condition=models.Q(condition__isnull=False, bundle__isnull=True)
                | models.Q(condition__isnull=True, bundle__isnull=False),
                name="alert_definition_condition_xor_bundle",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class EventState(models.TextChoices):
    ACTIVE = "active"
    RETRACTED = "retracted"


class AlertEvent(models.Model):
    """One match. `dedupe_key` includes the block hash, so the same batch twice is one row and
    a reorg that moves a match to another block is another row; `match_key` (definition,
    transaction, log) is the same for both, so the move is not notified twice."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="alert_events")
    definition = models.ForeignKey(AlertDefinition, on_delete=models.CASCADE, related_name="events")
    dedupe_key = models.CharField(max_length=128)
    match_key = models.CharField(max_length=128)
    chain_id = models.BigIntegerField()
    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=66)
    tx_hash = models.CharField(max_length=66, blank=True, default="")
    log_index = models.BigIntegerField(null=True, blank=True)
    event_time = models.DateTimeField(null=True, blank=True)  # the block's time
    payload = models.JSONField(default=dict, blank=True)
    producer_task_id = models.BigIntegerField()  # soft reference: tasks are pruned
    producer_attempt = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=EventState.choices, default=EventState.ACTIVE)
    backtest = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    retracted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "dedupe_key"], name="uniq_alert_event_dedupe")
        ]
        indexes = [
            models.Index(fields=["definition", "block_number"], name="idx_alert_event_block"),
            models.Index(fields=["definition", "match_key"], name="idx_alert_event_match"),
        ]

    def __str__(self) -> str:
        return f"{self.definition_id}@{self.block_number} {self.state}"


class DeliveryPurpose(models.TextChoices):
    NOTIFY = "notify"
    RETRACT = "retract"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # waiting for its next attempt (or its rate limit)
    SENDING = "sending"  # leased by a delivery worker
    DELIVERED = "delivered"
    FAILED = "failed"  # terminal: out of attempts, or refused for good; retry from admin/API


class Delivery(models.Model):
    """One send of one event to one channel, leased and fenced like a task attempt."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="alert_deliveries")
    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    purpose = models.CharField(
        max_length=16, choices=DeliveryPurpose.choices, default=DeliveryPurpose.NOTIFY
    )
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempt = models.PositiveIntegerField(default=0)  # attempts made so far
    next_attempt_at = models.DateTimeField()
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=300, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["org", "event", "channel", "purpose"], name="uniq_alert_delivery"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="idx_delivery_due",
            ),
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(status="sending"),
                name="idx_delivery_lease",
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.purpose} via {self.channel_id}) {self.status}"


class DeadLetterStatus(models.TextChoices):
    PENDING = "pending"
    REPLAYED = "replayed"


class DeadLetterBatch(models.Model):
    """An attempt's published alert batches the sink refused whole (nothing written), with why
    and what it needs to be replayed: the trusted publish record, never the rows' own say."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="alert_dead_letters")
    task_id = models.BigIntegerField()
    attempt = models.PositiveIntegerField()
    # The trusted record of the publication: batch pointers, the evaluated range, definitions.
    record = models.JSONField()
    error = models.TextField()
    status = models.CharField(
        max_length=16, choices=DeadLetterStatus.choices, default=DeadLetterStatus.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task_id", "attempt"], name="uniq_alert_dlq_attempt")
        ]

    def __str__(self) -> str:
        return f"dead letter task {self.task_id}.{self.attempt} ({self.status})"
