"""Parse and strictly validate DAG YAML documents (TRACE.md section 3, "DAG YAML").

Pure Python (pydantic, PyYAML, stdlib, the operator registry): no Django imports, so it can run
anywhere. Each job's config is checked by its operator's own `config_parse`. Entry points:
``parse_dag_yaml`` / ``parse_dag_dict`` return a frozen, fully resolved ``DagSpec`` (job defaults
applied) or raise ``DagSpecError`` listing every problem as ``field.path: message``.
``canonical_json`` / ``content_hash`` identify a spec by content, independent of YAML formatting.
"""

import hashlib
import json
import math
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from trace_operators.registry import operator_config_problems

NAME_RE = r"^[a-z][a-z0-9_-]{0,99}$"
DATASET_RE = r"^[a-z][a-z0-9_.-]{0,199}$"
OPERATOR_RE = r"^[a-z][a-z0-9_]*$"
SECRET_RE = r"^[A-Z][A-Z0-9_]*$"  # noqa: S105 - a name pattern, not a secret
RESERVED_FIELDS = frozenset({"id", "org", "org_id", "version", "status"})

Name = Annotated[str, StringConstraints(pattern=NAME_RE)]
DatasetName = Annotated[str, StringConstraints(pattern=DATASET_RE)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
PositiveInt = Annotated[int, Field(ge=1)]
MaxAttempts = Annotated[int, Field(ge=1, le=100)]
Runtime = Literal["platform", "udf", "dispatcher"]
ExecutionStrategy = Literal["PerUpdate", "PerPartition"]
UpdateStrategy = Literal["append", "replace"]


class DagSpecError(Exception):
    """A DAG document is invalid; ``errors`` holds one ``field.path: message`` per problem."""

    def __init__(self, errors: list[str], name: str | None = None) -> None:
        super().__init__(list(errors), name)
        self.errors: list[str] = list(errors)
        self.name = name

    def __str__(self) -> str:
        n = len(self.errors)
        label = f"invalid DAG '{self.name}'" if self.name else "invalid DAG"
        return "\n".join([f"{label}: {n} error{'' if n == 1 else 's'}", *self.errors])


def _raise_rules(errors: list[tuple[str, str]]) -> None:
    """Raise several rule violations as one pydantic error; ``format_validation_errors``
    expands them.

    Each sub-path is relative to the location of the model whose validator raises.
    """
    if errors:
        detail = "; ".join(f"{path}: {msg}" if path else msg for path, msg in errors)
        raise PydanticCustomError("dag_rules", "{detail}", {"detail": detail, "errors": errors})


class _Model(BaseModel):
    # strict: YAML already yields typed values, so "3" is not silently an int, nor true a 1.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- cron -----------------------------------------------------------------------------------
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}  # noqa: SIM905
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}  # noqa: SIM905
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_CRON_ITEM = re.compile(r"^(?:\*|(?P<a>[0-9a-z]+)(?:-(?P<b>[0-9a-z]+))?)(?:/(?P<step>[0-9]+))?$")


def _cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a 5-field cron expression, or None when it is one."""
    parts = expr.split()
    if len(parts) != 5:
        return f"must have 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
    for text, (label, lo, hi, names) in zip(parts, _CRON_FIELDS, strict=True):
        bad = f"invalid {label} field {text!r} (allowed {lo}-{hi}, *, */n, a-b, a-b/n, a,b)"
        for item in text.lower().split(","):
            m = _CRON_ITEM.match(item)
            if m is None:
                return bad
            a, b, step = m.group("a"), m.group("b"), m.group("step")
            if a is not None and b is None and step is not None:
                return bad  # "5/10" is not portable cron
            bounds = [names.get(x, int(x) if x.isdigit() else -1) for x in (a, b) if x]
            if any(not lo <= v <= hi for v in bounds) or bounds != sorted(bounds):
                return bad
            if step is not None and not 1 <= int(step) <= hi:
                return bad
    return None


def _json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON (also bounds YAML alias bombs and recursion)."""
    stack, seen = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if depth > 32 or seen > 100_000:
            return "too large or too deeply nested"
        if isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                return "mapping keys must be strings"
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, float) and not math.isfinite(item):
            return "numbers must be finite"
        elif item is not None and not isinstance(item, str | int | float):
            return f"unsupported value of type {type(item).__name__}: only JSON values are allowed"
    return None


