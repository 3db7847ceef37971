from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    name = "trace_web.orchestration"
    label = "orchestration"
