"""terraform/ kept consistent with the code, by parsing the HCL (python-hcl2), offline: every
Celery queue has its SQS queue and dead-letter queue with a redrive policy; every process role
of deploy/Procfile has its ECS service; every setting a process cannot start without reaches
every container, secrets from Secrets Manager only; only the delivery pool may reach the
internet; only the pool that runs iceberg_sync reaches the Glue database of the Iceberg
tables, with the Glue calls the sync makes and nothing wider. Each check is a function of the
parsed configuration, and the last tests feed it a broken copy to show it would fail."""

from __future__ import annotations

import ast
import copy
import functools
import re
import shlex
from pathlib import Path

import hcl2
import pytest

from trace_tasks.queues import Queue

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
ENVIRONMENT = TERRAFORM / "environments" / "example"
MODULES = TERRAFORM / "modules"
SETTINGS = ROOT / "trace_web" / "settings"

# Their defaults point at Lite's loopback services or local directory, so in AWS each must be
# set for every process (docs/configuration.md), like the settings without a default.
AWS_REQUIRED = {
    "TRACE_STATE_DB_URL",
    "TRACE_BROKER_URL",
    "TRACE_SQS_REGION",
    "TRACE_SQS_QUEUE_URLS",
    "TRACE_OBJECT_STORE_URL",
}
# Values that carry a password or a key: Secrets Manager only, never plain environment.
SECRETS = {
    "TRACE_SECRET_KEY",
    "TRACE_TASK_TOKEN_SECRET",
    "TRACE_STATE_DB_URL",
    "TRACE_DATA_DB_URL",
    "TRACE_METRICS_TOKEN",
    "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD",
}
SECRET_PREFIXES = ("TRACE_RPC_POOL_",)  # RPC URLs carry API keys
# Flower needs Celery events and remote control, which SQS's predefined queues cannot carry;
# it is a Lite/compose tool, not an AWS service (terraform/README.md).
NOT_IN_AWS = {"flower"}
OPEN = {"0.0.0.0/0", "::/0"}


