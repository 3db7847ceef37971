"""Unit tests for trace_web.orchestration.dag_spec (pure Python: no Django, no database)."""

import copy
import json
import pickle
import textwrap

import pytest
from pydantic import ValidationError

from trace_operators.registry import OPERATORS
from trace_web.orchestration.dag_spec import (
    DagSpec,
    DagSpecError,
    DatasetRef,
    JobRef,
    canonical_json,
    content_hash,
    parse_dag_dict,
    parse_dag_yaml,
)

NOOP_YAML = """
name: noop
description: two no-op jobs
jobs:
  - name: a
    activation: manual
    operator: noop
    update_strategy: append
    unique_key: id
  - name: b
    activation: reactive
    operator: noop
    update_strategy: append
    unique_key: [id]
    inputs:
      - from: {job: a}
publish:
  noop.out: {job: b}
"""


def job(name="a", **fields):
    """A valid manual job; keyword arguments override or add fields (None removes one)."""
    out = {"name": name, "activation": "manual", "operator": "noop"}
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


def reactive(name, *sources, **fields):
    inputs = [{"from": {"job": s}} for s in sources]
    return job(name, activation="reactive", inputs=inputs, **fields)


def dag(*jobs, **top):
    return {"name": "d", "jobs": list(jobs) or [job()], **top}


def errors(data):
    """The error list for an invalid document (YAML text or an already-loaded mapping)."""
    with pytest.raises(DagSpecError) as info:
        parse_dag_yaml(textwrap.dedent(data)) if isinstance(data, str) else parse_dag_dict(data)
    return info.value.errors


# --- valid documents ------------------------------------------------------------------------
def test_minimal_dag_is_resolved():
    spec = parse_dag_yaml(
        "name: m\njobs:\n  - {name: a, activation: manual, operator: noop, outputs: 0}\n"
    )
    assert isinstance(spec, DagSpec)
    assert (spec.kind, spec.name, spec.description, spec.publish) == ("dag", "m", "", {})
    a = spec.job("a")
    assert a.runtime == "platform"
    assert a.execution_strategy == "PerPartition"
    assert a.update_strategy == "replace"
    assert a.outputs == 0
    assert a.inputs == [] and a.config == {} and a.secrets == []
    assert a.max_attempts is None and a.timeout_seconds is None and a.scaling is None
    assert a.unique_key is None and a.source is None and a.udf is None


def test_noop_two_job_dag_with_edge():
    spec = parse_dag_yaml(NOOP_YAML)
    assert [j.name for j in spec.jobs] == ["a", "b"]
    edge = spec.job("b").inputs[0]
    assert edge.from_ == JobRef(job="a", output=0)
    assert edge.where == {}
    assert spec.job("a").unique_key == ["id"]  # single string normalised to a list
    pub = spec.publish["noop.out"]
    assert (pub.job, pub.output, pub.storage) == ("b", 0, "none")
    assert pub.read_roles == ["admin", "member", "viewer"]
    with pytest.raises(KeyError):
        spec.job("missing")


def test_spec_is_frozen():
    spec = parse_dag_yaml(NOOP_YAML)
    with pytest.raises(ValidationError):
        spec.name = "other"
    with pytest.raises(ValidationError):
        spec.jobs[0].runtime = "udf"


def test_defaults_are_applied_and_jobs_override_them():
    spec = parse_dag_dict(
        dag(
            job("a", unique_key=None),
            job("b", max_attempts=2, update_strategy="append", unique_key="id"),
            job("c", unique_key=None, timeout_seconds=None),
            job("d", unique_key=None, max_attempts=None),
            defaults={
                "update_strategy": "replace",
                "max_attempts": 7,
                "timeout_seconds": 60,
                "heartbeat_timeout_seconds": 10,
                "execution_strategy": "PerUpdate",
                "runtime": "dispatcher",
                "scaling": {"max_concurrency": 4},
            },
        )
    )
    a, b = spec.job("a"), spec.job("b")
    assert a.update_strategy == "replace" and b.update_strategy == "append"
    assert a.max_attempts == 7 and b.max_attempts == 2
    assert a.timeout_seconds == 60 and a.heartbeat_timeout_seconds == 10
    assert a.execution_strategy == "PerUpdate" and a.runtime == "dispatcher"
    assert a.scaling is not None and a.scaling.max_concurrency == 4
    assert spec.defaults.max_attempts == 7


