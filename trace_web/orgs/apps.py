from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "trace_web.orgs"
    label = "orgs"
