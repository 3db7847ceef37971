from django.apps import AppConfig


class ChainSyncConfig(AppConfig):
    name = "trace_web.chain_sync"
    label = "chain_sync"
    verbose_name = "Chain sync"