def test_explicit_null_in_job_means_platform_default():
    data = dag(job("a", max_attempts=None), defaults={"max_attempts": 5})
    data["jobs"][0]["max_attempts"] = None
    assert parse_dag_dict(data).job("a").max_attempts is None


def test_invalid_defaults_reported_once():
    assert errors(dag(job("a"), job("b"), defaults={"max_attempts": 0})) == [
        "defaults.max_attempts: must be >= 1"
    ]


def test_append_rule_uses_resolved_strategy():
    assert errors(dag(job("a", unique_key=None), defaults={"update_strategy": "append"})) == [
        "jobs[0].unique_key: required when update_strategy is 'append'"
    ]
    spec = parse_dag_dict(dag(job("a", unique_key=None), defaults={"update_strategy": "replace"}))
    assert spec.job("a").update_strategy == "replace"


def test_append_without_unique_key_rejected_but_not_for_replace_or_no_outputs():
    assert errors(dag(job("a", update_strategy="append"))) == [
        "jobs[0].unique_key: required when update_strategy is 'append'"
    ]
    assert errors(dag(job("a", update_strategy="append", unique_key=[]))) == [
        "jobs[0].unique_key: required when update_strategy is 'append'"
    ]
    parse_dag_dict(dag(job("a", update_strategy="replace")))
    parse_dag_dict(dag(job("a", update_strategy="append", outputs=0)))


def test_default_update_strategy_is_replace_and_a_unique_key_needs_append():
    spec = parse_dag_yaml("name: m\njobs:\n  - {name: a, activation: manual, operator: noop}\n")
    assert spec.job("a").update_strategy == "replace" and spec.job("a").outputs == 1
    # A unique key without append would silently mean nothing: refused, saying what to add.
    (error,) = errors(dag(job("a", unique_key="id")))
    assert error.startswith("jobs[0].unique_key: only allowed when update_strategy is 'append'")
    assert "add `update_strategy: append`" in error


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timeout_seconds", 30 * 24 * 3600 + 1, "must be <= 2592000"),
        ("heartbeat_timeout_seconds", 24 * 3600 + 1, "must be <= 86400"),
        ("scaling", {"max_concurrency": 10**20}, "must be <= 10000"),
        ("source", {"kind": "cron", "every_seconds": 99999999999999999999}, "must be <= 31622400"),
        ("max_attempts", 10**30, "must be <= 100"),
        ("description", "x" * 10_001, "must be at most 10000 characters"),
    ],
)
def test_numbers_and_texts_have_upper_bounds(field, value, message):
    fields = {"activation": "source"} if field == "source" else {}
    data = dag(job("a", **fields, **({} if field == "description" else {field: value})))
    if field == "description":
        data["description"] = value
    (error,) = errors(data)
    assert error.endswith(message)


def test_values_postgres_cannot_store_are_refused_with_their_path():
    assert errors(
        'name: d\ndescription: "\\ud800"\njobs: [{name: a, activation: manual, '
        'operator: noop, config: {k: "a\\0b"}}]\n'
    ) == [
        "description: text may not contain unpaired surrogates",
        "jobs[0].config.k: text may not contain NUL (\\u0000)",
    ]


def test_yaml_nested_deeper_than_the_limit_is_refused_without_recursion():
    deep = "name: d\njobs: [{name: a, activation: manual, operator: noop, config: {x: "
    (error,) = errors(deep + "[" * 20_000 + "]" * 20_000 + "}}]\n")
    assert error.startswith("yaml: nested more than 64 levels deep at line 2")
    block = "".join(f"{'  ' * i}k{i}:\n" for i in range(2_000)) + "  " * 2_000 + "v: 1\n"
    (error,) = errors("name: d\n" + block)
    assert error.startswith("yaml: nested more than 64 levels deep")


def test_full_job_fields_accepted():
    spec = parse_dag_dict(
        dag(
            job(
                "ingest",
                activation="source",
                runtime="udf",
                outputs=3,
                source={"kind": "cron", "schedule": "0  3 * *  1-5"},
                udf={"bundle": "bundles/ingest.zip"},
                secrets=["RPC_URL", "API_KEY_2"],
                config={"id": 1, "_private": {"nested": [1, 2.5, None, True]}, "status": "x"},
                scaling={"max_concurrency": 2},
                timeout_seconds=30,
                heartbeat_timeout_seconds=5,
                max_attempts=100,
            ),
            reactive("use", "ingest", execution_strategy="PerUpdate"),
        )
    )
    ingest = spec.job("ingest")
    assert ingest.udf is not None and ingest.udf.entrypoint == "main"
    assert ingest.source is not None and ingest.source.schedule == "0 3 * * 1-5"  # normalised
    assert ingest.config["_private"]["nested"] == [1, 2.5, None, True]
    assert ingest.secrets == ["RPC_URL", "API_KEY_2"]


