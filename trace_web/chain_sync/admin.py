from django.contrib import admin

from trace_web.chain_sync.models import ChainSync, ChainSyncStream, ScheduledRange


class StreamInline(admin.TabularInline):
    model = ChainSyncStream
    fields = ["dataset", "chunk_size", "max_inflight", "rpc_pool", "cursor"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(ChainSync)
class ChainSyncAdmin(admin.ModelAdmin):
    list_display = ["name", "org", "chain_id", "mode", "from_block", "to_block", "enabled"]
    readonly_fields = [f.name for f in ChainSync._meta.fields]
    inlines = [StreamInline]


@admin.register(ScheduledRange)
class ScheduledRangeAdmin(admin.ModelAdmin):
    list_display = ["stream", "range_start", "range_end", "status", "task_id", "finished_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in ScheduledRange._meta.fields]
