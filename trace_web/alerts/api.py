"""Alerting REST API: alert definitions and channels (list, create, show, update, delete), a
definition's events and deliveries, retrying a failed delivery, a backtest, and rotating a
webhook channel's secret. Every view is org-scoped (another org's id is a 404) and
role-scoped by OrgScopedView: viewers read, members write, admins rotate secrets. Views parse
and call one service each."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from trace_operators.validation import Problems, validate
from trace_web.alerts import serializers as s
from trace_web.alerts.models import AlertEvent, Delivery
from trace_web.alerts.selectors import (
    channel_get,
    channels_of,
    definition_get,
    definitions_of,
    deliveries_filter,
    events_filter,
)
from trace_web.alerts.services import (
    alert_backtest,
    alert_definition_create,
    alert_definition_delete,
    alert_definition_update,
    backtest_rules,
    channel_create,
    channel_delete,
    channel_secret_rotate,
    channel_update,
)
from trace_web.alerts.spec import BacktestSpec, ChannelSpec, DefinitionSpec
from trace_web.errors import NotFound, ValidationFailed
from trace_web.orchestration.api import NEXT_PAGE_LINK
from trace_web.orgs.models import Role
from trace_web.orgs.scoping import OrgScopedView
from trace_web.orgs.serializers import NOT_A_MEMBER, ORG_HEADER, ROLE_TOO_LOW, ErrorOut
from trace_web.parsers import StrictJSONParser

INVALID = OpenApiResponse(ErrorOut, "Refused: `errors` has one `field: message` per problem")
NO_ALERT = OpenApiResponse(ErrorOut, "No alert of that id in the org")
NO_CHANNEL = OpenApiResponse(ErrorOut, "No channel of that id in the org")
NAME_TAKEN = OpenApiResponse(ErrorOut, "The org already has one of that name")
UNSUPPORTED = OpenApiResponse(ErrorOut, "Not sent as application/json")


class AlertsView(OrgScopedView):
    # Bodies are JSON only: a form would reach the specs as strings, and be refused anyway.
    parser_classes = [StrictJSONParser]

    def body(self, request: Request) -> dict[str, Any]:
        """The JSON body, which must be an object (the services check its fields)."""
        if not isinstance(request.data, dict):
            raise ValidationFailed.one("", "the body must be a JSON object")
        return request.data

    def query(self, serializer_class, request: Request) -> dict[str, Any]:
        query = serializer_class(data=request.query_params)
        query.is_valid(raise_exception=True)
        return dict(query.validated_data)

    def paged(self, request: Request, rows: list, serializer_class, limit: int) -> Response:
        """One page, and on a full page a `Link` to the next (older) one, as GET /v1/tasks."""
        response = Response(serializer_class(rows, many=True).data)
        if len(rows) == limit:
            params = request.query_params.copy()
            params["before_id"] = str(rows[-1].pk)
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
            response["Link"] = f'<{next_url}>; rel="next"'
        return response


# --- definitions ---------------------------------------------------------------------------------
class AlertListApi(AlertsView):
    @extend_schema(
        parameters=[ORG_HEADER, s.DefinitionListQuery],
        responses={
            200: s.DefinitionOut(many=True),
            400: OpenApiResponse(ErrorOut, "A bad query parameter"),
            403: NOT_A_MEMBER,
        },
    )
    def get(self, request: Request) -> Response:
        filters = {
            k: v for k, v in self.query(s.DefinitionListQuery, request).items() if v is not None
        }
        found = definitions_of(org_id=self.org.pk).filter(**filters).select_related("owner")
        return Response(s.DefinitionOut(found.order_by("name"), many=True).data)

    @extend_schema(
        description="Define an alert: exactly one of `condition` (declarative) or `bundle` "
        "(a UDF handler, `name@version`, with `entrypoint`, `params` and `datasets`). "
        "`channels` by name or id, each the org's. Members and admins.",
        parameters=[ORG_HEADER],
        request=DefinitionSpec,
        responses={
            201: s.DefinitionOut,
            400: INVALID,
            403: ROLE_TOO_LOW,
            409: NAME_TAKEN,
            415: UNSUPPORTED,
        },
    )
    def post(self, request: Request) -> Response:
        definition = alert_definition_create(
            org=self.org, spec=self.body(request), user=request.user
        )
        return Response(s.DefinitionOut(definition).data, status=status.HTTP_201_CREATED)


class AlertDetailApi(AlertsView):
    def definition(self, alert_id: int):
        return definition_get(org_id=self.org.pk, definition_id=alert_id)

    @extend_schema(
        parameters=[ORG_HEADER], responses={200: s.DefinitionOut, 403: NOT_A_MEMBER, 404: NO_ALERT}
    )
    def get(self, request: Request, alert_id: int) -> Response:
        return Response(s.DefinitionOut(self.definition(alert_id)).data)

    @extend_schema(
        description="Change the fields given; the result is checked whole, as a create. "
        "Setting `condition` drops a handler's fields, setting `bundle` drops the condition.",
        parameters=[ORG_HEADER],
        request=s.DefinitionPatch,
        responses={
            200: s.DefinitionOut,
            400: INVALID,
            403: ROLE_TOO_LOW,
            404: NO_ALERT,
            409: NAME_TAKEN,
            415: UNSUPPORTED,
        },
    )
    def patch(self, request: Request, alert_id: int) -> Response:
        definition = alert_definition_update(
            definition=self.definition(alert_id), changes=self.body(request)
        )
        return Response(s.DefinitionOut(definition).data)

    @extend_schema(
        description="Replace the definition with this one (fields left out take their defaults).",
        parameters=[ORG_HEADER],
        request=DefinitionSpec,
        responses={
            200: s.DefinitionOut,
            400: INVALID,
            403: ROLE_TOO_LOW,
            404: NO_ALERT,
            409: NAME_TAKEN,
            415: UNSUPPORTED,
        },
    )
    def put(self, request: Request, alert_id: int) -> Response:
        definition = alert_definition_update(
            definition=self.definition(alert_id), changes=self.body(request), partial=False
        )
        return Response(s.DefinitionOut(definition).data)

    @extend_schema(
        description="Delete the alert with its events and their deliveries.",
        parameters=[ORG_HEADER],
        responses={200: s.DeletedOut, 403: ROLE_TOO_LOW, 404: NO_ALERT},
    )
    def delete(self, request: Request, alert_id: int) -> Response:
        definition = self.definition(alert_id)
        alert_definition_delete(definition=definition)
        return Response({"id": alert_id, "deleted": True})


class AlertEventsApi(AlertsView):
    @extend_schema(
        parameters=[ORG_HEADER, s.EventListQuery, NEXT_PAGE_LINK],
        responses={
            200: s.EventOut(many=True),
            400: OpenApiResponse(ErrorOut, "A bad query parameter"),
            403: NOT_A_MEMBER,
            404: NO_ALERT,
        },
    )
    def get(self, request: Request, alert_id: int) -> Response:
        query = self.query(s.EventListQuery, request)
        definition = definition_get(org_id=self.org.pk, definition_id=alert_id)
        limit = query.pop("limit")
        events = events_filter(
            AlertEvent.objects.filter(org=self.org, definition=definition), **query
        )
        return self.paged(request, list(events[:limit]), s.EventOut, limit)


class AlertDeliveriesApi(AlertsView):
    @extend_schema(
        parameters=[ORG_HEADER, s.DeliveryListQuery, NEXT_PAGE_LINK],
        responses={
            200: s.DeliveryOut(many=True),
            400: OpenApiResponse(ErrorOut, "A bad query parameter"),
            403: NOT_A_MEMBER,
            404: NO_ALERT,
        },
    )
    def get(self, request: Request, alert_id: int) -> Response:
        query = self.query(s.DeliveryListQuery, request)
        definition = definition_get(org_id=self.org.pk, definition_id=alert_id)
        limit = query.pop("limit")
        deliveries = deliveries_filter(
            Delivery.objects.filter(org=self.org, event__definition=definition), **query
        )
        return self.paged(request, list(deliveries[:limit]), s.DeliveryOut, limit)


class AlertDeliveryRetryApi(AlertsView):
    @extend_schema(
        description="Send a failed delivery again: back to pending with a fresh budget of "
        "attempts.",
        request=None,
        parameters=[ORG_HEADER],
        responses={
            200: s.DeliveryOut,
            403: ROLE_TOO_LOW,
            404: OpenApiResponse(ErrorOut, "No such alert, or no such delivery of it"),
            409: OpenApiResponse(
                ErrorOut, "The delivery has not failed (delivered, or already on its way)"
            ),
        },
    )
    def post(self, request: Request, alert_id: int, delivery_id: int) -> Response:
        from trace_web.alerts.delivery import delivery_retry

        definition = definition_get(org_id=self.org.pk, definition_id=alert_id)
        delivery = (
            Delivery.objects.filter(org=self.org, event__definition=definition, pk=delivery_id)
            .select_related("channel")
            .first()
        )
        if delivery is None:
            raise NotFound(f"no delivery {delivery_id} of alert {alert_id}")
        retried = delivery_retry(delivery=delivery)
        return Response(s.DeliveryOut(retried).data)


class AlertBacktestApi(AlertsView):
    @extend_schema(
        description="Evaluate the alert over blocks `[range_start, range_end)` (cold and "
        "hot data), as a manual task of the `alert_evaluate` job that evaluates it live. Its "
        "events are marked `backtest` and delivered only with `deliver: true`.",
        parameters=[ORG_HEADER],
        request=BacktestSpec,
        responses={
            202: s.BacktestOut,
            400: INVALID,
            403: ROLE_TOO_LOW,
            404: NO_ALERT,
            409: OpenApiResponse(ErrorOut, "No active alert_evaluate job evaluates this alert"),
            415: UNSUPPORTED,
        },
    )
    def post(self, request: Request, alert_id: int) -> Response:
        try:
            body = validate(BacktestSpec, self.body(request), rules=backtest_rules)
        except Problems as exc:
            raise ValidationFailed.of(exc.errors) from None
        definition = definition_get(org_id=self.org.pk, definition_id=alert_id)
        task = alert_backtest(
            definition=definition,
            range_start=body.range_start,
            range_end=body.range_end,
            deliver=body.deliver,
        )
        return Response(
            {
                "task_id": task.pk,
                "status": task.status,
                "dag": task.job.dag_version.name,
                "job": task.job.name,
                "range_start": task.range_start,
                "range_end": task.range_end,
                "deliver": task.payload["deliver"],
            },
            status=status.HTTP_202_ACCEPTED,
        )


# --- channels ------------------------------------------------------------------------------------
class ChannelListApi(AlertsView):
    @extend_schema(
        parameters=[ORG_HEADER], responses={200: s.ChannelOut(many=True), 403: NOT_A_MEMBER}
    )
    def get(self, request: Request) -> Response:
        return Response(
            s.ChannelOut(channels_of(org_id=self.org.pk).order_by("name"), many=True).data
        )

    @extend_schema(
        description="Add a channel. `target` by kind: an http(s) URL (webhook, slack, discord, "
        "telegram's sendMessage URL, with `chat_id`), an email address, or an E.164 number "
        "(sms). A webhook's signing secret is in this answer only.",
        parameters=[ORG_HEADER],
        request=ChannelSpec,
        responses={
            201: s.ChannelWrittenOut,
            400: INVALID,
            403: ROLE_TOO_LOW,
            409: NAME_TAKEN,
            415: UNSUPPORTED,
        },
    )
    def post(self, request: Request) -> Response:
        written = channel_create(org=self.org, spec=self.body(request), user=request.user)
        return Response(_written(written), status=status.HTTP_201_CREATED)


class ChannelDetailApi(AlertsView):
    def channel(self, channel_id: int):
        return channel_get(org_id=self.org.pk, channel_id=channel_id)

    @extend_schema(
        parameters=[ORG_HEADER], responses={200: s.ChannelOut, 403: NOT_A_MEMBER, 404: NO_CHANNEL}
    )
    def get(self, request: Request, channel_id: int) -> Response:
        return Response(s.ChannelOut(self.channel(channel_id)).data)

    @extend_schema(
        description="Change the fields given; checked whole. A channel made a webhook gets a "
        "secret, shown in this answer only.",
        parameters=[ORG_HEADER],
        request=s.ChannelPatch,
        responses={
            200: s.ChannelWrittenOut,
            400: INVALID,
            403: ROLE_TOO_LOW,
            404: NO_CHANNEL,
            409: NAME_TAKEN,
            415: UNSUPPORTED,
        },
    )
    def patch(self, request: Request, channel_id: int) -> Response:
        written = channel_update(channel=self.channel(channel_id), changes=self.body(request))
        return Response(_written(written))

    @extend_schema(
        description="Replace the channel with this one (a webhook keeps its secret).",
        parameters=[ORG_HEADER],
        request=ChannelSpec,
        responses={
            200: s.ChannelWrittenOut,
            400: INVALID,
            403: ROLE_TOO_LOW,
            404: NO_CHANNEL,
            409: NAME_TAKEN,
            415: UNSUPPORTED,
        },
    )
    def put(self, request: Request, channel_id: int) -> Response:
        written = channel_update(
            channel=self.channel(channel_id), changes=self.body(request), partial=False
        )
        return Response(_written(written))

    @extend_schema(
        description="Delete the channel with its deliveries; alerts that named it keep their "
        "other channels.",
        parameters=[ORG_HEADER],
        responses={200: s.DeletedOut, 403: ROLE_TOO_LOW, 404: NO_CHANNEL},
    )
    def delete(self, request: Request, channel_id: int) -> Response:
        channel_delete(channel=self.channel(channel_id))
        return Response({"id": channel_id, "deleted": True})


class ChannelSecretRotateApi(AlertsView):
    required_roles = {"POST": Role.ADMIN}

    @extend_schema(
        description="A new signing secret for a webhook channel, shown in this answer only; "
        "the old one stops at once. Admins only.",
        request=None,
        parameters=[ORG_HEADER],
        responses={
            200: s.ChannelSecretOut,
            400: OpenApiResponse(ErrorOut, "The channel is not a webhook"),
            403: OpenApiResponse(
                ErrorOut, "Not signed in, not a member of the org (X-Trace-Org), or not its admin"
            ),
            404: NO_CHANNEL,
        },
    )
    def post(self, request: Request, channel_id: int) -> Response:
        channel = channel_get(org_id=self.org.pk, channel_id=channel_id)
        return Response({"id": channel.pk, "secret": channel_secret_rotate(channel=channel)})


def _written(written) -> dict[str, Any]:
    data = dict(s.ChannelOut(written.channel).data)
    if written.secret is not None:
        data["secret"] = written.secret
    return data