def test_dataset_input_and_where_filter():
    spec = parse_dag_dict(
        dag(
            job(
                "a",
                activation="reactive",
                inputs=[
                    {
                        "from": {"dataset": "eth.blocks"},
                        "where": {"chain": "eth", "n": 1, "ok": True},
                    }
                ],
            )
        )
    )
    inp = spec.job("a").inputs[0]
    assert inp.from_ == DatasetRef(dataset="eth.blocks")
    assert inp.where == {"chain": "eth", "n": 1, "ok": True}


def test_manual_jobs_may_have_inputs():
    parse_dag_dict(dag(job("a"), job("b", inputs=[{"from": {"job": "a"}}])))


def test_kind_dag_accepted_and_other_kinds_rejected_clearly():
    assert parse_dag_dict(dag(kind="dag")).kind == "dag"
    assert errors(dag(kind="chain_sync", chain="eth", streams={})) == [
        "kind: unsupported kind 'chain_sync' (expected 'dag') "
        "(apply it with `manage.py chain_sync apply FILE`)"
    ]
    assert errors(dag(kind="pipeline")) == ["kind: unsupported kind 'pipeline' (expected 'dag')"]


# --- structural errors ----------------------------------------------------------------------
def test_unknown_fields_rejected_at_every_level():
    data = dag(
        job(
            "a",
            activation="source",
            source={"kind": "webhook", "secret_header": "x"},
            scaling={"max_concurrency": 1, "burst": 2},
            colour="red",
        ),
        reactive("b", "a"),
        owner="me",
    )
    data["jobs"][1]["inputs"][0]["from"]["partition"] = 1
    data["jobs"][1]["inputs"][0]["when"] = {}
    assert sorted(errors(data)) == [
        "jobs[0].colour: unknown field",
        "jobs[0].scaling.burst: unknown field",
        "jobs[0].source.secret_header: unknown field",
        "jobs[1].inputs[0].from.partition: unknown field",
        "jobs[1].inputs[0].when: unknown field",
        "owner: unknown field",
    ]


def test_reserved_fields_rejected_except_in_config_and_where():
    data = dag(
        job("a", id=1, config={"id": 1, "_x": 2, "org": 3}),
        job("b", _hidden=True, inputs=[{"from": {"job": "a"}, "where": {"status": "ok"}}]),
        org_id=5,
        version=2,
        status="active",
        _meta={},
        defaults={"org": "x"},
    )
    assert sorted(errors(data)) == [
        "_meta: reserved field",
        "defaults.org: reserved field",
        "jobs[0].id: reserved field",
        "jobs[1]._hidden: reserved field",
        "org_id: reserved field",
        "status: reserved field",
        "version: reserved field",
    ]


def test_missing_required_fields():
    assert sorted(errors({"jobs": [{"name": "a"}]})) == [
        "jobs[0].activation: required",
        "jobs[0].operator: required",
        "name: required",
    ]
    assert errors({"name": "d"}) == ["jobs: required"]
    assert errors({"name": "d", "jobs": []}) == ["jobs: must not be empty"]


def test_literal_errors_list_the_choices():
    assert errors(dag(job("a", activation="sometimes"))) == [
        "jobs[0].activation: must be one of 'source', 'reactive', 'manual', got 'sometimes'"
    ]
    assert errors(dag(job("a", runtime="docker"))) == [
        "jobs[0].runtime: must be one of 'platform', 'udf', 'dispatcher', got 'docker'"
    ]
    assert errors(dag(job("a", execution_strategy="PerRow"))) == [
        "jobs[0].execution_strategy: must be one of 'PerUpdate', 'PerPartition', got 'PerRow'"
    ]


@pytest.mark.parametrize("name", ["", "A", "1abc", "a b", "a.b", "a" * 101, "ü"])
def test_bad_names_rejected(name):
    assert errors(dag(job(name))) == ["jobs[0].name: must match ^[a-z][a-z0-9_-]{0,99}$"]
    assert errors(dag(name=name)) == ["name: must match ^[a-z][a-z0-9_-]{0,99}$"]


