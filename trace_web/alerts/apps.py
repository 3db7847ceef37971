from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "trace_web.alerts"
    label = "alerts"
    verbose_name = "Alerts"
