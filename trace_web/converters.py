"""URL path converters that bound what a path segment may be, so an id past bigint or a name
with characters no name can hold is "no such endpoint" (a JSON 404) before any query runs."""

from __future__ import annotations

from trace_operators.validation import BIGINT_MAX


class IdConverter:
    """A positive integer that fits a bigint column (ids, chain ids)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 0 < number <= BIGINT_MAX:
            raise ValueError(value)  # Django treats it as no match
        return number

    def to_url(self, value: int) -> str:
        return str(value)


class NameConverter:
    """A DAG, job or chain_sync name (dag_spec.NAME_RE), or an org slug."""

    regex = "[A-Za-z0-9][A-Za-z0-9_-]{0,99}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class DatasetNameConverter(NameConverter):
    """A published dataset name (dag_spec.DATASET_RE) or an unpublished output's list name,
    `{dag}.{job}[{output}]`."""

    regex = r"[a-z][a-z0-9_.-]{0,199}(?:\[[0-9]{1,4}\])?"


class BundleRefConverter(NameConverter):
    """A UDF bundle's sha256 or its `name@version` (trace_web.udf.selectors)."""

    regex = r"[0-9a-f]{64}|[a-z][a-z0-9_-]{0,99}@[0-9A-Za-z][0-9A-Za-z._+-]{0,63}"
