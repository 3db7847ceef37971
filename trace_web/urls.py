"""URL map: the `/` page, admin, Prometheus `/metrics`, the REST API under /v1/, and the OpenAPI
schema and docs."""

from django.contrib import admin
from django.urls import path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from trace_web import surfaces
from trace_web.alerts import api as alerts
from trace_web.chain_sync.api import ChainStatusApi, ChainSyncListApi, ChainSyncStatusApi
from trace_web.converters import (
    BundleRefConverter,
    DatasetNameConverter,
    IdConverter,
    NameConverter,
)
from trace_web.datasets.api import DatasetDetailApi, DatasetListApi, IntegrityCheckListApi
from trace_web.observability import views as observability
from trace_web.orchestration import api
from trace_web.orgs.api import AuthTokenApi
from trace_web.query.api import QueryApi, QueryResultApi, TaskQueryApi, TaskQueryResultApi
from trace_web.udf.api import (
    BundleDetailApi,
    BundleListApi,
    SigningPolicyApi,
    TaskBufferPublishApi,
)

register_converter(IdConverter, "id")
register_converter(NameConverter, "name")
register_converter(DatasetNameConverter, "dataset")
register_converter(BundleRefConverter, "bundle")

# Django-level errors under /v1/ answer in the API's JSON error shape (trace_web/errors.py).
handler400 = "trace_web.errors.bad_request"
handler403 = "trace_web.errors.permission_denied"
handler404 = "trace_web.errors.page_not_found"
handler500 = "trace_web.errors.server_error"

urlpatterns = [
    path("", surfaces.home, name="home"),
    path("admin/", admin.site.urls),
    path("metrics", observability.metrics, name="metrics"),
    path("v1/auth/token", AuthTokenApi.as_view(), name="auth-token"),
    path("v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("v1/schema/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="schema-docs"),
    path("v1/schema/redoc/", surfaces.redoc, name="schema-redoc"),
    path("v1/dags", api.DagListApi.as_view()),
    path("v1/dags/<name:name>", api.DagDetailApi.as_view()),
    path("v1/dags/<name:name>/versions", api.DagVersionsApi.as_view()),
    path("v1/dags/<name:name>/active", api.DagActiveApi.as_view()),
    path("v1/dags/<name:name>/jobs/<name:job>/runs", api.JobRunApi.as_view()),
    path("v1/dags/<name:name>/jobs/<name:job>/webhook-secret", api.WebhookSecretApi.as_view()),
    path("v1/hooks/<name:org>/<name:name>/<name:job>", api.WebhookApi.as_view()),
    path("v1/tasks", api.TaskListApi.as_view()),
    path("v1/tasks/<id:task_id>", api.TaskDetailApi.as_view()),
    path("v1/tasks/<id:task_id>/cancel", api.TaskCancelApi.as_view()),
    path("v1/datasets", DatasetListApi.as_view()),
    path("v1/datasets/<dataset:name>", DatasetDetailApi.as_view()),
    path("v1/integrity-checks", IntegrityCheckListApi.as_view()),
    path("v1/chains/<id:chain_id>/status", ChainStatusApi.as_view()),
    path("v1/chain-syncs", ChainSyncListApi.as_view()),
    path("v1/chain-syncs/<name:name>", ChainSyncStatusApi.as_view()),
    path("v1/query", QueryApi.as_view()),
    path("v1/query/results/<uuid:result_id>", QueryResultApi.as_view()),
    path("v1/task/query", TaskQueryApi.as_view()),
    path("v1/task/query/results/<uuid:result_id>", TaskQueryResultApi.as_view()),
    path("v1/task/heartbeat", api.TaskHeartbeatApi.as_view()),
    path("v1/task/complete", api.TaskCompleteApi.as_view()),
    path("v1/task/fail", api.TaskFailApi.as_view()),
    path("v1/task/events", api.TaskEventsApi.as_view()),
    path("v1/task/buffer-publish", TaskBufferPublishApi.as_view()),
    path("v1/udf/bundles", BundleListApi.as_view()),
    path("v1/udf/bundles/<bundle:ref>", BundleDetailApi.as_view()),
    path("v1/udf/signing-policy", SigningPolicyApi.as_view()),
    path("v1/alerts", alerts.AlertListApi.as_view()),
    path("v1/alerts/<id:alert_id>", alerts.AlertDetailApi.as_view()),
    path("v1/alerts/<id:alert_id>/events", alerts.AlertEventsApi.as_view()),
    path("v1/alerts/<id:alert_id>/deliveries", alerts.AlertDeliveriesApi.as_view()),
    path(
        "v1/alerts/<id:alert_id>/deliveries/<id:delivery_id>/retry",
        alerts.AlertDeliveryRetryApi.as_view(),
    ),
    path("v1/alerts/<id:alert_id>/backtest", alerts.AlertBacktestApi.as_view()),
    path("v1/channels", alerts.ChannelListApi.as_view()),
    path("v1/channels/<id:channel_id>", alerts.ChannelDetailApi.as_view()),
    path("v1/channels/<id:channel_id>/rotate-secret", alerts.ChannelSecretRotateApi.as_view()),
]