def test_good_names_accepted():
    spec = parse_dag_dict(dag(job("a" * 100), job("b_2-x"), name="z9-_"))
    assert spec.name == "z9-_"


def test_operator_pattern():
    assert errors(dag(job("a", operator="Noop-1"))) == [
        "jobs[0].operator: must match ^[a-z][a-z0-9_]{0,63}$"
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("outputs", 17, "must be <= 16"),
        ("outputs", -1, "must be >= 0"),
        ("outputs", "2", "must be an integer"),
        ("outputs", True, "must be an integer"),
        ("outputs", 1.5, "must be an integer"),
        ("max_attempts", 0, "must be >= 1"),
        ("max_attempts", 101, "must be <= 100"),
        ("timeout_seconds", 0, "must be >= 1"),
        ("heartbeat_timeout_seconds", 0, "must be >= 1"),
        ("scaling", {"max_concurrency": 0}, "must be >= 1"),
        ("scaling", 3, "must be a mapping"),
        ("inputs", {"from": {"job": "b"}}, "must be a list"),
        ("config", [], "must be a mapping"),
        ("operator", 3, "must be a string"),
    ],
)
def test_field_types_and_ranges(field, value, message):
    (error,) = errors(dag(job("a", **{field: value})))
    assert error.startswith("jobs[0].") and message in error


def test_top_level_must_be_a_mapping():
    assert errors([1, 2]) == ["dag: must be a mapping"]


def test_non_string_keys_rejected():
    text = "name: d\n1: x\njobs: [{name: a, activation: manual, operator: noop, null: 0}]\n"
    assert errors(text) == ["yaml: key 1 must be a string", "jobs[0]: key None must be a string"]


def test_secrets_are_names_not_values():
    assert errors(dag(job("a", secrets=["API_KEY", "sk_live_abc123"]))) == [
        "jobs[0].secrets[1]: must be a secret name matching ^[A-Z][A-Z0-9_]{0,99}$, "
        "never a secret value"
    ]


def test_config_must_be_json():
    assert errors(dag(job("a", config={"x": {1, 2}}))) == [
        "jobs[0].config.x: unsupported value of type set: only JSON values are allowed"
    ]
    assert errors(dag(job("a", config={"x": float("nan")}))) == [
        "jobs[0].config.x: numbers must be finite"
    ]
    assert errors(dag(job("a", config={"x": {1: 2}}))) == [
        "jobs[0].config.x: key 1 must be a string"
    ]


def test_where_values_are_scalars():
    data = dag(job("a", inputs=[{"from": {"job": "b"}, "where": {"x": 1.5, "y": [1]}}]), job("b"))
    assert errors(data) == [
        "jobs[0].inputs[0].where.x: must be a string, integer or boolean",
        "jobs[0].inputs[0].where.y: must be a string, integer or boolean",
    ]


def test_udf_runtime_rules():
    assert errors(dag(job("a", runtime="udf"))) == ["jobs[0].udf: required when runtime is 'udf'"]
    assert errors(dag(job("a", udf={"bundle": "b.zip"}))) == [
        "jobs[0].udf: only allowed when runtime is 'udf'"
    ]
    assert errors(dag(job("a"), defaults={"runtime": "udf"})) == [
        "jobs[0].udf: required when runtime is 'udf'"
    ]
    assert errors(dag(job("a", runtime="udf", udf={"bundle": ""}))) == [
        "jobs[0].udf.bundle: must not be empty"
    ]


# --- activation / source rules --------------------------------------------------------------
def test_source_activation_requires_source():
    assert errors(dag(job("a", activation="source"))) == [
        "jobs[0].source: required when activation is 'source'"
    ]


@pytest.mark.parametrize("activation", ["manual", "reactive"])
def test_source_forbidden_unless_activation_source(activation):
    data = dag(job("a", outputs=0), job("b", activation=activation, source={"kind": "manual"}))
    data["jobs"][1]["inputs"] = [{"from": {"job": "a"}}]
    assert errors(data) == [
        "jobs[1].source: only allowed when activation is 'source'",
        # reported beside it, not hidden by it: job a has no outputs to read
        "jobs[1].inputs[0].from.output: output 0 out of range: job 'a' has 0 outputs",
    ]


