"""Mutation testing, one module at a time, with the narrow tests that guard it (mutmut 3).

    python -m tests.mutation.run outbox routing     # the named targets (see TARGETS)
    python -m tests.mutation.run --ci               # the CI subset; fails on a new survivor
    python -m tests.mutation.run --list
    python -m tests.mutation.run commits --only 'x_output_commit__mutmut_2*'   # some mutants
    python -m tests.mutation.run chain_sync --only NAMES --tests FILE   # kills by FILE alone

The whole suite per mutant is far too slow on two cores, so each target names the module to
mutate and the tests that guard it. Each target runs in its own work directory
(.trace/mutation/<target>/, mutmut's `mutants/` copy inside it) with its own state and data
database names and broker db, so two targets can run at once beside someone else's suite.
Every surviving mutant must be killed by a test or listed in EQUIVALENT with the reason;
docs/testing.md ("Mutation testing") records the verdicts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
WORK_ROOT = REPO_ROOT / ".trace" / "mutation"
PACKAGES = ("trace_web", "trace_tasks", "trace_operators", "trace_chain")
# Beside the packages in each work directory: what the tests read at run time.
ALSO_LINK = ("tests", "manage.py", "package.json", "node_modules", "docs", "deploy", "README.md")


@dataclass(frozen=True)
class Target:
    module: str  # the file to mutate, from the repository root
    tests: tuple[str, ...]  # the pytest selection that guards it


TARGETS: dict[str, Target] = {
    "backoff": Target(
        "trace_web/orchestration/services/backoff.py",
        (
            "tests/integration/test_task_lifecycle.py::test_failure_retries_with_backoff_then_fails_for_good",
            "tests/integration/test_guarantees.py",
        ),
    ),
    "outbox": Target(
        "trace_web/orchestration/services/outbox.py",
        (
            "tests/integration/test_outbox_publish.py",
            "tests/integration/test_outbox_rows.py",
            "tests/integration/test_guarantees.py",
            "tests/integration/test_task_statements.py",
        ),
    ),
    "routing": Target(
        "trace_web/orchestration/services/routing.py",
        (
            "tests/integration/test_routing.py",
            "tests/integration/test_task_lifecycle.py",
            "tests/integration/test_runner.py",
            "tests/integration/test_sources.py",
            "tests/integration/test_chain_sync.py",
        ),
    ),
    "commits": Target(
        "trace_web/orchestration/services/commits.py",
        (
            "tests/integration/test_commits.py",
            "tests/integration/test_guarantees.py",
            "tests/integration/test_task_lifecycle.py",
        ),
    ),
    "tasks": Target(
        "trace_web/orchestration/services/tasks.py",
        ("tests/integration/test_task_lifecycle.py", "tests/integration/test_guarantees.py"),
    ),
    "follower": Target(
        "trace_operators/block_follower.py",
        ("tests/chain/test_block_follower.py", "tests/chain/test_follower_forks.py"),
    ),
    "chain_sync": Target(
        "trace_web/chain_sync/services.py",
        ("tests/integration/test_chain_sync_completion.py", "tests/integration/test_chain_sync.py"),
    ),
    "runner": Target("trace_tasks/runner.py", ("tests/integration/test_runner.py",)),
    # The sink called directly (test_sink.py) and through the dead-letter command; the
    # pipeline's tests (anvil, the sandbox: a minute per mutant) are not in the selection.
    "sink": Target(
        "trace_web/alerts/sink.py",
        ("tests/alerts/test_sink.py", "tests/alerts/test_api_dlq_command.py"),
    ),
    "task_statements": Target(
        "trace_web/orchestration/services/task_statements.py",
        (
            "tests/integration/test_task_statements.py",
            "tests/integration/test_guarantees.py",
            "tests/integration/test_task_lifecycle.py",
        ),
    ),
}
CI_TARGETS = ("backoff",)
TIMEOUT_MULTIPLIER = 4.0

# Surviving mutants that no test can kill, with the reason (mutmut's names: module.x_function
# __mutmut_N). The CI subset fails on a survivor that is not listed here.
OUTBOX = "trace_web.orchestration.services.outbox."
STATEMENTS = "trace_web.orchestration.services.task_statements."
ROUTING = "trace_web.orchestration.services.routing."
COMMITS = "trace_web.orchestration.services.commits."
SINK = "trace_web.alerts.sink."
TASKS = "trace_web.orchestration.services.tasks."
CHAIN_SYNC = "trace_web.chain_sync.services."
UNREACHABLE_DEFAULT = (
    "a default for a key that is always there: commits receive a report's items as"
    " model_dump() of task_reports' models, which fill every field (and cap reason at 2000)"
)
LOG_ONLY = "log wording or arguments only; no behaviour reads the log"
EQUIVALENT: dict[str, str] = {
    **{
        OUTBOX + name: LOG_ONLY
        for name in (
            "x__publish_quietly__mutmut_7",
            "x__publish_quietly__mutmut_8",
            "x__publish_quietly__mutmut_9",
            "x__push_back__mutmut_10",
            "x__push_back__mutmut_11",
            "x__push_back__mutmut_12",
            "x__push_back__mutmut_17",
            "x__push_back__mutmut_30",
            "x__push_back__mutmut_31",
            "x__push_back__mutmut_33",
            "x__push_back__mutmut_39",
        )
    },
    **{
        OUTBOX + name: "the row's kind passed on as None: a row of no known kind takes the"
        " drain's locked path, which publishes a wake-up exactly as the fast path does"
        for name in (
            "x_outbox_add__mutmut_9",
            "x_outbox_publish_after_commit__mutmut_4",
            "x__publish_quietly__mutmut_2",
        )
    },
    OUTBOX + "x__push_back_by_id__mutmut_13": "save() of every field instead of the four"
    " changed ones: the row is held FOR UPDATE, so the other fields are written back unchanged",
    **{
        STATEMENTS + name: "builds an identifier only for the functools.cache'd statement"
        " builders, filled before mutmut forks each mutant's run, so never reached there; a"
        " broken identifier breaks every statement, and hand-applied mutants of the statements"
        " themselves are killed (docs/testing.md)"
        for name in (
            "x__q__mutmut_1",
            "x__table__mutmut_1",
            "x__columns__mutmut_1",
            "x__columns__mutmut_2",
            "x__columns__mutmut_3",
            "x__transition_insert__mutmut_1",
            "x__transition_insert__mutmut_2",
            "x__transition_insert__mutmut_3",
        )
    },
    **{
        STATEMENTS + name: "the single statement skipped: services.tasks falls back to the"
        " locking ORM path, which writes the same rows (only slower)"
        for name in ("x_task_claim_uncapped__mutmut_4", "x_task_complete_plain__mutmut_3")
    },
    **{
        STATEMENTS + name: "zip(strict=...) over the model's own fields and the statement's"
        " columns for them: the lengths are equal by construction"
        for name in ("x__from_row__mutmut_18", "x__from_row__mutmut_21", "x__from_row__mutmut_22")
    },
    **{
        STATEMENTS + name: "Model.from_db's alias, field names (all concrete fields are given,"
        " so it takes its positional path) or JSONField.from_db_value's connection (unused):"
        " the one database and the same instance either way"
        for name in (
            "x__from_row__mutmut_6",
            "x__from_row__mutmut_23",
            "x__from_row__mutmut_24",
            "x_task_claim_uncapped__mutmut_27",
        )
    },
    **{
        STATEMENTS + name: "the DAG version's name deferred instead of loaded: reading it"
        " loads it, the same value (one query more)"
        for name in ("x_task_claim_uncapped__mutmut_35", "x_task_claim_uncapped__mutmut_36")
    },
    **{
        STATEMENTS + name: "pre_save(add=False/None): created_at is set explicitly on the"
        " instance, so auto_now_add has nothing to add"
        for name in ("x_task_insert__mutmut_8", "x_task_insert__mutmut_11")
    },
    STATEMENTS + "x_task_insert__mutmut_16": "the reason cut at 2001 instead of 2000 chars: it"
    " is `created by <trigger>`, and a trigger is at most 16 chars",
    ROUTING + "x__per_update__mutmut_32": "`invalidation__isnull=True` dropped from the fold's"
    ' candidates: they are also `trigger="event"`, and only the invalidation scanner sets'
    ' an invalidation, always with trigger "invalidation"',
    **{
        ROUTING + name: "save() of every field instead of the changed ones: the task row is"
        " held FOR UPDATE (and with it every decision over its inputs, under the job's lock),"
        " so the other fields are written back unchanged"
        for name in ("x__per_update__mutmut_55", "x__per_update__mutmut_64")
    },
    ROUTING + "x_invalidations_schedule__mutmut_39": "save() of every field instead of"
    " scheduled_at: the invalidation is held FOR UPDATE, the other fields go back unchanged",
    ROUTING + "x_invalidations_schedule__mutmut_1": "the default batch size 100 -> 101:"
    " observable only with over 100 pending invalidations in one call, which no caller relies on",
    **{
        COMMITS + name: UNREACHABLE_DEFAULT
        for name in (
            "x__check_for_job__mutmut_3",
            "x__check_for_job__mutmut_5",
            "x__check_for_job__mutmut_8",
            *(f"x__partition_commit__mutmut_{n}" for n in (20, 22, 25, 39, 41, 44, 48, 50, 53)),
            *(f"x_invalidation_record__mutmut_{n}" for n in (62, 64, 67, 68)),
        )
    },
    **{
        COMMITS + name: "the default `path` of a function every caller (services.tasks) passes"
        " a path to"
        for name in (
            "x_output_commit__mutmut_1",
            "x_output_commit__mutmut_2",
            "x_invalidation_record__mutmut_1",
            "x_invalidation_record__mutmut_2",
        )
    },
    **{
        COMMITS + f"x_invalidation_record__mutmut_{n}": "the range-or-partition check repeated"
        " after task_reports made it (events_body_parse lists the same problem first)"
        for n in range(30, 36)
    },
    **{COMMITS + f"x_publication_prefixes__mutmut_{n}": LOG_ONLY for n in range(18, 27)},
    COMMITS + "x_per_update_cursor_advance__mutmut_14": "`>=` for `>`: an equal position is"
    " written back unchanged (only updated_at moves, which nothing reads)",
    COMMITS + "x_per_update_cursor_advance__mutmut_16": "save() of every field of a cursor held"
    " FOR UPDATE: the other fields go back unchanged",
    TASKS + "x_task_release__mutmut_8": "save() of every field of the task row _lock_current"
    " holds FOR UPDATE: the other fields are written back unchanged",
    TASKS + "x__lock_for_operator__mutmut_6": "select_related(None): the job is loaded when"
    " read instead of joined, the same row (one query more)",
    SINK + "x_dead_letter_replay__mutmut_11": "`verify=None` for `verify=False`: both falsy,"
    " the same read without the checksum",
    **{
        SINK + name: "save() of every field of the dead letter held FOR UPDATE (select_for_update"
        " in this transaction): the other fields are written back unchanged"
        for name in ("x_dead_letter_replay__mutmut_34", "x_dead_letter_replay__mutmut_39")
    },
    OUTBOX + "x_outbox_drain__mutmut_1": "the default batch size 200 -> 201: observable only"
    " with over 200 due rows in one call, which no caller relies on",
    OUTBOX + "x_outbox_drain__mutmut_37": "save() of every field instead of the five changed"
    " ones: the row is held FOR UPDATE, so the other fields are written back unchanged",
    CHAIN_SYNC + "x__settle__mutmut_3": "`exclude(status=None)` for excluding DONE: done ranges"
    " are read too and each is skipped as unchanged",
    CHAIN_SYNC + "x__settle__mutmut_5": "`in_bulk(None)`: every task is loaded; the lookups by"
    " id find the same tasks",
    CHAIN_SYNC + "x__next_gap__mutmut_18": "`>` for `>=`: the loop goes round once more and"
    " returns `(start, start)` all the same",
    CHAIN_SYNC + "x_chain_sync_range_completed__mutmut_2": "`select_related(None)`: the same rows,"
    " their relations loaded lazily",
    **{
        CHAIN_SYNC + name: LOG_ONLY
        for name in (
            "x_chain_sync_range_completed__mutmut_36",
            "x_chain_sync_range_completed__mutmut_37",
            "x_chain_sync_range_completed__mutmut_41",
        )
    },
}


def work_dir(name: str) -> Path:
    return WORK_ROOT / name


def prepare(name: str, target: Target) -> Path:
    """A work directory whose pyproject.toml is the project's plus this target's [tool.mutmut]
    and whose packages and tests are links to the checkout (mutmut copies them to mutants/)."""
    root = work_dir(name)
    shutil.rmtree(root / "mutants", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    for entry in (*PACKAGES, *ALSO_LINK):
        link, source = root / entry, REPO_ROOT / entry
        if source.exists() and not link.exists():
            link.symlink_to(source)
    project = (REPO_ROOT / "pyproject.toml").read_text()
    if "[tool.mutmut]" in project:
        project = project[: project.index("[tool.mutmut]")]
    config = {
        "source_paths": list(PACKAGES),
        "only_mutate": [target.module],
        "pytest_add_cli_args_test_selection": list(target.tests),
        # The test database is created once per work directory, not once per mutant.
        # pytest-django's project search walks up from mutants/ to the work directory's
        # manage.py link and puts the work directory first on sys.path: every package not
        # imported by then (trace_operators, trace_tasks) came from the links, the original
        # code, and the stats pass saw no test reach a mutated function.
        "pytest_add_cli_args": [
            "--reuse-db",
            "-p",
            "no:cacheprovider",
            "-o",
            "django_find_project=false",
        ],
        "use_git_change_detection": False,
        # A mutant that loops forever (a cursor that no longer moves) is a timeout, which
        # counts as killed; mutmut's default waits 15 times the tests' own duration for it.
        "timeout_multiplier": TIMEOUT_MULTIPLIER,
    }
    (root / "pyproject.toml").write_text(project + "\n[tool.mutmut]\n" + _toml(config))
    return root


def _toml(values: dict[str, object]) -> str:
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, (int, float)):
            lines.append(f"{key} = {value}")
        elif isinstance(value, list):
            lines.append(f"{key} = [{', '.join(_quote(v) for v in value)}]")
        else:
            lines.append(f"{key} = {_quote(value)}")
    return "\n".join(lines) + "\n"


def _quote(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def isolated_env(name: str, redis_db: int) -> dict[str, str]:
    """Database names and a broker db of this target's own, derived from the caller's."""
    me = os.environ.get("TRACE_MUTATION_PREFIX", "mut")
    suffix = re.sub(r"\W", "_", name)
    server = os.environ.get("TRACE_MUTATION_PG", "postgres://postgres@127.0.0.1:5432")
    redis = os.environ.get("TRACE_MUTATION_REDIS", "redis://127.0.0.1:6379")
    return {
        **os.environ,
        # mutmut's mutants/ copy has no node_modules: tests that start anvil (chain_sync's)
        # are pointed at the checkout's binary.
        **_anvil_env(),
        "TRACE_STATE_DB_URL": f"{server}/trace_state_{me}_{suffix}",
        "TRACE_DATA_DB_URL": f"{server}/trace_data_{me}_{suffix}",
        "TRACE_BROKER_URL": f"{redis}/{redis_db}",
    }


def _anvil_env() -> dict[str, str]:
    from trace_chain.devchain import ANVIL_PATH_ENV, AnvilNotInstalled, anvil_path

    if os.environ.get(ANVIL_PATH_ENV):
        return {}
    try:
        return {ANVIL_PATH_ENV: str(anvil_path())}
    except AnvilNotInstalled:
        return {}  # the tests that need it fail with the `npm ci` hint


def run_target(
    name: str, redis_db: int, only: tuple[str, ...] = (), tests: tuple[str, ...] = ()
) -> dict[str, str]:
    """Run mutmut on one target; returns {mutant: status} for every mutant, or with `only`
    (mutant names or fnmatch patterns, with or without the module prefix) for those. `tests`
    replaces the target's selection (a kill by a narrower selection is a kill; a survivor of
    one is not a verdict)."""
    target = TARGETS[name]
    if tests:
        target = Target(target.module, tests)
    root = prepare(name, target)
    env = isolated_env(name, redis_db)
    print(f"== {name}: {target.module} <- {' '.join(target.tests)}", flush=True)
    mutmut = [sys.executable, "-m", "mutmut"]
    module = target.module.removesuffix(".py").replace("/", ".") + "."
    named = [p if p.startswith(module) else module + p for p in only]
    run = subprocess.run(
        [*mutmut, "run", "--max-children", "1", *named], cwd=root, env=env, check=False
    )
    statuses = results(root, env)
    if named:
        statuses = {m: s for m, s in statuses.items() if any(fnmatch(m, p) for p in named)}
    if run.returncode != 0 or not statuses:
        raise SystemExit(f"mutmut failed on {name} (exit {run.returncode}); see its output above")
    # The confirmation pass: the first run forks each mutant's tests from the process that
    # collected the stats in-process (pytest, Django, open connections), and there a mutant
    # can pass tests that kill it in a clean process. Named mutants are run again from a
    # process that only loads the stored stats.
    survivors = [m for m, status in statuses.items() if status == "survived"]
    if survivors:
        print(f"== {name}: confirming {len(survivors)} survivor(s)", flush=True)
        subprocess.run([*mutmut, "run", "--max-children", "1", *survivors], cwd=root, env=env)
        statuses |= {m: s for m, s in results(root, env).items() if m in survivors}
    return statuses


def results(root: Path, env: dict[str, str]) -> dict[str, str]:
    mutmut = [sys.executable, "-m", "mutmut"]
    listed = subprocess.run(
        [*mutmut, "results", "--all", "true"], cwd=root, env=env, capture_output=True, text=True
    )
    return parse_results(listed.stdout)


def parse_results(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\s*(\S+): (.+)", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation.run", description=__doc__)
    parser.add_argument("targets", nargs="*", help=f"any of: {', '.join(TARGETS)}")
    parser.add_argument("--ci", action="store_true", help=f"the CI subset: {CI_TARGETS}")
    parser.add_argument("--list", action="store_true", help="print the targets and exit")
    parser.add_argument(
        "--only",
        nargs="+",
        default=(),
        metavar="MUTANT",
        help="run only these mutants of the (one) target: names or fnmatch patterns, e.g."
        " 'x_output_commit__mutmut_2*' (the module prefix is added)",
    )
    parser.add_argument(
        "--tests",
        nargs="+",
        default=(),
        metavar="TEST",
        help="with --only: this pytest selection instead of the target's (to confirm kills"
        " cheaply; a survivor must be run again with the target's selection)",
    )
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("REDISDB", "6")))
    args = parser.parse_args(argv)
    if args.list:
        for name, target in TARGETS.items():
            print(f"{name:12} {target.module}\n{'':12} <- {' '.join(target.tests)}")
        return 0
    names = list(CI_TARGETS) if args.ci else args.targets
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        parser.error(f"name targets from: {', '.join(TARGETS)}" if not names else f"{unknown}")
    if args.only and len(names) != 1:
        parser.error("--only needs exactly one target")
    if args.tests and not args.only:
        parser.error("--tests needs --only")
    unexplained = {}
    for name in names:
        statuses = run_target(name, args.redis_db, tuple(args.only), tuple(args.tests))
        killed = sum(status in KILLED for status in statuses.values())
        print(f"  {name}: {len(statuses)} mutants, {killed} killed (timeouts included)")
        for mutant, status in statuses.items():
            if status not in KILLED:
                verdict = EQUIVALENT.get(mutant)
                print(f"  {mutant}: {status}" + (f" (equivalent: {verdict})" if verdict else ""))
        unexplained.update(unexplained_of(statuses))
    if unexplained:
        print(f"{len(unexplained)} mutant(s) not killed and not explained as equivalent:")
        for mutant, status in unexplained.items():
            print(f"  {mutant}: {status}")
        return 1
    print("every mutant killed or explained as equivalent")
    return 0


# A mutant that makes the tests time out (a loop that no longer ends) is caught by them.
KILLED = frozenset({"killed", "timeout"})


def unexplained_of(statuses: dict[str, str]) -> dict[str, str]:
    """The mutants neither killed (nor timed out) nor explained as equivalent."""
    return {
        mutant: status
        for mutant, status in statuses.items()
        if status not in KILLED and mutant not in EQUIVALENT
    }


if __name__ == "__main__":
    sys.exit(main())
