"""Input and output serializers of the orchestration API."""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from trace_operators.validation import INT_MAX
from trace_web.orchestration.models import DagVersion, Task, TaskStatus, TaskTransition
from trace_web.serializers import BigIntField, StrictSerializer


class DagOut(serializers.Serializer):
    name = serializers.CharField()
    active_version = serializers.IntegerField(
        allow_null=True, help_text="Null while no version of the DAG is active"
    )


class DagVersionOut(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    active = serializers.SerializerMethodField()

    class Meta:
        model = DagVersion
        fields = ["name", "version", "content_hash", "created_at", "created_by", "active"]

    def get_active(self, obj: DagVersion) -> bool:
        return obj.pk in self.context.get("active_ids", ())


class DagVersionSyncOut(DagVersionOut):
    """A deployed DAG version: `created` is false when the same content already existed."""

    created = serializers.BooleanField()

    class Meta(DagVersionOut.Meta):
        fields = [*DagVersionOut.Meta.fields, "created"]


class DagVersionIn(StrictSerializer):
    yaml = serializers.CharField(help_text="The DAG YAML document")
    activate = serializers.BooleanField(default=False)


class ActivateIn(StrictSerializer):
    version = serializers.IntegerField(min_value=1, max_value=INT_MAX, required=False)
    rollback = serializers.BooleanField(default=False)

    def validate(self, attrs):
        if bool(attrs.get("version")) == bool(attrs.get("rollback")):
            raise serializers.ValidationError("give exactly one of `version` or `rollback: true`")
        return attrs


class DagActiveOut(serializers.Serializer):
    name = serializers.CharField()
    active_version = serializers.IntegerField()
    previous_version = serializers.IntegerField(allow_null=True)


class WebhookSecretOut(serializers.Serializer):
    """A new webhook secret: only its hash is stored, so it is shown this once."""

    url = serializers.CharField(help_text="Path of the webhook, under this API's host")
    secret = serializers.CharField()
    header = serializers.CharField(help_text="Request header that must carry the secret")


class WebhookAcceptedOut(serializers.Serializer):
    task_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=TaskStatus.choices)


class ScopeIn(StrictSerializer):
    partition_key = serializers.CharField(required=False, allow_null=True, max_length=200)
    range_start = BigIntField(required=False, allow_null=True)
    range_end = BigIntField(required=False, allow_null=True, min_value=1)


class RunIn(StrictSerializer):
    payload = serializers.DictField(required=False, default=dict)
    scope = ScopeIn(required=False)


class CommittedOutputOut(serializers.Serializer):
    """The event a committed output emits to dependent jobs."""

    dataset_id = serializers.IntegerField()
    dataset_version_id = serializers.IntegerField()
    generation = serializers.IntegerField()
    output = serializers.IntegerField()
    partition_key = serializers.CharField(allow_null=True)
    range_start = serializers.IntegerField(allow_null=True)
    range_end = serializers.IntegerField(allow_null=True)
    cursor = serializers.IntegerField(allow_null=True, min_value=0)
    attributes = serializers.DictField()
    producer_task_id = serializers.IntegerField()
    producer_attempt = serializers.IntegerField()
    producer_trigger = serializers.CharField()


@extend_schema_field(CommittedOutputOut(many=True))
class CommittedOutputsField(serializers.JSONField):
    """Task.outputs as stored: the events of its committed outputs."""


class TransitionOut(serializers.ModelSerializer):
    class Meta:
        model = TaskTransition
        fields = ["attempt", "from_status", "to_status", "worker_id", "reason", "at"]


class TaskOut(serializers.ModelSerializer):
    dag = serializers.CharField(source="job.dag_version.name")
    dag_version = serializers.IntegerField(source="job.dag_version.version")
    job = serializers.CharField(source="job.name")
    outputs = CommittedOutputsField(read_only=True)

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


class TaskHeartbeatOut(serializers.Serializer):
    lease_expires_at = serializers.DateTimeField()


class InvalidationRecordedOut(serializers.Serializer):
    type = serializers.CharField(help_text='Always "invalidation"')
    invalidation_id = serializers.IntegerField()
    dataset_id = serializers.IntegerField()


class TaskCompleteOut(serializers.Serializer):
    task_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=TaskStatus.choices, help_text='Always "Completed"')
    outputs = CommittedOutputOut(many=True)


class TaskFailOut(serializers.Serializer):
    task_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=TaskStatus.choices, help_text='Always "Failed"')
    next_retry_at = serializers.DateTimeField(
        allow_null=True, help_text="When the next attempt is queued; null: failed for good"
    )


class TaskEventsOut(serializers.Serializer):
    accepted = PolymorphicProxySerializer(
        component_name="AcceptedEvent",
        serializers=[CommittedOutputOut, InvalidationRecordedOut],
        resource_type_field_name=None,
        many=True,
        help_text="One entry per event, in order",
    )


class TaskListQuery(StrictSerializer):
    status = serializers.ChoiceField(choices=TaskStatus.choices, required=False)
    dag = serializers.CharField(required=False, help_text="DAG name")
    job = serializers.CharField(required=False, help_text="Job name")
    limit = serializers.IntegerField(
        min_value=1, max_value=1000, default=100, help_text="At most this many, newest first"
    )