@pytest.mark.parametrize("runtime", ["udf", "dispatcher"])
def test_always_on_sources_run_only_in_the_platform_runtime(runtime):
    extra = {"udf": {"bundle": "b"}} if runtime == "udf" else {}
    data = dag(
        job("a", activation="source", source={"kind": "always_on"}, runtime=runtime, **extra)
    )
    assert errors(data) == [
        "jobs[0].runtime: an always_on source runs only in the 'platform' runtime"
    ]
    parse_dag_dict(dag(job("a", activation="source", source={"kind": "always_on"})))


def test_source_jobs_have_no_inputs():
    src = {"kind": "webhook"}
    data = dag(job("a"), job("b", activation="source", source=src, inputs=[{"from": {"job": "a"}}]))
    assert errors(data) == ["jobs[1].inputs: source jobs cannot have inputs"]


def test_reactive_jobs_need_inputs():
    assert errors(dag(job("a", activation="reactive"))) == [
        "jobs[0].inputs: reactive jobs need at least one input"
    ]


# --- cron -----------------------------------------------------------------------------------
def cron_job(**source):
    return dag(job("a", activation="source", source={"kind": "cron", **source}))


@pytest.mark.parametrize(
    "schedule",
    [
        "* * * * *",
        "*/5 * * * *",
        "0 0 1 1 0",
        "59 23 31 12 7",
        "0-30/10 1,2,3 1-15 */2 1-5",
        "0 9 * jan-jun mon-fri",
        "0 9 * JAN SUN",
        "  15   4 *  * *  ",
    ],
)
def test_valid_cron(schedule):
    source = parse_dag_dict(cron_job(schedule=schedule)).job("a").source
    assert source is not None and source.schedule == " ".join(schedule.split())


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("* * * *", "must have 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("* * * * * *", "must have 5 fields (minute hour day-of-month month day-of-week), got 6"),
        ("60 * * * *", "invalid minute field '60'"),
        ("* 24 * * *", "invalid hour field '24'"),
        ("* * 0 * *", "invalid day-of-month field '0'"),
        ("* * 32 * *", "invalid day-of-month field '32'"),
        ("* * * 13 *", "invalid month field '13'"),
        ("* * * * 8", "invalid day-of-week field '8'"),
        ("*/0 * * * *", "invalid minute field '*/0'"),
        ("30-10 * * * *", "invalid minute field '30-10'"),
        ("5/10 * * * *", "invalid minute field '5/10'"),
        ("@hourly * * * *", "invalid minute field '@hourly'"),
        ("* * * foo *", "invalid month field 'foo'"),
        ("* * * * mon-", "invalid day-of-week field 'mon-'"),
        ("1,,2 * * * *", "invalid minute field '1,,2'"),
        ("? * * * *", "invalid minute field '?'"),
    ],
)
def test_invalid_cron(schedule, message):
    (error,) = errors(cron_job(schedule=schedule))
    assert error.startswith(f"jobs[0].source.schedule: {message}")


def test_cron_every_seconds_alternative():
    source = parse_dag_dict(cron_job(every_seconds=30)).job("a").source
    assert source is not None and (source.every_seconds, source.schedule) == (30, None)
    assert errors(cron_job(every_seconds=0)) == ["jobs[0].source.every_seconds: must be >= 1"]


def test_cron_needs_exactly_one_of_schedule_or_every_seconds():
    message = "jobs[0].source: cron needs exactly one of 'schedule' or 'every_seconds'"
    assert errors(cron_job()) == [message]
    assert errors(cron_job(schedule="* * * * *", every_seconds=5)) == [message]


@pytest.mark.parametrize("kind", ["webhook", "manual", "always_on"])
def test_schedule_forbidden_for_other_source_kinds(kind):
    data = dag(job("a", activation="source", source={"kind": kind, "schedule": "* * * * *"}))
    assert errors(data) == ["jobs[0].source.schedule: only allowed when kind is 'cron'"]
    data["jobs"][0]["source"] = {"kind": kind, "every_seconds": 5}
    assert errors(data) == ["jobs[0].source.every_seconds: only allowed when kind is 'cron'"]


def test_source_kind_literal():
    assert errors(dag(job("a", activation="source", source={"kind": "kafka"}))) == [
        "jobs[0].source.kind: must be one of 'cron', 'webhook', 'manual', 'always_on', got 'kafka'"
    ]


