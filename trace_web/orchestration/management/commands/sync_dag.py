"""manage.py sync_dag FILE [--activate] --org SLUG: deploy a DAG version (same as the API)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from trace_web.errors import TraceError
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orgs.selectors import org_by_slug


class Command(BaseCommand):
    help = "Validate and deploy a DAG YAML file; re-syncing unchanged content is a no-op."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--org", required=True, help="org slug")
        parser.add_argument("--activate", action="store_true", help="make it the active version")

    def handle(self, *args, file: Path, org: str, activate: bool, **options):
        target = org_by_slug(org)
        if target is None:
            raise CommandError(f"no org {org!r}")
        try:
            result = dag_sync(org=target, yaml_text=file.read_text(), activate=activate)
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {file} as UTF-8 text: {exc}") from exc
        except TraceError as exc:
            lines = [exc.message, *(f"  {e}" for e in (exc.details or []))]
            raise CommandError("\n".join(lines)) from exc
        version = result.version
        state = "created" if result.created else "unchanged (same content)"
        self.stdout.write(f"{version.name} v{version.version}: {state}")
        if result.activated:
            self.stdout.write(f"{version.name}: active version is now v{version.version}")
