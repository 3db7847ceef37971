from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "trace_web.orgs"
    label = "orgs"

    def ready(self) -> None:
        from trace_web.orgs import schema  # noqa: F401  registers the OpenAPI extension