def _where_value(value: Any) -> str | int | bool:
    if isinstance(value, str | int):  # bool is an int
        return value
    raise ValueError("must be a string, integer or boolean")


def _one_item_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# --- models ---------------------------------------------------------------------------------
class ScalingSpec(_Model):
    max_concurrency: PositiveInt


class UdfSpec(_Model):
    bundle: NonEmptyStr
    entrypoint: NonEmptyStr = "main"


class SourceSpec(_Model):
    kind: Literal["cron", "webhook", "manual", "always_on"]
    schedule: str | None = None
    every_seconds: PositiveInt | None = None

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if problem := _cron_problem(value):
            raise ValueError(problem)
        return " ".join(value.split())

    @model_validator(mode="after")
    def _kind_rules(self) -> "SourceSpec":
        errors: list[tuple[str, str]] = []
        if self.kind == "cron":
            if (self.schedule is None) == (self.every_seconds is None):
                errors.append(("", "cron needs exactly one of 'schedule' or 'every_seconds'"))
        else:
            errors += [
                (f, "only allowed when kind is 'cron'")
                for f in ("schedule", "every_seconds")
                if getattr(self, f) is not None
            ]
        _raise_rules(errors)
        return self


class JobRef(_Model):
    job: str
    output: Annotated[int, Field(ge=0)] = 0


class DatasetRef(_Model):
    dataset: DatasetName


def _from_form(value: Any) -> str | None:
    if isinstance(value, JobRef | DatasetRef):
        return type(value).__name__
    if isinstance(value, dict) and ("job" in value) != ("dataset" in value):
        return "JobRef" if "job" in value else "DatasetRef"
    return None


FromRef = Annotated[
    Annotated[JobRef, Tag("JobRef")] | Annotated[DatasetRef, Tag("DatasetRef")],
    Discriminator(
        _from_form,
        custom_error_type="from_form",
        custom_error_message="needs exactly one of 'job' or 'dataset'",
    ),
]


class InputSpec(_Model):
    from_: FromRef = Field(alias="from")
    where: dict[NonEmptyStr, Annotated[str | int | bool, PlainValidator(_where_value)]] = {}


class PublishSpec(_Model):
    job: str
    output: Annotated[int, Field(ge=0)] = 0
    read_roles: list[Literal["admin", "member", "viewer"]] = ["admin", "member", "viewer"]
    storage: Literal["none", "hot_table", "parquet", "jsonl"] = "none"


class JobDefaults(_Model):
    runtime: Runtime | None = None
    max_attempts: MaxAttempts | None = None
    timeout_seconds: PositiveInt | None = None
    heartbeat_timeout_seconds: PositiveInt | None = None
    execution_strategy: ExecutionStrategy | None = None
    update_strategy: UpdateStrategy | None = None
    scaling: ScalingSpec | None = None


class JobSpec(_Model):
    name: Name
    activation: Literal["source", "reactive", "manual"]
    runtime: Runtime = "platform"
    operator: Annotated[str, StringConstraints(pattern=OPERATOR_RE)]
    outputs: Annotated[int, Field(ge=0, le=16)] = 1
    inputs: list[InputSpec] = []
    execution_strategy: ExecutionStrategy = "PerPartition"
    update_strategy: UpdateStrategy = "append"
    unique_key: Annotated[list[NonEmptyStr] | None, BeforeValidator(_one_item_list)] = None
    source: SourceSpec | None = None
    config: dict[str, Any] = {}
    scaling: ScalingSpec | None = None
    timeout_seconds: PositiveInt | None = None
    heartbeat_timeout_seconds: PositiveInt | None = None
    max_attempts: MaxAttempts | None = None  # None: platform default
    secrets: list[Annotated[str, StringConstraints(pattern=SECRET_RE)]] = []
    udf: UdfSpec | None = None

    @field_validator("config")
    @classmethod
    def _json_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        if problem := _json_problem(value):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _job_rules(self) -> "JobSpec":
        errors: list[tuple[str, str]] = []
        if self.activation == "source":
            if self.source is None:
                errors.append(("source", "required when activation is 'source'"))
            if self.inputs:
                errors.append(("inputs", "source jobs cannot have inputs"))
        elif self.source is not None:
            errors.append(("source", "only allowed when activation is 'source'"))
        if self.activation == "reactive" and not self.inputs:
            errors.append(("inputs", "reactive jobs need at least one input"))
        if self.update_strategy == "append" and self.outputs > 0 and not self.unique_key:
            errors.append(("unique_key", "required when update_strategy is 'append'"))
        if self.runtime == "udf" and self.udf is None:
            errors.append(("udf", "required when runtime is 'udf'"))
        elif self.runtime != "udf" and self.udf is not None:
            errors.append(("udf", "only allowed when runtime is 'udf'"))
        errors += operator_config_problems(self.operator, self.config, self.runtime)
        _raise_rules(errors)
        return self


