"""Parse and strictly validate DAG YAML documents (docs/orchestration.md, "DAG YAML").

Pure Python (pydantic, PyYAML, stdlib, the operator registry): no Django imports, so it can run
anywhere. Structure and types are pydantic models (`trace_operators.validation`); the rules that
span fields (activation and source, strategies, udf, each operator's own config, the graph of
edges and publications) are functions over the raw document that run even when fields are
invalid, so one answer lists every problem. Entry points: ``parse_dag_yaml`` /
``parse_dag_dict`` return a frozen, fully resolved ``DagSpec`` (job defaults applied) or raise
``DagSpecError`` listing every problem as ``field.path: message``. ``canonical_json`` /
``content_hash`` identify a spec by content, independent of YAML formatting.
"""

import hashlib
import json
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    PlainValidator,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
)

from trace_operators.registry import operator_config_problems, operator_pins_bundle
from trace_operators.validation import (
    INT_MAX,
    JSON_MAX_DEPTH,
    PATTERN_MESSAGES,
    Problem,
    Problems,
    StrictModel,
    as_dict,
    as_int,
    as_list,
    join_path,
    json_problems,
    validate,
)

NAME_RE = r"^[a-z][a-z0-9_-]{0,99}$"
DATASET_RE = r"^[a-z][a-z0-9_.-]{0,199}$"
OPERATOR_RE = r"^[a-z][a-z0-9_]{0,63}$"
SECRET_RE = r"^[A-Z][A-Z0-9_]{0,99}$"  # noqa: S105 - a name pattern, not a secret
PATTERN_MESSAGES[SECRET_RE] = f"must be a secret name matching {SECRET_RE}, never a secret value"

# Upper bounds: every number lands in a database column (and a timer) when the DAG is
# activated, so a value too large is refused here with its path, not later by Postgres.
MAX_TIMEOUT_SECONDS = 30 * 24 * 3600
MAX_HEARTBEAT_TIMEOUT_SECONDS = 24 * 3600
MAX_EVERY_SECONDS = 366 * 24 * 3600
MAX_CONCURRENCY = 10_000
MAX_OUTPUTS = 16
MAX_JOBS = 5000

Name = Annotated[str, StringConstraints(pattern=NAME_RE)]
DatasetName = Annotated[str, StringConstraints(pattern=DATASET_RE)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=10_000)]
PositiveInt = Annotated[int, Field(ge=1, le=INT_MAX)]
TimeoutSeconds = Annotated[int, Field(ge=1, le=MAX_TIMEOUT_SECONDS)]
HeartbeatTimeoutSeconds = Annotated[int, Field(ge=1, le=MAX_HEARTBEAT_TIMEOUT_SECONDS)]
MaxAttempts = Annotated[int, Field(ge=1, le=100)]
OutputIndex = Annotated[int, Field(ge=0, lt=MAX_OUTPUTS)]
Runtime = Literal["platform", "udf", "dispatcher"]
RUNTIMES = ("platform", "udf", "dispatcher")
ExecutionStrategy = Literal["PerUpdate", "PerPartition"]
UpdateStrategy = Literal["append", "replace"]
DEFAULT_UPDATE_STRATEGY = "replace"


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


def _where_value(value: Any) -> str | int | bool:
    if isinstance(value, str | int):  # bool is an int
        return value
    raise ValueError("must be a string, integer or boolean")


def _one_item_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# --- models: structure and types only (rules are below) ----------------------------------------
class ScalingSpec(StrictModel):
    max_concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)]


class UdfSpec(StrictModel):
    bundle: NonEmptyStr
    entrypoint: NonEmptyStr = "main"


class SourceSpec(StrictModel):
    kind: Literal["cron", "webhook", "manual", "always_on"]
    schedule: Annotated[str, StringConstraints(max_length=200)] | None = None
    every_seconds: Annotated[int, Field(ge=1, le=MAX_EVERY_SECONDS)] | None = None

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if problem := _cron_problem(value):
            raise ValueError(problem)
        return " ".join(value.split())


class JobRef(StrictModel):
    job: str
    output: Annotated[int, Field(ge=0)] = 0


