"""Input and output serializers of the user-code API (bundles, signing policy), and the
typed body of `POST /v1/task/buffer-publish`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from rest_framework import serializers

from trace_operators.validation import StrictModel
from trace_web.orchestration.task_reports import OutputIndex
from trace_web.serializers import StrictSerializer


class BundleFileOut(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class BundleOut(serializers.Serializer):
    id = serializers.CharField(help_text="sha256 of the zip's bytes: the bundle's id")
    name = serializers.CharField()
    version = serializers.CharField()
    ref = serializers.CharField(help_text="`name@version`, as a DAG may name it")
    runtime = serializers.ChoiceField(choices=["python", "node"])
    entrypoint = serializers.CharField()
    size_bytes = serializers.IntegerField()
    signed = serializers.BooleanField()
    files = BundleFileOut(many=True)
    created_at = serializers.DateTimeField()


class SigningPolicyIn(StrictSerializer):
    keys = serializers.DictField(
        child=serializers.CharField(max_length=64),
        allow_empty=True,
        help_text="Key name -> raw Ed25519 public key (32 bytes), base64; replaces the org's keys",
    )
    require_signed = serializers.BooleanField(
        help_text="Refuse bundles whose manifest is not signed by one of the keys"
    )

    def validate_keys(self, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not (1 <= len(name) <= 100) or not name.replace("-", "").replace("_", "").isalnum():
                raise serializers.ValidationError(
                    f"key name {name[:100]!r}: 1-100 letters, digits, - or _"
                )
        return value


class SigningPolicyOut(serializers.Serializer):
    keys = serializers.ListField(child=serializers.CharField(), help_text="The key names")
    require_signed = serializers.BooleanField()


class BufferPublishBody(StrictModel):
    """One batch of a task's output rows, stored as JSONL."""

    output: OutputIndex = 0
    rows: Annotated[list[dict[str, Any]], Field(max_length=1_000_000)]


class BufferPublishOut(serializers.Serializer):
    batch = serializers.IntegerField(help_text="The batch's number within the attempt")
    output = serializers.IntegerField()
    location = serializers.CharField()
    row_count = serializers.IntegerField()
    bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
