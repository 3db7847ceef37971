"""trace tasks list|cancel|retry|run-now --org ORG: the task operations of the API and the
admin from a shell, through the same selectors and services."""

from __future__ import annotations

import getpass
from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError, CommandParser

from trace_operators.validation import BIGINT_MAX
from trace_web.errors import TraceError
from trace_web.orchestration.models import Task, TaskStatus
from trace_web.orchestration.selectors import tasks_filter
from trace_web.orchestration.serializers import TaskListQuery
from trace_web.orchestration.services.tasks import task_cancel, task_retry, task_run_now
from trace_web.orgs.models import Org
from trace_web.orgs.selectors import org_by_slug

ERROR_WIDTH = 60


def _task_id(text: str) -> int:
    value = int(text)
    if not 1 <= value <= BIGINT_MAX:
        raise ValueError(f"not a task id: {text}")
    return value


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


class Command(BaseCommand):
    help = "List, cancel, retry or run now the tasks of an org."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="tasks, newest first")
        listing.add_argument("--org", required=True)
        listing.add_argument("--status", choices=TaskStatus.values)
        listing.add_argument("--dag", help="DAG name")
        listing.add_argument("--job", help="job name")
        listing.add_argument("--limit", default="20", help="at most this many (20, up to 1000)")
        listing.add_argument("--before-id", help="only older tasks (the paging cursor)")
        listing.add_argument("--created-after", help="ISO 8601, inclusive")
        listing.add_argument("--created-before", help="ISO 8601, exclusive")
        for name, text in (
            ("cancel", "cancel queued, running or retry-waiting tasks"),
            ("retry", "queue again tasks that failed for good or were canceled"),
            ("run-now", "start now failed tasks waiting for their retry"),
        ):
            operation = sub.add_parser(name, help=text)
            operation.add_argument("task_ids", type=_task_id, nargs="+", metavar="TASK_ID")
            operation.add_argument("--org", required=True)

    def handle(self, *args, action: str, org: str, **options) -> None:
        target = org_by_slug(org)
        if target is None:
            raise CommandError(f"no org {org!r}")
        if action == "list":
            return self._list(target, options)
        by = f"by {_operator()} (trace tasks)"
        operations: dict[str, tuple[Callable[..., Task], str]] = {
            "cancel": (task_cancel, "canceled"),
            "retry": (task_retry, "retried"),
            "run-now": (task_run_now, "run now"),
        }
        service, verb = operations[action]
        refused = 0
        for task_id in options["task_ids"]:
            try:
                task = service(task_id=task_id, org_id=target.pk, reason=f"{verb} {by}")
            except TraceError as exc:
                self.stderr.write(f"task {task_id}: {exc.message}")
                refused += 1
            else:
                self.stdout.write(f"task {task.pk}: {task.status}, attempt {task.attempt}")
        if refused:
            raise CommandError(f"{refused} of {len(options['task_ids'])} task(s) refused")

    def _list(self, org: Org, options: dict) -> None:
        # The same input check as GET /v1/tasks.
        names = ("status", "dag", "job", "limit", "before_id", "created_after", "created_before")
        query = TaskListQuery(data={n: options[n] for n in names if options[n] is not None})
        if not query.is_valid():
            raise CommandError(
                "; ".join(
                    f"--{field.replace('_', '-')}: {' '.join(errors)}"
                    for field, errors in query.errors.items()
                )
            )
        wanted = query.validated_data
        tasks = tasks_filter(
            Task.objects.filter(org=org).select_related("job__dag_version"),
            **{n: wanted.get(n) for n in names if n != "limit"},
        )
        limit = wanted["limit"]
        page = list(tasks[:limit])
        self.stdout.write(
            f"{'ID':>8}  {'DAG.JOB':<28} {'STATUS':<9} {'ATTEMPT':<7}  {'TRIGGER':<10} "
            f"{'CREATED':<19}  ERROR"
        )
        for task in page:
            job = task.job
            error = task.error.splitlines()[0] if task.error else ""
            if len(error) > ERROR_WIDTH:
                error = error[: ERROR_WIDTH - 1] + "…"
            self.stdout.write(
                f"{task.pk:>8}  {f'{job.dag_version.name}.{job.name}':<28} {task.status:<9} "
                f"{f'{task.attempt}/{task.max_attempts}':<7}  {task.trigger:<10} "
                f"{task.created_at:%Y-%m-%d %H:%M:%S}  {error}"
            )
        if len(page) == limit:
            self.stdout.write(f"more: --before-id {page[-1].pk}")
