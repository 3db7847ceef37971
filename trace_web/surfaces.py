"""The `/` page: where each surface of Trace is (admin, API docs, Redoc, the OpenAPI schema,
Flower), so someone who opens the web port finds the rest."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_safe
from drf_spectacular.views import SpectacularRedocView

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Trace</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;line-height:1.5}}
dt{{font-weight:600;margin-top:.8em}}</style></head>
<body>
<h1>Trace</h1>
<p>Control plane of the Trace blockchain data platform.</p>
<dl>{links}</dl>
</body>
</html>
"""


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    links = [
        (reverse("admin:index"), "Admin", "orgs, users, DAG versions, jobs, tasks, outbox"),
        (reverse("schema-docs"), "API docs", "Swagger UI: try the REST API (/v1/...)"),
        (reverse("schema-redoc"), "API reference", "Redoc: every endpoint and its bodies"),
        (reverse("schema"), "OpenAPI schema", "the machine-readable description (YAML)"),
        (settings.TRACE_FLOWER_URL, "Flower", "Celery workers and queues (its own process)"),
        (reverse("metrics"), "Metrics", "backlogs for Prometheus: queues, outbox, tip lag"),
    ]
    items = format_html_join(
        "\n", '<dt><a href="{}">{}</a></dt><dd>{}</dd>', ((u, t, d) for u, t, d in links)
    )
    return HttpResponse(format_html(PAGE, links=items))


# Redoc next to Swagger UI; defined here so the URL map's imports stay as they are.
redoc = SpectacularRedocView.as_view(url_name="schema")
