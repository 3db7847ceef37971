from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "trace_web.datasets"
    label = "datasets"