# --- edges, graph, publish ------------------------------------------------------------------
def test_from_needs_exactly_one_form():
    message = "jobs[1].inputs[0].from: needs exactly one of 'job' or 'dataset'"
    for ref in ({"job": "a", "dataset": "ds"}, {}, "a"):
        assert errors(dag(job("a"), job("b", inputs=[{"from": ref}]))) == [message]
    assert errors(dag(job("a"), job("b", inputs=[{"where": {}}]))) == [
        "jobs[1].inputs[0].from: required"
    ]


def test_from_fields_validated():
    data = dag(job("a"), job("b", inputs=[{"from": {"job": "a", "output": -1}}]))
    assert errors(data) == ["jobs[1].inputs[0].from.output: must be >= 0"]
    data = dag(job("a", inputs=[{"from": {"dataset": "Bad"}}]))
    assert errors(data) == ["jobs[0].inputs[0].from.dataset: must match ^[a-z][a-z0-9_.-]{0,199}$"]


def test_edge_to_unknown_job():
    data = dag(
        job("a"), job("b"), job("c", inputs=[{"from": {"job": "a"}}, {"from": {"job": "x"}}])
    )
    assert errors(data) == ["jobs[2].inputs[1].from.job: no job named 'x'"]


def test_edge_to_self():
    assert errors(dag(reactive("a", "a"))) == [
        "jobs[0].inputs[0].from.job: a job cannot read its own output"
    ]


def test_edge_output_out_of_range():
    data = dag(job("a", outputs=2), job("b", inputs=[{"from": {"job": "a", "output": 3}}]))
    assert errors(data) == [
        "jobs[1].inputs[0].from.output: output 3 out of range: job 'a' has 2 outputs"
    ]
    data = dag(job("a", outputs=0), reactive("b", "a"))
    assert errors(data) == [
        "jobs[1].inputs[0].from.output: output 0 out of range: job 'a' has 0 outputs"
    ]
    data = dag(job("a"), job("b", inputs=[{"from": {"job": "a", "output": 1}}]))
    assert errors(data) == [
        "jobs[1].inputs[0].from.output: output 1 out of range: job 'a' has 1 output"
    ]


def test_two_job_cycle():
    assert errors(dag(reactive("a", "b"), reactive("b", "a"))) == [
        "jobs[1].inputs[0].from.job: cycle a -> b -> a"
    ]


def test_three_job_cycle_reported_in_data_flow_order():
    data = dag(job("src"), reactive("a", "src", "c"), reactive("b", "a"), reactive("c", "b"))
    assert errors(data) == ["jobs[2].inputs[0].from.job: cycle a -> b -> c -> a"]


def test_diamond_is_not_a_cycle():
    spec = parse_dag_dict(
        dag(job("a"), reactive("b", "a"), reactive("c", "a"), reactive("d", "b", "c", "a"))
    )
    assert len(spec.jobs) == 4


def test_long_chain_does_not_recurse():
    jobs = [job("j0")] + [reactive(f"j{i}", f"j{i - 1}") for i in range(1, 3000)]
    assert len(parse_dag_dict(dag(*jobs)).jobs) == 3000


def test_duplicate_job_names():
    assert errors(dag(job("a"), job("b"), job("a"))) == [
        "jobs[2].name: duplicate job name (first in jobs[0])"
    ]


def test_publish_rules():
    data = dag(
        job("a", outputs=2),
        publish={
            "one": {"job": "a"},
            "two": {"job": "a", "output": 0},
            "three": {"job": "zz"},
            "four": {"job": "a", "output": 2},
            "five": {"job": "a", "output": 1, "read_roles": ["admin", "guest"]},
            "six": {"job": "a", "output": 1, "storage": "s3"},
            "Seven": {"job": "a", "output": 1},
        },
    )
    assert sorted(errors(data)) == [  # field and graph errors in one answer
        "publish.Seven: job 'a' output 1 is already published as 'five'",
        "publish.Seven: key must match ^[a-z][a-z0-9_.-]{0,199}$",
        "publish.five.read_roles[1]: must be one of 'admin', 'member', 'viewer', got 'guest'",
        "publish.four.output: output 2 out of range: job 'a' has 2 outputs",
        "publish.six.storage: must be one of 'none', 'hot_table', 'parquet', 'jsonl', got 's3'",
        "publish.six: job 'a' output 1 is already published as 'five'",
        "publish.three.job: no job named 'zz'",
        "publish.two: job 'a' output 0 is already published as 'one'",
    ]
    del data["publish"]["five"], data["publish"]["six"], data["publish"]["Seven"]
    assert errors(data) == [
        "publish.two: job 'a' output 0 is already published as 'one'",
        "publish.three.job: no job named 'zz'",
        "publish.four.output: output 2 out of range: job 'a' has 2 outputs",
    ]


