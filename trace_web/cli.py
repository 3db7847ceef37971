"""The `trace` command: `trace lite up|status|down|env`, `trace data-migrate`, `trace
worker-alive`, `trace smoke`, and every other `trace <command>` handed to Django's manage.py
with the Lite env file loaded.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from trace_web.lite.envfile import load_lite_env, trace_home

OWN_COMMANDS = {"lite", "data-migrate", "worker-alive", "smoke", "-h", "--help"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] not in OWN_COMMANDS:
        return _manage(argv)
    args = _parser().parse_args(argv)
    if not hasattr(args, "handler"):
        _parser().print_help()
        return 2
    return args.handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trace",
        description="Trace platform command. Any other command is run by Django's manage.py "
        "(e.g. `trace sync_dag FILE`, `trace help`).",
    )
    commands = parser.add_subparsers(metavar="command")
    lite = commands.add_parser("lite", help="the one-command local stack")
    lite_commands = lite.add_subparsers(metavar="action", required=True)

    up = lite_commands.add_parser("up", help="start the stack in the foreground (Ctrl-C stops)")
    up.add_argument("--port", type=int, default=8000, help="web server port (default 8000)")
    up.add_argument("--flower-port", type=int, default=5555, help="Flower port (default 5555)")
    up.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="deploy and run the noop demo DAG once up (default: on)",
    )
    up.set_defaults(handler=_lite_up)
    for name, handler, text in [
        ("status", _lite_status, "show each component, its pid, state and URL"),
        ("down", _lite_down, "stop a running stack"),
        ("env", _lite_env, 'print `export` lines for this shell: eval "$(trace lite env)"'),
    ]:
        lite_commands.add_parser(name, help=text).set_defaults(handler=handler)
    for sub in lite_commands.choices.values():
        sub.add_argument("--home", type=Path, help="state directory ($TRACE_HOME or .trace)")

    migrate = commands.add_parser("data-migrate", help="migrate the data DB (Alembic) to head")
    migrate.add_argument(
        "--create-database", action="store_true", help="CREATE DATABASE first if it is missing"
    )
    migrate.set_defaults(handler=_data_migrate)

    alive = commands.add_parser(
        "worker-alive",
        help="exit 0 if a Celery worker consumed recently (a container liveness check)",
    )
    alive.add_argument(
        "--node",
        help="the worker's node name, e.g. platform@host (default: every worker "
        "with a liveness file, for a container running one worker)",
    )
    alive.add_argument(
        "--max-age", type=float, default=60.0, help="seconds since the last touch (default 60)"
    )
    alive.set_defaults(handler=_worker_alive)

    smoke = commands.add_parser(
        "smoke",
        help="check the databases, the broker, the object store (and SNS) answer: "
        "one ok/FAIL line each, exit 1 on any failure",
    )
    smoke.add_argument(
        "--only",
        type=_check_names,
        help="comma-separated checks to run (default all): state-db,data-db,broker,"
        "object-store,sns",
    )
    smoke.add_argument(
        "--timeout", type=float, default=10.0, help="seconds each check may take (default 10)"
    )
    smoke.set_defaults(handler=_smoke)
    return parser


def _check_names(raw: str) -> list[str]:
    from trace_web.observability.smoke import CHECKS

    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CHECKS))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown check(s) {unknown or names}; known: {', '.join(CHECKS)}"
        )
    return names


def _home(args: argparse.Namespace) -> Path:
    """--home wins over TRACE_HOME; exported so children and lite.env agree on it."""
    if args.home:
        os.environ["TRACE_HOME"] = str(args.home.resolve())
    return trace_home()


def _lite_up(args: argparse.Namespace) -> int:
    from trace_web.lite import stack

    home = _home(args)
    try:
        return stack.up(home=home, port=args.port, flower_port=args.flower_port, demo=args.demo)
    except stack.StackError as exc:
        print(f"trace lite: {exc}", file=sys.stderr)
        return 1


def _lite_status(args: argparse.Namespace) -> int:
    from trace_web.lite import stack

    return stack.status(home=_home(args))


def _lite_down(args: argparse.Namespace) -> int:
    from trace_web.lite import stack

    return stack.down(home=_home(args))


def _lite_env(args: argparse.Namespace) -> int:
    from trace_web.lite import stack

    return stack.env_exports(home=_home(args))


def _data_migrate(args: argparse.Namespace) -> int:
    load_lite_env()
    from trace_chain.db import data_db_url, migrate_data_db

    if args.create_database:
        from trace_web.lite.services import ensure_databases, server_url

        url = data_db_url()
        ensure_databases(server_url(url), [urlsplit(url).path.lstrip("/")])
    migrate_data_db()
    print("data DB migrated to head")
    return 0


def _worker_alive(args: argparse.Namespace) -> int:
    load_lite_env()
    from trace_tasks.liveness import worker_alive

    alive, why = worker_alive(node=args.node, max_age=args.max_age)
    print(why, file=sys.stdout if alive else sys.stderr)
    return 0 if alive else 1


def _smoke(args: argparse.Namespace) -> int:
    load_lite_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trace_web.settings")
    try:
        import django

        django.setup()
    except Exception as exc:  # settings that do not load: one line, not a traceback
        print(f"FAIL settings      {' '.join(str(exc).split())}")
        return 1
    from trace_web.observability.smoke import smoke_checks

    failed = False
    for result in smoke_checks(only=args.only, timeout=args.timeout):
        print(result.line(), flush=True)
        failed = failed or result.failed
    return 1 if failed else 0


def _manage(argv: list[str]) -> int:
    load_lite_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trace_web.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["trace", *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
