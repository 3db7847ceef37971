"""Input and output serializers of the orchestration API."""

from __future__ import annotations

from rest_framework import serializers

from trace_web.orchestration.models import DagVersion, Task, TaskTransition


class DagVersionOut(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None)
    active = serializers.SerializerMethodField()

    class Meta:
        model = DagVersion
        fields = ["name", "version", "content_hash", "created_at", "created_by", "active"]

    def get_active(self, obj: DagVersion) -> bool:
        return obj.pk in self.context.get("active_ids", ())


class DagVersionIn(serializers.Serializer):
    yaml = serializers.CharField(help_text="The DAG YAML document")
    activate = serializers.BooleanField(default=False)


class ActivateIn(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, required=False)
    rollback = serializers.BooleanField(default=False)

    def validate(self, attrs):
        if bool(attrs.get("version")) == bool(attrs.get("rollback")):
            raise serializers.ValidationError("give exactly one of `version` or `rollback: true`")
        return attrs


class ScopeIn(serializers.Serializer):
    partition_key = serializers.CharField(required=False, allow_null=True, max_length=200)
    range_start = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    range_end = serializers.IntegerField(required=False, allow_null=True, min_value=1)


class RunIn(serializers.Serializer):
    payload = serializers.DictField(required=False, default=dict)
    scope = ScopeIn(required=False)


class TransitionOut(serializers.ModelSerializer):
    class Meta:
        model = TaskTransition
        fields = ["attempt", "from_status", "to_status", "worker_id", "reason", "at"]


class TaskOut(serializers.ModelSerializer):
    dag = serializers.CharField(source="job.dag_version.name")
    dag_version = serializers.IntegerField(source="job.dag_version.version")
    job = serializers.CharField(source="job.name")

    class Meta:
        model = Task
        fields = [
            "id",
            "dag",
            "dag_version",
            "job",
            "status",
            "attempt",
            "max_attempts",
            "trigger",
            "worker_id",
            "partition_key",
            "range_start",
            "range_end",
            "cursor",
            "next_retry_at",
            "lease_expires_at",
            "error",
            "outputs",
            "created_at",
            "started_at",
            "finished_at",
        ]


class TaskDetailOut(TaskOut):
    transitions = TransitionOut(many=True)

    class Meta(TaskOut.Meta):
        fields = [*TaskOut.Meta.fields, "payload", "transitions"]


class OutputIn(serializers.Serializer):
    """Free-form here; the commit service validates fields and ranges strictly."""

    outputs = serializers.ListField(child=serializers.DictField(), required=False, allow_null=True)


class EventsIn(serializers.Serializer):
    events = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=1000)


class FailIn(serializers.Serializer):
    error = serializers.CharField(max_length=10_000)
    retryable = serializers.BooleanField(default=True)