class DatasetRef(StrictModel):
    dataset: DatasetName


def _from_form(value: Any) -> str | None:
    if isinstance(value, JobRef | DatasetRef):
        return f"<{type(value).__name__}>"
    if isinstance(value, dict) and ("job" in value) != ("dataset" in value):
        return "<JobRef>" if "job" in value else "<DatasetRef>"
    return None


FromRef = Annotated[
    Annotated[JobRef, Tag("<JobRef>")] | Annotated[DatasetRef, Tag("<DatasetRef>")],
    Discriminator(
        _from_form,
        custom_error_type="from_form",
        custom_error_message="needs exactly one of 'job' or 'dataset'",
    ),
]


class InputSpec(StrictModel):
    from_: FromRef = Field(alias="from")
    where: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=100)],
        Annotated[str | int | bool, PlainValidator(_where_value)],
    ] = {}


class PublishSpec(StrictModel):
    job: str
    output: Annotated[int, Field(ge=0)] = 0
    read_roles: list[Literal["admin", "member", "viewer"]] = ["admin", "member", "viewer"]
    storage: Literal["none", "hot_table", "parquet", "jsonl"] = "none"


class JobDefaults(StrictModel):
    runtime: Runtime | None = None
    max_attempts: MaxAttempts | None = None
    timeout_seconds: TimeoutSeconds | None = None
    heartbeat_timeout_seconds: HeartbeatTimeoutSeconds | None = None
    execution_strategy: ExecutionStrategy | None = None
    update_strategy: UpdateStrategy | None = None
    scaling: ScalingSpec | None = None


class JobSpec(StrictModel):
    name: Name
    activation: Literal["source", "reactive", "manual"]
    runtime: Runtime = "platform"
    operator: Annotated[str, StringConstraints(pattern=OPERATOR_RE)]
    outputs: Annotated[int, Field(ge=0, le=MAX_OUTPUTS)] = 1
    inputs: Annotated[list[InputSpec], Field(max_length=100)] = []
    execution_strategy: ExecutionStrategy = "PerPartition"
    update_strategy: UpdateStrategy = DEFAULT_UPDATE_STRATEGY
    unique_key: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] | None,
        BeforeValidator(_one_item_list),
    ] = None
    source: SourceSpec | None = None
    config: dict[str, Any] = {}
    scaling: ScalingSpec | None = None
    timeout_seconds: TimeoutSeconds | None = None
    heartbeat_timeout_seconds: HeartbeatTimeoutSeconds | None = None
    max_attempts: MaxAttempts | None = None  # None: platform default
    secrets: list[Annotated[str, StringConstraints(pattern=SECRET_RE)]] = []
    udf: UdfSpec | None = None


class DagSpec(StrictModel):
    kind: Literal["dag"] = "dag"
    name: Name
    description: ShortText = ""
    defaults: JobDefaults = JobDefaults()
    jobs: Annotated[list[JobSpec], Field(min_length=1, max_length=MAX_JOBS)]
    publish: dict[DatasetName, PublishSpec] = {}

    def job(self, name: str) -> JobSpec:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)