def test_publish_options():
    spec = parse_dag_dict(
        dag(job("a"), publish={"x.y": {"job": "a", "read_roles": ["admin"], "storage": "parquet"}})
    )
    assert spec.publish["x.y"].read_roles == ["admin"]
    assert spec.publish["x.y"].storage == "parquet"


def test_several_errors_reported_at_once():
    text = """
    name: many
    jobs:
      - name: a
        activation: reactive
        operator: noop
        colour: red
      - name: b
        activation: source
        operator: Bad
        outputs: 20
      - name: c
        activation: manual
        operator: noop
        runtime: udf
        update_strategy: replace
    publish:
      x: {job: a, storage: disk}
    """
    with pytest.raises(DagSpecError) as info:
        parse_dag_yaml(textwrap.dedent(text))
    exc = info.value
    assert exc.errors == [  # in document order; rules are not hidden by field errors
        "jobs[0].colour: unknown field",
        "jobs[0].inputs: reactive jobs need at least one input",
        "jobs[1].operator: must match ^[a-z][a-z0-9_]{0,63}$",
        "jobs[1].outputs: must be <= 16",
        "jobs[1].source: required when activation is 'source'",
        "jobs[2].udf: required when runtime is 'udf'",
        "publish.x.storage: must be one of 'none', 'hot_table', 'parquet', 'jsonl', got 'disk'",
    ]
    assert str(exc).splitlines()[0] == "invalid DAG 'many': 7 errors"
    assert str(exc).splitlines()[1:] == exc.errors


def test_several_rule_errors_in_one_job_and_graph():
    data = dag(job("a", activation="source", runtime="udf", update_strategy="append", inputs=[]))
    assert errors(data) == [
        "jobs[0].source: required when activation is 'source'",
        "jobs[0].unique_key: required when update_strategy is 'append'",
        "jobs[0].udf: required when runtime is 'udf'",
    ]
    data = dag(reactive("a", "b"), reactive("b", "a", "x"), job("a"), publish={"p": {"job": "q"}})
    assert errors(data) == [
        "jobs[1].inputs[1].from.job: no job named 'x'",
        "jobs[1].inputs[0].from.job: cycle a -> b -> a",
        "jobs[2].name: duplicate job name (first in jobs[0])",
        "publish.p.job: no job named 'q'",
    ]


# --- YAML loading ---------------------------------------------------------------------------
def test_duplicate_yaml_keys_rejected_with_line():
    text = "name: d\njobs:\n  - name: a\n    activation: manual\n    name: b\n"
    assert errors(text) == [
        "yaml: duplicate key 'name' (first defined at line 3) at line 5, column 5"
    ]
    assert errors("name: a\nname: b\n") == [
        "yaml: duplicate key 'name' (first defined at line 1) at line 2, column 1"
    ]


def test_yaml_syntax_error_has_position():
    (error,) = errors("name: d\njobs: [\n")
    assert error.startswith("yaml: ") and " at line 3, column 1" in error
    (error,) = errors("name: d\n  bad: indent\n")
    assert error == "yaml: mapping values are not allowed here at line 2, column 6"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "yaml: document must be a mapping, got list"),
        ("just text", "yaml: document must be a mapping, got str"),
        ("", "yaml: document is empty"),
        ("# only a comment\n", "yaml: document is empty"),
    ],
)
def test_non_mapping_documents(text, message):
    assert errors(text) == [message]


def test_multiple_documents_rejected():
    (error,) = errors("name: a\n---\nname: b\n")
    assert error == (
        "yaml: expected a single document in the stream, but found another document"
        " at line 2, column 1"
    )


def test_anchors_aliases_and_merge_keys_allowed(monkeypatch):
    monkeypatch.setitem(OPERATORS, "other", "trace_operators.noop")
    text = """
    name: anchors
    defaults: {update_strategy: replace}
    jobs:
      - &common
        name: a
        activation: manual
        operator: noop
        config: &cfg {depth: 3, tags: [a, b]}
      - <<: *common
        name: b
        operator: other
        config: *cfg
    """
    spec = parse_dag_yaml(textwrap.dedent(text))
    assert spec.job("a").operator == "noop" and spec.job("b").operator == "other"
    assert spec.job("b").activation == "manual"
    assert spec.job("b").config == {"depth": 3, "tags": ["a", "b"]}