class DagSpec(_Model):
    kind: Literal["dag"] = "dag"
    name: Name
    description: str = ""
    defaults: JobDefaults = JobDefaults()
    jobs: Annotated[list[JobSpec], Field(min_length=1)]
    publish: dict[DatasetName, PublishSpec] = {}

    def job(self, name: str) -> JobSpec:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        """Copy valid ``defaults`` into every job that does not set the field itself."""
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
            return data
        try:
            defaults = JobDefaults.model_validate(data.get("defaults") or {})
        except ValidationError:
            return data  # reported once, against `defaults`, by normal validation
        fill = defaults.model_dump(exclude_none=True)
        jobs = [{**fill, **job} if isinstance(job, dict) else job for job in data["jobs"]]
        return {**data, "jobs": jobs}

    @model_validator(mode="after")
    def _graph_rules(self) -> "DagSpec":
        errors: list[tuple[str, str]] = []
        index: dict[str, int] = {}
        for i, job in enumerate(self.jobs):
            if job.name in index:
                first = index[job.name]
                errors.append((f"jobs[{i}].name", f"duplicate job name (first in jobs[{first}])"))
            else:
                index[job.name] = i

        def check_ref(path: str, name: str, output: int, reader: str | None = None) -> bool:
            if name not in index:
                errors.append((f"{path}.job", f"no job named '{name}'"))
                return False
            if name == reader:
                errors.append((f"{path}.job", "a job cannot read its own output"))
                return False
            n = self.jobs[index[name]].outputs
            if output >= n:
                msg = f"output {output} out of range: job '{name}' has {n} output{'s' * (n != 1)}"
                errors.append((f"{path}.output", msg))
            return True

        upstream: dict[str, list[tuple[str, str]]] = {}  # reader -> [(upstream job, error path)]
        for i, job in enumerate(self.jobs):
            for k, inp in enumerate(job.inputs):
                ref, path = inp.from_, f"jobs[{i}].inputs[{k}].from"
                ok = isinstance(ref, JobRef) and check_ref(path, ref.job, ref.output, job.name)
                if ok and index[job.name] == i:  # a duplicate name is already an error
                    upstream.setdefault(job.name, []).append((ref.job, f"{path}.job"))
        errors += _cycles(index, upstream)

        published: dict[tuple[str, int], str] = {}
        for dataset, pub in self.publish.items():
            if check_ref(f"publish.{dataset}", pub.job, pub.output):
                if (pub.job, pub.output) in published:
                    other = published[(pub.job, pub.output)]
                    msg = f"job '{pub.job}' output {pub.output} is already published as '{other}'"
                    errors.append((f"publish.{dataset}", msg))
                else:
                    published[(pub.job, pub.output)] = dataset
        _raise_rules(errors)
        return self


def _cycles(jobs: dict[str, int], upstream: dict[str, list[tuple[str, str]]]) -> list[Any]:
    """Depth-first search along inputs; each back edge is reported as a data-flow cycle."""
    errors: list[tuple[str, str]] = []
    state: dict[str, str] = {}  # "active" while on the DFS path, then "done"
    for root in jobs:
        if root in state:
            continue
        state[root], path, stack = "active", [root], [iter(upstream.get(root, ()))]
        while stack:
            edge = next(stack[-1], None)
            if edge is None:
                state[path.pop()] = "done"
                stack.pop()
            elif state.get(edge[0]) == "active":  # path[j] reads path[j+1]; the last reads edge[0]
                loop = path[path.index(edge[0]) :]
                cycle = [loop[0], *reversed(loop[1:]), loop[0]]
                errors.append((edge[1], "cycle " + " -> ".join(cycle)))
            elif edge[0] not in state:
                state[edge[0]] = "active"
                path.append(edge[0])
                stack.append(iter(upstream.get(edge[0], ())))
    return errors


