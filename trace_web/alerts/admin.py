"""Alerting in the admin. Definitions and channels are edited through the same services as
the API (a form's values are checked whole as a spec, errors shown on their fields; another
org's bundle or channel is refused); a channel's secret is never shown. Events, deliveries
and dead letters are read-only; actions retry failed deliveries (delivery_retry) and replay
dead letters (the sink's dead_letter_replay). As the other admins, it is for staff with the
model's permissions, across orgs, with an org filter on every list."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from trace_web.alerts.models import (
    AlertDefinition,
    AlertEvent,
    Channel,
    DeadLetterBatch,
    Delivery,
)
from trace_web.alerts.selectors import dead_letter_rows
from trace_web.alerts.services import (
    alert_definition_check,
    alert_definition_create,
    alert_definition_update,
    channel_check,
    channel_create,
    channel_secret_rotate,
    channel_update,
)
from trace_web.errors import TraceError
from trace_web.orchestration.admin import ReadOnlyAdmin


def _short(text: str, size: int = 80) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


class ServiceForm(forms.ModelForm):
    """A model form whose values are checked by a service (`check(org=, spec=, instance=)`):
    each problem is shown on the field it names, or above the form."""

    check: Any = None

    def spec(self, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        org = data.get("org") or (self.instance.org if self.instance.pk else None)
        if self.errors or org is None:
            return data
        try:
            type(self).check(
                org=org, spec=self.spec(data), instance=self.instance if self.instance.pk else None
            )
        except TraceError as exc:
            lines = exc.details if isinstance(exc.details, list) else [exc.message]
            for line in lines:
                path, _, message = line.partition(": ")
                field = path.split(".")[0].split("[")[0]
                if message and field in self.fields:
                    self.add_error(field, message)
                else:
                    self.add_error(None, line)
        return data


class DefinitionForm(ServiceForm):
    check = staticmethod(alert_definition_check)

    class Meta:
        model = AlertDefinition
        fields = [
            "org",
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
        ]

    def spec(self, data: dict[str, Any]) -> dict[str, Any]:
        bundle = data.get("bundle")
        spec = {
            "name": data.get("name"),
            "description": data.get("description") or "",
            "severity": data.get("severity"),
            "enabled": bool(data.get("enabled")),
            "chain_id": data.get("chain_id"),
            "channels": [c.pk for c in data.get("channels") or []],
            "confirmations": data.get("confirmations") or 0,
            "max_staleness_seconds": data.get("max_staleness_seconds"),
        }
        if data.get("condition") is not None:
            spec["condition"] = data["condition"]
        if bundle is not None:
            # By sha256: a bundle of another org is no bundle of this one.
            spec |= {
                "bundle": bundle.sha256,
                "entrypoint": data.get("entrypoint") or "",
                "params": data.get("params") or {},
                "datasets": data.get("datasets") or [],
            }
        elif data.get("params") or data.get("entrypoint"):
            spec |= {"params": data.get("params") or {}, "entrypoint": data.get("entrypoint")}
        return spec


@admin.register(AlertDefinition)
class AlertDefinitionAdmin(admin.ModelAdmin):
    form = DefinitionForm
    list_display = [
        "name",
        "org",
        "chain_id",
        "kind",
        "severity",
        "enabled",
        "confirmations",
        "updated_at",
    ]
    list_filter = ["org", "enabled", "severity", "chain_id"]
    search_fields = ["name", "description"]
    filter_horizontal = ["channels"]
    readonly_fields = ["owner", "created_at", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [*self.readonly_fields, "org"] if obj is not None else self.readonly_fields

    @admin.display(description="rule")
    def kind(self, obj: AlertDefinition) -> str:
        return f"handler {obj.bundle}" if obj.bundle_id else "condition"

    def save_model(self, request: HttpRequest, obj: AlertDefinition, form, change: bool) -> None:
        spec = form.spec(form.cleaned_data)
        if change:
            saved = alert_definition_update(
                definition=AlertDefinition.objects.get(pk=obj.pk), changes=spec, partial=False
            )
        else:
            saved = alert_definition_create(
                org=form.cleaned_data["org"], spec=spec, user=request.user
            )
        obj.pk = saved.pk
        obj.refresh_from_db()

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        """The service set the channels (checked to be the org's); the form must not."""
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)


