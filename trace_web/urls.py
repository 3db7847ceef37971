"""URL map: the `/` page, admin, the REST API under /v1/, and the OpenAPI schema and docs."""

from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

from trace_web import surfaces
from trace_web.chain_sync.api import ChainStatusApi, ChainSyncListApi, ChainSyncStatusApi
from trace_web.datasets.api import DatasetListApi
from trace_web.orchestration import api

urlpatterns = [
    path("", surfaces.home, name="home"),
    path("admin/", admin.site.urls),
    path("v1/auth/token", obtain_auth_token, name="auth-token"),
    path("v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("v1/schema/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="schema-docs"),
    path("v1/schema/redoc/", surfaces.redoc, name="schema-redoc"),
    path("v1/dags", api.DagListApi.as_view()),
    path("v1/dags/<str:name>", api.DagDetailApi.as_view()),
    path("v1/dags/<str:name>/versions", api.DagVersionsApi.as_view()),
    path("v1/dags/<str:name>/active", api.DagActiveApi.as_view()),
    path("v1/dags/<str:name>/jobs/<str:job>/runs", api.JobRunApi.as_view()),
    path("v1/dags/<str:name>/jobs/<str:job>/webhook-secret", api.WebhookSecretApi.as_view()),
    path("v1/hooks/<str:org>/<str:name>/<str:job>", api.WebhookApi.as_view()),
    path("v1/tasks", api.TaskListApi.as_view()),
    path("v1/tasks/<int:task_id>", api.TaskDetailApi.as_view()),
    path("v1/tasks/<int:task_id>/cancel", api.TaskCancelApi.as_view()),
    path("v1/datasets", DatasetListApi.as_view()),
    path("v1/chains/<int:chain_id>/status", ChainStatusApi.as_view()),
    path("v1/chain-syncs", ChainSyncListApi.as_view()),
    path("v1/chain-syncs/<str:name>", ChainSyncStatusApi.as_view()),
    path("v1/task/heartbeat", api.TaskHeartbeatApi.as_view()),
    path("v1/task/complete", api.TaskCompleteApi.as_view()),
    path("v1/task/fail", api.TaskFailApi.as_view()),
    path("v1/task/events", api.TaskEventsApi.as_view()),
]