# --- loading ----------------------------------------------------------------------------------


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _clean(value):
    """python-hcl2 keeps literal strings (and block labels) quoted, and adds bookkeeping keys."""
    if isinstance(value, dict):
        return {_unquote(k): _clean(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


@functools.cache
def _parsed(path: Path) -> dict:
    """One .tf file, parsed once per process (python-hcl2 takes seconds over the tree)."""
    with path.open() as handle:
        return _clean(hcl2.load(handle))


def load(directory: Path) -> dict:
    """A directory's .tf files as {"resource": {type: {name: body}}, "locals": {...},
    "module": {...}, "variable": {...}, "data": {type: {name: body}}}."""
    config: dict = {"resource": {}, "data": {}, "locals": {}, "module": {}, "variable": {}}
    for path in sorted(directory.glob("*.tf")):
        parsed = _parsed(path)
        for block in parsed.get("locals", []):
            config["locals"].update(block)
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for type_, named in block.items():
                    config[kind].setdefault(type_, {}).update(named)
        for kind in ("module", "variable"):
            for block in parsed.get(kind, []):
                config[kind].update(block)
    return config


@pytest.fixture(scope="module")
def tf() -> dict:
    return {
        "example": load(ENVIRONMENT),
        **{path.name: load(path) for path in MODULES.iterdir() if path.is_dir()},
    }


def _one_of(items):
    """Attributes written as blocks come back as one-item lists."""
    return items[0] if isinstance(items, list) and len(items) == 1 else items


# --- what the code says -----------------------------------------------------------------------


def celery_queues() -> set[str]:
    from trace_tasks.celery_app import app

    return {q.name for q in app.conf.task_queues}


def procfile_roles() -> dict[str, list[str]]:
    roles = {}
    for line in (ROOT / "deploy" / "Procfile").read_text().splitlines():
        if line and not line.startswith("#"):
            name, command = line.split(":", 1)
            roles[name.strip()] = shlex.split(command)
    return roles


def settings_reads() -> dict[str, bool]:
    """Every setting read through the env helper in trace_web/settings/: name -> required
    (no default)."""
    reads = {}
    for path in SETTINGS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id.startswith("env_")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                required = len(node.args) < 2 and not node.keywords
                reads[node.args[0].value] = reads.get(node.args[0].value, False) or required
    return reads


def is_secret(name: str) -> bool:
    return name in SECRETS or name.startswith(SECRET_PREFIXES)


# --- the checks -------------------------------------------------------------------------------


def check_queues(tf: dict, queues: set[str]) -> list[str]:
    problems = []
    example = tf["example"]
    declared = set(example["locals"]["queues"])
    if declared != queues:
        problems.append(
            f"SQS queues {sorted(declared)} != Celery queues {sorted(queues)} "
            "(terraform/environments/example/main.tf, local.queues)"
        )
    if example["module"].get("queues", {}).get("queues") != "${local.queues}":
        problems.append("module.queues is not given local.queues")
    sqs = tf["queues"]["resource"].get("aws_sqs_queue", {})
    main, dlq = sqs.get("queue", {}), sqs.get("dlq", {})
    for name, body in (("queue", main), ("dlq", dlq)):
        if body.get("for_each") != "${var.queues}":
            problems.append(f"aws_sqs_queue.{name} is not one per entry of var.queues")
    if "fifo_queue" in main or "fifo_queue" in dlq:
        problems.append("the queues are standard: correctness does not depend on FIFO")
    redrive = main.get("redrive_policy", "")
    if "aws_sqs_queue.dlq[each.key].arn" not in redrive or "maxReceiveCount" not in redrive:
        problems.append("aws_sqs_queue.queue has no redrive policy to its own DLQ")
    allow = tf["queues"]["resource"].get("aws_sqs_queue_redrive_allow_policy", {}).get("dlq", {})
    if allow.get("for_each") != "${var.queues}":
        problems.append("no redrive allow policy on each DLQ")
    compute = tf["compute"]["locals"]
    if compute["base_environment"].get("TRACE_SQS_QUEUE_URLS") != "${jsonencode(var.queue_urls)}":
        problems.append("TRACE_SQS_QUEUE_URLS is not the queues module's URLs")
    if example["module"]["compute"].get("queue_urls") != "${module.queues.queue_urls}":
        problems.append("module.compute is not given module.queues.queue_urls")
    return problems


def check_services(tf: dict, roles: dict[str, list[str]]) -> list[str]:
    problems = []
    compute = tf["compute"]
    pools = tf["example"]["locals"]["pools"]
    workers = {name.removeprefix("worker_"): argv for name, argv in roles.items()}
    wanted_pools = {q for q, argv in workers.items() if "worker" in argv[3:4]}
    if set(pools) != wanted_pools:
        problems.append(f"worker pools {sorted(pools)} != Procfile workers {sorted(wanted_pools)}")
    for queue, argv in workers.items():
        if queue not in pools:
            continue
        procfile_pool = argv[argv.index("--pool") + 1] if "--pool" in argv else "prefork"
        if pools[queue].get("pool", "prefork") != procfile_pool:
            problems.append(
                f"pool {queue}: {pools[queue].get('pool', 'prefork')} != {procfile_pool}"
            )
    services_expr = compute["locals"]["services"]
    for role in set(roles) - NOT_IN_AWS:
        if role.startswith("worker_"):
            continue
        if not re.search(rf"[{{,]\s*{role} = {{", services_expr):
            problems.append(f"Procfile role {role!r} has no ECS service")
    if compute["resource"]["aws_ecs_service"]["service"].get("for_each") != "${local.services}":
        problems.append("aws_ecs_service.service is not one per local.services")
    worker_command = compute["locals"]["pool_services"]
    if '"-Q", queue' not in worker_command:
        problems.append("the worker command does not consume its pool's queue (-Q)")
    return problems


def role_settings(tf: dict) -> tuple[set[str], set[str]]:
    """(environment names, secret names) every Django role receives, as the compute module's
    locals build them."""
    local = tf["compute"]["locals"]
    if local["common_environment"] != "${merge(local.base_environment, var.environment)}":
        raise AssertionError("common_environment is not base_environment + var.environment")
    environment = set(local["base_environment"])
    secrets = set(local["common_secrets"])
    # TRACE_<DB>_DB_URL for each database a role lists, and every role lists the state DB.
    if "TRACE_${upper(db)}_DB_URL" in local["role_secrets"] and all(
        "state" in databases for databases in role_databases(tf)
    ):
        secrets |= {"TRACE_STATE_DB_URL"}
    return environment, secrets


def role_databases(tf: dict) -> list[list[str]]:
    """The databases each role lists: web's and beat's, the migrate task's, each example pool's
    (or the pools variable's default)."""
    local = tf["compute"]["locals"]
    found = [
        re.findall(r'"(\w+)"', listed)
        for listed in re.findall(r"databases = \[([^\]]*)\]", local["services"])
    ]
    found.append(local["migrate"]["databases"])
    pool_type = tf["compute"]["variable"]["pools"]["type"]
    default = re.search(r"databases\s*=\s*optional\(list\(string\), \[([^\]]*)\]\)", pool_type)
    for pool in tf["example"]["locals"]["pools"].values():
        if "databases" in pool:
            found.append(pool["databases"])
        else:
            found.append(re.findall(r'"(\w+)"', default[1]) if default else [])
    return found


def check_settings(tf: dict, reads: dict[str, bool]) -> list[str]:
    problems = []
    required = {name for name, needed in reads.items() if needed} | AWS_REQUIRED
    environment, secrets = role_settings(tf)
    given = environment | secrets
    for name in sorted(required - given):
        problems.append(f"{name} is required and not passed to every container")
    for name in sorted(environment):
        if is_secret(name):
            problems.append(f"{name} is a secret and is passed as plain environment")
    compute = tf["compute"]
    # Every map that becomes plain environment, anywhere.
    plain_maps = [
        compute["locals"]["delivery_environment"],
        *(p.get("environment", {}) for p in tf["example"]["locals"]["pools"].values()),
    ]
    for plain in plain_maps:
        for name in (
            plain if isinstance(plain, dict) else re.findall(r"\b([A-Z][A-Z0-9_]+)\s*=", plain)
        ):
            if is_secret(name):
                problems.append(f"{name} is a secret and is passed as plain environment")
    services_expr = compute["locals"]["services"]
    for name in re.findall(r"\b(TRACE_[A-Z0-9_]+)\s*=", services_expr):
        if is_secret(name):
            problems.append(f"{name} is a secret and is passed as plain environment")
    # Secrets are Secrets Manager ARNs: the module's own secrets and the data module's.
    for name, value in compute["locals"]["common_secrets"].items():
        if not value.startswith("${aws_secretsmanager_secret."):
            problems.append(f"{name} does not come from Secrets Manager")
    if tf["example"]["module"]["compute"].get("db_url_secret_arns") != (
        "${module.data.db_url_secret_arns}"
    ) or "aws_secretsmanager_secret.db_url" not in str(tf["data"]["resource"]):
        problems.append("the database URLs do not come from the data module's secrets")
    container = compute["resource"]["aws_ecs_task_definition"]["service"]["container_definitions"]
    if "local.role_secrets[each.key]" not in container or "valueFrom" not in container:
        problems.append("the containers' secrets are not the role's Secrets Manager references")
    # And nothing passed is a name the code never reads (a typo, a removed setting).
    code = "\n".join(
        p.read_text()
        for d in ("trace_web", "trace_tasks", "trace_chain", "trace_operators")
        for p in (ROOT / d).rglob("*.py")
    )
    passed = (
        given
        | set(compute["locals"]["delivery_environment"])
        | {
            name
            for p in tf["example"]["locals"]["pools"].values()
            for name in p.get("environment", {})
        }
    )
    for name in sorted(passed):
        if f'"{name}"' not in code and not name.startswith(SECRET_PREFIXES):
            problems.append(f"{name} is passed to the containers but no code reads it")
    return problems


def check_egress(tf: dict) -> list[str]:
    problems = []
    for module, config in tf.items():
        resources = config["resource"]
        for name, body in resources.get("aws_vpc_security_group_egress_rule", {}).items():
            is_open = body.get("cidr_ipv4") in OPEN or body.get("cidr_ipv6") in OPEN
            if is_open and (module, name) != ("compute", "internet"):
                problems.append(f"{module}: egress rule {name} opens {body.get('cidr_ipv4')}")
        for name, body in resources.get("aws_security_group", {}).items():
            for egress in body.get("egress", []) if isinstance(body.get("egress"), list) else []:
                if set(egress.get("cidr_blocks", [])) & OPEN:
                    problems.append(f"{module}: security group {name} has an open egress block")
        for name, body in resources.get("aws_security_group_rule", {}).items():
            if body.get("type") == "egress" and set(body.get("cidr_blocks", [])) & OPEN:
                problems.append(f"{module}: security group rule {name} opens egress")
    compute = tf["compute"]
    internet = compute["resource"]["aws_vpc_security_group_egress_rule"].get("internet", {})
    if (
        internet.get("for_each") != "${local.internet_egress}"
        or "if r.internet" not in (compute["locals"]["internet_egress"])
    ):
        problems.append("the internet egress rule is not limited to the roles with internet")
    validations = compute["variable"]["pools"].get("validation", [])
    if not any(
        'q == "delivery"' in v["condition"] and "internet_egress" in v["condition"]
        for v in validations
    ):
        problems.append("var.pools does not refuse internet_egress outside the delivery pool")
    with_internet = sorted(
        q for q, p in tf["example"]["locals"]["pools"].items() if p.get("internet_egress") is True
    )
    if with_internet != ["delivery"]:
        problems.append(f"pools with internet egress: {with_internet}, want ['delivery']")
    # Network: only the public and egress tiers route to the internet.
    routes = tf["network"]["resource"].get("aws_route", {})
    for name, body in routes.items():
        if "aws_route_table.private" in body.get("route_table_id", ""):
            problems.append(f"route {name} gives the private tier a way out")
    return problems


# The Glue calls pyiceberg's catalog makes to read, create and commit tables
# (trace_chain/iceberg.py); the database is Terraform's, and no table is ever dropped.
GLUE_ACTIONS = {
    "glue:GetDatabase",
    "glue:GetTable",
    "glue:GetTables",
    "glue:CreateTable",
    "glue:UpdateTable",
}
ICEBERG_ENVIRONMENT = {
    "TRACE_ICEBERG_CATALOG",
    "TRACE_ICEBERG_NAMESPACE",
    "TRACE_ICEBERG_WAREHOUSE",
}


def check_iceberg(tf: dict) -> list[str]:
    """The pool that runs iceberg_sync (a platform operator) and only it syncs into the
    analytics module's Glue database, with the catalog settings the code reads and Glue calls
    limited to that database's tables."""
    from trace_operators.iceberg_sync import RUNTIMES

    problems = []
    pools = tf["example"]["locals"]["pools"]
    syncing = sorted(q for q, p in pools.items() if p.get("iceberg_glue") is True)
    if syncing != sorted(RUNTIMES):
        problems.append(f"pools with iceberg_glue: {syncing}, want {sorted(RUNTIMES)}")
    analytics = tf["analytics"]["resource"]
    for kind in ("aws_glue_catalog_database", "aws_athena_workgroup"):
        if not analytics.get(kind):
            problems.append(f"the analytics module declares no {kind}")
    given = tf["example"]["module"]["compute"].get("iceberg") or {}
    if given.get("glue_database_arn") != "${module.analytics.glue_database_arn}":
        problems.append("compute's iceberg database is not the analytics module's")
    environment = tf["compute"]["locals"]["iceberg_environment"]
    for name in sorted(ICEBERG_ENVIRONMENT):
        if f"{name} = " not in environment:
            problems.append(f"{name} is not passed to the pools with iceberg_glue")
    if 'TRACE_ICEBERG_CATALOG = "glue"' not in environment:
        problems.append("the pools with iceberg_glue do not use the Glue catalog")
    code = (ROOT / "trace_chain" / "iceberg.py").read_text()
    for name in sorted(ICEBERG_ENVIRONMENT):
        if f'"{name}"' not in code:
            problems.append(f"{name} is passed to the containers but no code reads it")
    statements = [
        content
        for block in tf["compute"]["data"]["aws_iam_policy_document"]["task"]["dynamic"]
        for content in block.get("statement", {}).get("content", [])
        if any(str(a).startswith("glue:") for a in content.get("actions", []))
    ]
    if len(statements) != 1:
        problems.append(f"{len(statements)} task-role statements grant Glue calls, want 1")
    for statement in statements:
        if not set(statement["actions"]) <= GLUE_ACTIONS:
            extra = sorted(set(statement["actions"]) - GLUE_ACTIONS)
            problems.append(f"the task role grants Glue calls the sync does not make: {extra}")
        if any("*" in r.replace("/*", "") for r in statement["resources"]):
            problems.append("the Glue statement is not scoped to the Iceberg database's tables")
    return problems


# --- tests ------------------------------------------------------------------------------------


def test_every_celery_queue_has_an_sqs_queue_and_dlq_with_redrive(tf):
    assert celery_queues() == {q.value for q in Queue}
    assert check_queues(tf, celery_queues()) == []


def test_every_procfile_role_has_an_ecs_service(tf):
    assert {"web", "beat", "worker_udf"} <= set(procfile_roles())
    assert check_services(tf, procfile_roles()) == []


def test_every_required_setting_reaches_every_container_and_secrets_come_from_secrets_manager(tf):
    reads = settings_reads()
    # The settings a process cannot start without (the scan must keep finding them).
    assert {n for n, required in reads.items() if required} >= {
        "TRACE_SECRET_KEY",
        "TRACE_TASK_TOKEN_SECRET",
    }
    assert check_settings(tf, reads) == []


def test_only_the_delivery_pool_reaches_the_internet(tf):
    assert check_egress(tf) == []


def test_every_module_has_typed_described_variables_and_described_outputs():
    for module in sorted(p for p in MODULES.iterdir() if p.is_dir()):
        config = load(module)
        assert config["variable"], module.name
        for name, body in config["variable"].items():
            assert "type" in body and body.get("description"), f"{module.name}: var.{name}"
        for block in _parsed(module / "outputs.tf")["output"]:
            for name, body in block.items():
                assert body.get("description"), f"{module.name}: output {name}"


# The checks fail on a real inconsistency: each fed a copy of the configuration broken once.


def test_a_queue_missing_from_terraform_is_reported(tf):
    broken = copy.deepcopy(tf)
    del broken["example"]["locals"]["queues"]["udf"]
    assert any("Celery queues" in p for p in check_queues(broken, celery_queues()))


def test_a_queue_without_redrive_is_reported(tf):
    broken = copy.deepcopy(tf)
    del broken["queues"]["resource"]["aws_sqs_queue"]["queue"]["redrive_policy"]
    assert any("redrive" in p for p in check_queues(broken, celery_queues()))


def test_a_missing_pool_is_reported(tf):
    broken = copy.deepcopy(tf)
    del broken["example"]["locals"]["pools"]["stream"]
    assert any("Procfile workers" in p for p in check_services(broken, procfile_roles()))


def test_a_role_without_the_state_db_is_reported(tf):
    broken = copy.deepcopy(tf)
    broken["example"]["locals"]["pools"]["delivery"]["databases"] = ["data"]
    problems = check_settings(broken, settings_reads())
    assert "TRACE_STATE_DB_URL is required and not passed to every container" in problems


def test_a_secret_in_plain_environment_or_a_missing_setting_is_reported(tf):
    broken = copy.deepcopy(tf)
    env = broken["compute"]["locals"]["base_environment"]
    env["TRACE_SECRET_KEY"] = "not-a-secret"
    del env["TRACE_OBJECT_STORE_URL"]
    problems = check_settings(broken, settings_reads())
    assert "TRACE_SECRET_KEY is a secret and is passed as plain environment" in problems
    assert "TRACE_OBJECT_STORE_URL is required and not passed to every container" in problems


def test_a_required_setting_added_to_the_code_is_reported(tf):
    reads = {**settings_reads(), "TRACE_NEW_REQUIRED": True}
    assert "TRACE_NEW_REQUIRED is required and not passed to every container" in check_settings(
        tf, reads
    )


def test_a_second_pool_with_internet_is_reported(tf):
    broken = copy.deepcopy(tf)
    broken["example"]["locals"]["pools"]["platform"]["internet_egress"] = True
    rules = broken["network"]["resource"].setdefault("aws_vpc_security_group_egress_rule", {})
    rules["leak"] = {"cidr_ipv4": "0.0.0.0/0"}
    problems = check_egress(broken)
    assert "pools with internet egress: ['delivery', 'platform'], want ['delivery']" in problems
    assert any("egress rule leak" in p for p in problems)


def test_the_iceberg_pool_reaches_only_its_glue_database(tf):
    assert check_iceberg(tf) == []


def test_a_wider_glue_grant_or_a_second_syncing_pool_is_reported(tf):
    broken = copy.deepcopy(tf)
    broken["example"]["locals"]["pools"]["udf"]["iceberg_glue"] = True
    for block in broken["compute"]["data"]["aws_iam_policy_document"]["task"]["dynamic"]:
        for content in block.get("statement", {}).get("content", []):
            if content.get("sid") == "IcebergTablesInGlue":
                content["actions"].append("glue:DeleteDatabase")
                content["resources"].append("*")
    problems = check_iceberg(broken)
    assert "pools with iceberg_glue: ['platform', 'udf'], want ['platform']" in problems
    assert (
        "the task role grants Glue calls the sync does not make: ['glue:DeleteDatabase']"
        in problems
    )
    assert "the Glue statement is not scoped to the Iceberg database's tables" in problems
