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
    before_id = BigIntField(
        required=False,
        min_value=1,
        help_text="Cursor: only tasks with a smaller id (older). A full page's `Link` header "
        'gives the next page\'s URL (`rel="next"`)',
    )
    created_after = serializers.DateTimeField(
        required=False, help_text="Only tasks created at or after this time (ISO 8601)"
    )
    created_before = serializers.DateTimeField(
        required=False, help_text="Only tasks created before this time (ISO 8601)"
    )


class DagDetailQuery(StrictSerializer):
    version = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**31 - 1,
        help_text="Describe this version's jobs and YAML (default: the active, else the latest)",
    )


class JobInputOut(serializers.Serializer):
    """An input edge: from another job's output in the DAG, or from a published dataset."""

    from_job = serializers.CharField(allow_null=True)
    from_output = serializers.IntegerField(allow_null=True)
    from_dataset = serializers.CharField(allow_null=True, help_text="A published dataset name")
    where = serializers.DictField(help_text="Equality filter on the event's attributes")


class JobOut(serializers.Serializer):
    name = serializers.CharField()
    activation = serializers.ChoiceField(choices=["source", "reactive", "manual"])
    runtime = serializers.CharField()
    operator = serializers.CharField()
    outputs = serializers.IntegerField()
    execution_strategy = serializers.CharField()
    update_strategy = serializers.CharField()
    source_kind = serializers.CharField(help_text="cron, webhook, manual, always_on; empty if none")
    schedule = serializers.CharField(help_text="A cron source's schedule; empty otherwise")
    max_concurrency = serializers.IntegerField(allow_null=True)
    timeout_seconds = serializers.IntegerField(allow_null=True)
    heartbeat_timeout_seconds = serializers.IntegerField(allow_null=True)
    max_attempts = serializers.IntegerField()
    inputs = JobInputOut(many=True)


class DagDetailOut(serializers.Serializer):
    name = serializers.CharField()
    active_version = serializers.IntegerField(
        allow_null=True, help_text="Null while no version of the DAG is active"
    )
    latest_version = serializers.IntegerField()
    versions = DagVersionOut(many=True, help_text="Every version, newest first")
    shown_version = serializers.IntegerField(
        help_text="The version `jobs` and `yaml` describe: `?version=`, else the active, else "
        "the latest"
    )
    jobs = JobOut(many=True)
    yaml = serializers.CharField(help_text="The YAML document of shown_version, as deployed")
