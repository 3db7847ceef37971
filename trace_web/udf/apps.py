from django.apps import AppConfig


class UdfConfig(AppConfig):
    name = "trace_web.udf"
    label = "udf"
    verbose_name = "User code (UDF)"
