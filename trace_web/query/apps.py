from django.apps import AppConfig


class QueryConfig(AppConfig):
    name = "trace_web.query"
    label = "query"
    verbose_name = "Query"
