"""manage.py run_job DAG JOB --org SLUG: queue a manual run of a job of the active version."""

import json

from django.core.management.base import BaseCommand, CommandError

from trace_web.errors import TraceError
from trace_web.orchestration.serializers import RunIn
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import TaskScope
from trace_web.orgs.selectors import org_by_slug
from trace_web.parsers import json_loads_strict


class Command(BaseCommand):
    help = "Queue a manual run of a job in the active version of a DAG."

    def add_arguments(self, parser):
        parser.add_argument("dag")
        parser.add_argument("job")
        parser.add_argument("--org", required=True)
        parser.add_argument("--payload", default="{}", help="JSON object given to the task")
        parser.add_argument("--partition-key")
        parser.add_argument("--range", help="START:END block range, end-exclusive")

    def handle(self, *args, dag, job, org, payload, partition_key, range, **options):
        target = org_by_slug(org)
        if target is None:
            raise CommandError(f"no org {org!r}")
        try:
            start, end = (int(x) for x in range.split(":")) if range else (None, None)
            data = json_loads_strict(payload)
        except ValueError as exc:
            raise CommandError(f"bad argument: {exc}") from exc
        # The same input check as POST /v1/dags/{dag}/jobs/{job}/runs.
        scope = {"partition_key": partition_key, "range_start": start, "range_end": end}
        body = RunIn(
            data={"payload": data, "scope": {k: v for k, v in scope.items() if v is not None}}
        )
        if not body.is_valid():
            raise CommandError(f"bad argument: {json.dumps(body.errors)}")
        try:
            task = job_run_manual(
                org=target,
                dag_name=dag,
                job_name=job,
                payload=body.validated_data["payload"],
                scope=TaskScope(**body.validated_data.get("scope", {})),
            )
        except TraceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"task {task.pk} queued ({dag}.{job}, attempt {task.attempt})")