HEAD = "name: d\njobs:\n  - {name: a, activation: manual, operator: noop, outputs: 0, "


def test_recursive_alias_and_alias_bomb_rejected():
    bad = HEAD + "config: &c {x: [*c]}}\n"
    assert errors(bad) == ["jobs[0].config: nested more than 64 levels deep"]
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    bomb = "{" + ", ".join(lines) + "}"
    text = HEAD + f"config: {bomb}}}\n"
    assert errors(text) == ["jobs[0].config: more than 100000 values"]


def test_yaml_dates_stay_strings():
    text = HEAD + "config: {start: 2024-01-01, at: 2024-01-01 10:00:00}}\n"
    config = parse_dag_yaml(text).job("a").config
    assert config == {"start": "2024-01-01", "at": "2024-01-01 10:00:00"}


@pytest.mark.parametrize("character", ["\x8b", "\x07", "\ufffe"])
def test_unprintable_characters_are_a_yaml_error_not_a_crash(character):
    (error,) = errors(f"name: x{character}\njobs: []\n")
    assert error.startswith("yaml: ") and "special characters are not allowed" in error


def test_yaml_python_tags_rejected():
    (error,) = errors("name: !!python/object:os.system x\njobs: []\n")
    assert error.startswith("yaml: could not determine a constructor")


# --- canonical form and hashing -------------------------------------------------------------
REORDERED_YAML = """
# same DAG, different layout
publish: {noop.out: {output: 0, job: b}}
jobs:
- operator: noop   # the first job
  name: a
  unique_key: [id]
  update_strategy: append
  activation: manual
- {inputs: [{from: {output: 0, job: a}}], activation: reactive, unique_key: id,
   operator: noop, name: b, update_strategy: append}
description: "two no-op jobs"
name: noop
"""


def test_hash_ignores_formatting_comments_and_key_order():
    a, b = parse_dag_yaml(NOOP_YAML), parse_dag_yaml(REORDERED_YAML)
    assert canonical_json(a) == canonical_json(b)
    assert content_hash(a) == content_hash(b)
    assert len(content_hash(a)) == 64 and int(content_hash(a), 16) >= 0


def test_hash_changes_with_content():
    base = dag(job("a", config={"batch": 10}))
    changed = copy.deepcopy(base)
    changed["jobs"][0]["config"]["batch"] = 11
    assert content_hash(parse_dag_dict(base)) != content_hash(parse_dag_dict(changed))
    renamed = dag(job("a", config={"batch": 10}), name="e")
    assert content_hash(parse_dag_dict(base)) != content_hash(parse_dag_dict(renamed))


def test_canonical_json_is_sorted_resolved_and_round_trips():
    spec = parse_dag_yaml(NOOP_YAML)
    text = canonical_json(spec)
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert data["jobs"][1]["inputs"][0] == {"from": {"job": "a", "output": 0}, "where": {}}
    assert data["jobs"][0]["runtime"] == "platform" and data["jobs"][0]["max_attempts"] is None
    assert data["kind"] == "dag"
    assert canonical_json(parse_dag_dict(data)) == text


def test_defaults_spelled_out_in_jobs_resolve_the_same():
    via_defaults = parse_dag_dict(dag(job("a"), defaults={"max_attempts": 4}))
    explicit = parse_dag_dict(dag(job("a", max_attempts=4)))
    assert via_defaults.jobs == explicit.jobs


# --- the error type -------------------------------------------------------------------------
def test_error_str_and_pickle():
    exc = DagSpecError(["a: required"], "d")
    assert str(exc) == "invalid DAG 'd': 1 error\na: required"
    assert str(DagSpecError(["x: y", "z: w"])) == "invalid DAG: 2 errors\nx: y\nz: w"
    clone = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own object
    assert clone.errors == exc.errors and clone.name == "d" and str(clone) == str(exc)


def test_parse_errors_chain_pydantic_cause():
    with pytest.raises(DagSpecError) as info:
        parse_dag_dict(dag(job("a", operator=None)))
    assert isinstance(info.value.__cause__.__cause__, ValidationError)
    assert info.value.name == "d"