# --- error formatting -----------------------------------------------------------------------
_INTERNAL_SEGMENT = re.compile(r"^(?:\[key\]|[a-z-]+\[.*\]|JobRef|DatasetRef)$")
_MESSAGES = {
    "missing": "required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be a boolean",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "string_too_short": "must not be empty",
    "greater_than_equal": "must be >= {ge}",
    "less_than_equal": "must be <= {le}",
    "too_short": "must have at least {min_length} items",
    "string_pattern_mismatch": "must match {pattern}",
}


def _join(path: str, sub: str) -> str:
    if not path or not sub:
        return path or sub
    return path + sub if sub.startswith("[") else f"{path}.{sub}"


def _message(err: Any) -> str:
    kind, ctx, loc = err["type"], err.get("ctx") or {}, err["loc"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        reserved = key.startswith("_") or key in RESERVED_FIELDS
        return "reserved field" if reserved else "unknown field"
    if kind == "invalid_key":
        return f"key {err['input']!r} must be a string"
    if kind == "literal_error":
        return "must be one of " + ", ".join(re.findall(r"'[^']*'", ctx.get("expected", "")))
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == SECRET_RE:
        return f"must be a secret name matching {SECRET_RE}, never a secret value"
    if kind in _MESSAGES:
        return _MESSAGES[kind].format(**ctx)
    return err["msg"].removeprefix("Value error, ")


def format_validation_errors(exc: ValidationError) -> list[str]:
    out: list[str] = []
    for err in exc.errors():
        path, is_key = "", False
        for seg in err["loc"][:-1] if err["type"] == "invalid_key" else err["loc"]:
            if isinstance(seg, int):
                path += f"[{seg}]"
            elif seg == "[key]":
                is_key = True
            elif not _INTERNAL_SEGMENT.match(seg):
                path = _join(path, seg)
        if err["type"] == "dag_rules":
            out += [f"{_join(path, sub) or 'dag'}: {msg}" for sub, msg in err["ctx"]["errors"]]
        else:
            out.append(f"{path or 'dag'}: {'key ' if is_key else ''}{_message(err)}")
    return list(dict.fromkeys(out))


# --- YAML -----------------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and keeps unquoted dates as strings."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges may be overridden by explicit keys
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # unhashable key: SafeLoader reports it
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first defined at line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_strict_yaml(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if problem.startswith("but ") and exc.context:  # e.g. a second document in the stream
            problem = f"{exc.context}, {problem}"
        raise DagSpecError([f"yaml: {problem}{where}"]) from exc
    except yaml.YAMLError as exc:
        raise DagSpecError([f"yaml: {exc}"]) from exc
    finally:
        loader.dispose()


# --- public API -----------------------------------------------------------------------------
def parse_dag_yaml(text: str) -> DagSpec:
    """YAML text -> validated, resolved ``DagSpec``; raises ``DagSpecError``."""
    data = load_strict_yaml(text)
    if data is None:
        raise DagSpecError(["yaml: document is empty"])
    if not isinstance(data, dict):
        raise DagSpecError([f"yaml: document must be a mapping, got {type(data).__name__}"])
    return parse_dag_dict(data)


def parse_dag_dict(data: object) -> DagSpec:
    """Already-loaded mapping -> validated, resolved ``DagSpec``; raises ``DagSpecError``."""
    name = data.get("name") if isinstance(data, dict) else None
    name = name if isinstance(name, str) else None
    if isinstance(data, dict) and data.get("kind", "dag") != "dag":
        kind = data["kind"]
        hint = " (apply it with `manage.py chain_sync apply FILE`)" if kind == "chain_sync" else ""
        raise DagSpecError([f"kind: unsupported kind {kind!r} (expected 'dag'){hint}"], name)
    try:
        return DagSpec.model_validate(data)
    except ValidationError as exc:
        raise DagSpecError(format_validation_errors(exc), name) from exc


def canonical_json(spec: DagSpec) -> str:
    """Deterministic JSON of the resolved spec: sorted keys, defaults applied, no whitespace."""
    data = spec.model_dump(mode="json", by_alias=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(spec: DagSpec) -> str:
    """sha256 hex of ``canonical_json``: equal for equal content, whatever the YAML layout."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()
