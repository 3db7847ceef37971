from django.contrib import admin

from trace_web.query.models import QueryResult


@admin.register(QueryResult)
class QueryResultAdmin(admin.ModelAdmin):
    """Exports are made by queries and removed with their files by the retention pass: shown
    here, never added, edited or deleted by hand (a deleted record would orphan its file)."""

    list_display = ["id", "org", "user", "task_id", "format", "row_count", "bytes", "expires_at"]
    list_filter = ["org", "format"]
    readonly_fields = [f.name for f in QueryResult._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
