"""User code in the admin, read-only: bundles are immutable, keys and policy change through
the API (PUT /v1/udf/signing-policy), batches are written by tasks."""

from django.contrib import admin

from trace_web.udf.models import Bundle, OutputBatch, SigningKey, SigningPolicy


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Bundle)
class BundleAdmin(ReadOnlyAdmin):
    list_display = ["name", "version", "org", "runtime", "sha256", "signed", "created_at"]
    list_filter = ["org", "runtime", "signed"]
    search_fields = ["name", "sha256"]


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ["org", "name", "public_key", "created_at"]


@admin.register(SigningPolicy)
class SigningPolicyAdmin(ReadOnlyAdmin):
    list_display = ["org", "require_signed", "updated_at"]


@admin.register(OutputBatch)
class OutputBatchAdmin(ReadOnlyAdmin):
    list_display = ["task_id", "attempt", "output", "sequence", "row_count", "bytes", "created_at"]
    list_filter = ["org"]