def with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The document with valid ``defaults`` copied into every job that does not set the field
    itself (invalid defaults are reported once, against `defaults`, and not applied)."""
    if not isinstance(data.get("jobs"), list):
        return data
    try:
        defaults = JobDefaults.model_validate(data.get("defaults") or {})
    except ValidationError:
        return data
    fill = defaults.model_dump(exclude_none=True)
    jobs = [{**fill, **job} if isinstance(job, dict) else job for job in data["jobs"]]
    return {**data, "jobs": jobs}


# --- rules: over the raw document, so they are reported beside any field error ---------------
def _job_rules(job: dict[str, Any]) -> list[Problem]:
    errors: list[Problem] = []
    activation, inputs = job.get("activation"), as_list(job.get("inputs"))
    if activation == "source":
        if job.get("source") is None:
            errors.append(("source", "required when activation is 'source'"))
        if inputs:
            errors.append(("inputs", "source jobs cannot have inputs"))
    elif job.get("source") is not None:
        errors.append(("source", "only allowed when activation is 'source'"))
    if activation == "reactive" and not inputs and not isinstance(job.get("inputs"), dict):
        errors.append(("inputs", "reactive jobs need at least one input"))
    strategy = job.get("update_strategy", DEFAULT_UPDATE_STRATEGY)
    outputs = as_int(job.get("outputs", 1))
    if strategy == "append" and outputs != 0 and not job.get("unique_key"):
        errors.append(("unique_key", "required when update_strategy is 'append'"))
    elif strategy == "replace" and job.get("unique_key"):
        errors.append(
            (
                "unique_key",
                "only allowed when update_strategy is 'append' (replace-style outputs are "
                "rewritten per partition); add `update_strategy: append` to keep rows by key",
            )
        )
    runtime = job.get("runtime", "platform")
    if as_dict(job.get("source")).get("kind") == "always_on" and runtime != "platform":
        # Always-running sources get the stream pool, which runs trusted code only; on the
        # udf or dispatcher pool one would hold a slot for ever.
        errors.append(("runtime", "an always_on source runs only in the 'platform' runtime"))
    if runtime == "udf" and job.get("udf") is None and operator_pins_bundle(job.get("operator")):
        errors.append(("udf", "required when runtime is 'udf'"))
    elif runtime != "udf" and job.get("udf") is not None:
        errors.append(("udf", "only allowed when runtime is 'udf'"))
    source = job.get("source")
    if isinstance(source, dict):
        errors += [(join_path("source", p), m) for p, m in _source_rules(source)]
    operator = job.get("operator")
    if isinstance(operator, str) and re.match(OPERATOR_RE, operator):
        known_runtime = runtime if runtime in RUNTIMES else None
        errors += operator_config_problems(operator, job.get("config", {}), known_runtime)
    return errors


def _source_rules(source: dict[str, Any]) -> list[Problem]:
    present = [f for f in ("schedule", "every_seconds") if source.get(f) is not None]
    if source.get("kind") == "cron":
        if len(present) != 1:
            return [("", "cron needs exactly one of 'schedule' or 'every_seconds'")]
        return []
    if source.get("kind") in ("webhook", "manual", "always_on"):
        return [(f, "only allowed when kind is 'cron'") for f in present]
    return []


def _dag_rules(data: dict[str, Any]) -> list[Problem]:
    """Every rule of the document; `data` has its defaults applied."""
    errors: list[Problem] = json_problems(data)  # what the database could not store
    jobs = as_list(data.get("jobs"))
    for i, job in enumerate(jobs):
        if isinstance(job, dict):
            errors += [(join_path(f"jobs[{i}]", p), m) for p, m in _job_rules(job)]
    return errors + _graph_rules(jobs, as_dict(data.get("publish")))


def _graph_rules(jobs: list[Any], publish: dict[str, Any]) -> list[Problem]:
    """Names, edges, cycles and publications, on whatever of them parsed."""
    errors: list[Problem] = []
    index: dict[str, int] = {}
    outputs: dict[str, int | None] = {}
    for i, job in enumerate(jobs):
        name = as_dict(job).get("name")
        if not isinstance(name, str):
            continue
        if name in index:
            errors.append((f"jobs[{i}].name", f"duplicate job name (first in jobs[{index[name]}])"))
        else:
            index[name] = i
            outputs[name] = as_int(job.get("outputs", 1))

    def check_ref(path: str, ref: dict[str, Any], reader: str | None = None) -> str | None:
        name, output = ref.get("job"), as_int(ref.get("output", 0))
        if not isinstance(name, str):
            return None
        if name not in index:
            errors.append((f"{path}.job", f"no job named '{name}'"))
            return None
        if name == reader:
            errors.append((f"{path}.job", "a job cannot read its own output"))
            return None
        n = outputs[name]
        if n is not None and output is not None and output >= n:
            msg = f"output {output} out of range: job '{name}' has {n} output{'s' * (n != 1)}"
            errors.append((f"{path}.output", msg))
        return name

    upstream: dict[str, list[tuple[str, str]]] = {}  # reader -> [(upstream job, error path)]
    for i, job in enumerate(jobs):
        reader = as_dict(job).get("name")
        for k, inp in enumerate(as_list(as_dict(job).get("inputs"))):
            ref, path = as_dict(as_dict(inp).get("from")), f"jobs[{i}].inputs[{k}].from"
            if "job" not in ref or "dataset" in ref:
                continue
            name = check_ref(path, ref, reader if isinstance(reader, str) else None)
            if name and isinstance(reader, str) and index.get(reader) == i:
                upstream.setdefault(reader, []).append((name, f"{path}.job"))
    errors += _cycles(index, upstream)

    published: dict[tuple[str, int], str] = {}
    for dataset, pub in publish.items():
        pub = as_dict(pub)
        name = check_ref(f"publish.{dataset}", pub)
        output = as_int(pub.get("output", 0))
        if name is None or output is None:
            continue
        if (name, output) in published:
            other = published[(name, output)]
            msg = f"job '{name}' output {output} is already published as '{other}'"
            errors.append((f"publish.{dataset}", msg))
        else:
            published[(name, output)] = dataset
    return errors


def _cycles(jobs: dict[str, int], upstream: dict[str, list[tuple[str, str]]]) -> list[Problem]:
    """Depth-first search along inputs; each back edge is reported as a data-flow cycle."""
    errors: list[Problem] = []
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


def _document_order(problem: Problem) -> tuple[int, int]:
    """Errors are listed by where they are in the document: top-level fields, then each job
    in order, then publications; within one place structural errors come before rules."""
    path = problem[0]
    if match := re.match(r"^jobs\[(\d+)\]", path):
        return 1, int(match.group(1))
    return (2, 0) if path.startswith("publish") else (0, 0)


# --- YAML -----------------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, keeps unquoted dates as strings and refuses
    nesting deeper than JSON_MAX_DEPTH before it costs the composer's recursion."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > JSON_MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {JSON_MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

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
    """One YAML document as plain JSON values; DagSpecError naming the problem (with its line,
    or its field path for a value Postgres could not store)."""
    loader = None
    try:
        loader = _StrictLoader(text)  # the reader refuses unprintable characters right here
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if problem.startswith("but ") and exc.context:  # e.g. a second document in the stream
            problem = f"{exc.context}, {problem}"
        raise DagSpecError([f"yaml: {problem}{where}"]) from exc
    except yaml.YAMLError as exc:
        raise DagSpecError([f"yaml: {exc}"]) from exc
    except RecursionError:  # aliases of aliases nest without nesting the text
        raise DagSpecError([f"yaml: nested more than {JSON_MAX_DEPTH} levels deep"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if problems := json_problems(data):
        raise DagSpecError([f"{path or 'yaml'}: {message}" for path, message in problems])
    return data


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
    """Already-loaded mapping -> validated, resolved ``DagSpec``; raises ``DagSpecError`` with
    every structural, rule and graph error at once, in document order."""
    name = data.get("name") if isinstance(data, dict) else None
    name = name if isinstance(name, str) else None
    if isinstance(data, dict) and data.get("kind", "dag") != "dag":
        kind = data["kind"]
        hint = " (apply it with `manage.py chain_sync apply FILE`)" if kind == "chain_sync" else ""
        raise DagSpecError([f"kind: unsupported kind {kind!r} (expected 'dag'){hint}"], name)
    resolved = with_defaults(data) if isinstance(data, dict) else data
    try:
        return validate(DagSpec, resolved, rules=_dag_rules)
    except Problems as exc:
        problems = sorted(exc.problems, key=_document_order)
        lines = [f"{path or 'dag'}: {message}" for path, message in problems]
        raise DagSpecError(list(dict.fromkeys(lines)), name) from exc


def canonical_json(spec: DagSpec) -> str:
    """Deterministic JSON of the resolved spec: sorted keys, defaults applied, no whitespace."""
    data = spec.model_dump(mode="json", by_alias=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(spec: DagSpec) -> str:
    """sha256 hex of ``canonical_json``: equal for equal content, whatever the YAML layout."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()