class ChannelForm(ServiceForm):
    check = staticmethod(channel_check)

    class Meta:
        model = Channel
        fields = [
            "org",
            "name",
            "kind",
            "target",
            "chat_id",
            "rate_limit_per_minute",
            "min_severity",
            "send_retractions",
            "enabled",
        ]

    def spec(self, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": data.get("name"),
            "kind": data.get("kind"),
            "target": data.get("target"),
            "chat_id": data.get("chat_id") or "",
            "rate_limit_per_minute": data.get("rate_limit_per_minute"),
            "min_severity": data.get("min_severity"),
            "send_retractions": bool(data.get("send_retractions")),
            "enabled": bool(data.get("enabled")),
        }


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    """The signing secret is not a field of the form, nor a column: it is shown only when a
    rotation makes it (an action), as the API does."""

    form = ChannelForm
    list_display = ["name", "org", "kind", "short_target", "rate_limit_per_minute", "enabled"]
    list_filter = ["org", "kind", "enabled"]
    search_fields = ["name", "target"]
    readonly_fields = ["has_secret", "created_by", "created_at", "updated_at"]
    actions = ["rotate_secret"]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [*self.readonly_fields, "org"] if obj is not None else self.readonly_fields

    @admin.display(description="target")
    def short_target(self, obj: Channel) -> str:
        return _short(obj.target, 60)

    @admin.display(boolean=True, description="signing secret set")
    def has_secret(self, obj: Channel) -> bool:
        return bool(obj.secret)

    def save_model(self, request: HttpRequest, obj: Channel, form, change: bool) -> None:
        spec = form.spec(form.cleaned_data)
        if change:
            written = channel_update(
                channel=Channel.objects.get(pk=obj.pk), changes=spec, partial=False
            )
        else:
            written = channel_create(org=form.cleaned_data["org"], spec=spec, user=request.user)
        obj.pk = written.channel.pk
        obj.refresh_from_db()
        if written.secret is not None:
            self.message_user(
                request,
                f"{written.channel.name}: signing secret {written.secret} (shown this once)",
                messages.WARNING,
            )

    @admin.action(
        description="Rotate the selected webhooks' signing secrets (shown once)",
        permissions=["change"],
    )
    def rotate_secret(self, request: HttpRequest, queryset) -> None:
        for channel in queryset:
            try:
                secret = channel_secret_rotate(channel=channel)
            except TraceError as exc:
                self.message_user(request, f"{channel.name}: {exc.message}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"{channel.name}: new signing secret {secret} (shown this once)",
                    messages.WARNING,
                )


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "definition",
        "org",
        "state",
        "backtest",
        "chain_id",
        "block_number",
        "tx_hash",
        "log_index",
        "created_at",
    ]
    list_filter = ["state", "backtest", "org", "definition"]
    list_select_related = ["definition", "org"]
    search_fields = ["tx_hash", "block_hash", "dedupe_key"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "event",
        "channel",
        "purpose",
        "status",
        "attempt",
        "next_attempt_at",
        "short_error",
        "delivered_at",
    ]
    list_filter = ["status", "purpose", "channel", "org"]
    list_select_related = ["event", "channel"]
    exclude = ["lease_token"]
    actions = ["retry"]

    @admin.display(description="error")
    def short_error(self, obj: Delivery) -> str:
        return _short(obj.error)

    @admin.action(description="Retry the selected failed deliveries", permissions=["operate"])
    def retry(self, request: HttpRequest, queryset) -> None:
        from trace_web.alerts.delivery import delivery_retry

        def act(delivery: Delivery) -> str:
            delivery_retry(delivery=delivery)
            return "pending again, with a fresh round of attempts"

        self.run_each(request, queryset, act, lambda d: f"delivery {d.pk}")


@admin.register(DeadLetterBatch)
class DeadLetterBatchAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "org",
        "task_id",
        "attempt",
        "rows",
        "status",
        "short_error",
        "created_at",
    ]
    list_filter = ["status", "org"]
    actions = ["replay"]

    @admin.display(description="rows")
    def rows(self, obj: DeadLetterBatch) -> int | None:
        return dead_letter_rows(obj)

    @admin.display(description="error")
    def short_error(self, obj: DeadLetterBatch) -> str:
        return _short(obj.error)

    @admin.action(
        description="Replay the selected dead letters through the sink", permissions=["operate"]
    )
    def replay(self, request: HttpRequest, queryset) -> None:
        from trace_web.alerts.sink import dead_letter_replay

        def act(dead_letter: DeadLetterBatch) -> str:
            outcome = dead_letter_replay(dead_letter=dead_letter)
            return (
                f"replayed: {outcome.created} event(s) created, {outcome.existing} existing, "
                f"{outcome.stale} stale, {outcome.retracted} retracted, "
                f"{outcome.deliveries} deliveries"
            )

        self.run_each(request, queryset, act, lambda d: f"dead letter {d.pk}")
