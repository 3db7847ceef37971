"""Admin for chain syncs, their streams and the range ledger. Declarations come from YAML
(`chain_sync apply`); the one action schedules failed ranges again through the service."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from trace_web.chain_sync.models import ChainSync, ChainSyncStream, ScheduledRange
from trace_web.chain_sync.services import chain_sync_retry_failed
from trace_web.errors import TraceError


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
    actions = ["retry_failed_ranges"]

    @admin.action(description="Schedule the failed ranges again", permissions=["change"])
    def retry_failed_ranges(self, request: HttpRequest, queryset: QuerySet) -> None:
        for sync in queryset:
            try:
                count = chain_sync_retry_failed(sync=sync)
            except TraceError as exc:
                self.message_user(request, f"{sync}: {exc.message}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{sync}: {count} failed range(s) scheduled again", messages.SUCCESS
                )


@admin.register(ScheduledRange)
class ScheduledRangeAdmin(admin.ModelAdmin):
    list_display = ["stream", "range_start", "range_end", "status", "task_id", "finished_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in ScheduledRange._meta.fields]
