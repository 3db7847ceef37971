"""The base of every input serializer of the user API: a field it does not know is refused
(`colour: unknown field`), never silently dropped, and integers are bounded by what their
column holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from trace_operators.validation import BIGINT_MAX

# DRF's own query parameter (URL_FORMAT_OVERRIDE) is not ours to refuse.
IGNORED_QUERY_PARAMS = frozenset({"format"})


class StrictSerializer(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields) - IGNORED_QUERY_PARAMS)
            if unknown:
                raise serializers.ValidationError({key: ["unknown field"] for key in unknown})
        return super().to_internal_value(data)


class BigIntField(serializers.IntegerField):
    """An integer that fits a bigint column (block numbers, ids); at least 0 by default."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        super().__init__(max_value=BIGINT_MAX, **kwargs)
