"""DAG deployment: validate YAML, store an immutable version (deduplicated by content hash),
register its datasets, and move the org+dag current-version pointer (activate / roll back)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from trace_web.datasets.services import datasets_register
from trace_web.errors import NotFound, ValidationFailed
from trace_web.orchestration.dag_spec import DagSpec, DagSpecError, content_hash, parse_dag_yaml
from trace_web.orchestration.models import DagPointer, DagVersion, Job, JobInput
from trace_web.orchestration.selectors import dag_version_get
from trace_web.orgs.models import Org


@dataclass(frozen=True)
class SyncResult:
    version: DagVersion
    created: bool
    activated: bool


def dag_parse(*, yaml_text: str) -> DagSpec:
    try:
        return parse_dag_yaml(yaml_text)
    except DagSpecError as exc:
        raise ValidationFailed(str(exc).splitlines()[0], details=exc.errors) from exc


@transaction.atomic
def dag_sync(
    *, org: Org, yaml_text: str, user=None, activate: bool = False, expected_name: str | None = None
) -> SyncResult:
    """Deploy a DAG. The same content again is a no-op returning the existing version."""
    spec = dag_parse(yaml_text=yaml_text)
    if expected_name and spec.name != expected_name:
        raise ValidationFailed(
            f"name: the document names DAG {spec.name!r} but was posted to {expected_name!r}",
            details=[f"name: expected {expected_name!r}"],
        )
    pins = _udf_pins(org=org, spec=spec)
    digest = content_hash(spec)
    # Serialize deploys of one DAG name so versions are numbered without gaps or clashes.
    org_locked = Org.objects.select_for_update().get(pk=org.pk)
    version = DagVersion.objects.filter(org=org_locked, name=spec.name, content_hash=digest).first()
    created = version is None
    if created:
        version = _version_create(
            org=org_locked, spec=spec, yaml_text=yaml_text, digest=digest, user=user, pins=pins
        )
    activated = False
    if activate:
        pointer = DagPointer.objects.filter(org=org_locked, name=spec.name).first()
        if pointer is None or pointer.current_id != version.pk:
            dag_activate(org=org_locked, name=spec.name, version=version.version, user=user)
            activated = True
    return SyncResult(version=version, created=created, activated=activated)


def _udf_pins(*, org: Org, spec: DagSpec) -> dict[str, str]:
    """Each udf job's bundle, named by `name@version` or sha256, resolved to the sha256 its
    job version pins; an unknown bundle, or one without the entrypoint, is a sync error."""
    from trace_web.udf.bundle_check import ENTRY_SUFFIXES
    from trace_web.udf.selectors import bundle_find

    pins: dict[str, str] = {}
    errors: list[str] = []
    for index, job in enumerate(spec.jobs):
        if job.udf is None:
            continue
        bundle = bundle_find(org_id=org.pk, ref=job.udf.bundle)
        if bundle is None:
            errors.append(
                f"jobs[{index}].udf.bundle: no bundle {job.udf.bundle!r} in this org "
                "(name it by name@version or sha256; upload it with POST /v1/udf/bundles)"
            )
            continue
        paths = {f.get("path") for f in bundle.manifest.get("files", [])}
        names = [f"{job.udf.entrypoint}{suffix}" for suffix in ENTRY_SUFFIXES[bundle.runtime]]
        if not any(name in paths for name in names):
            errors.append(
                f"jobs[{index}].udf.entrypoint: bundle {bundle} has no {' or '.join(names)}"
            )
            continue
        pins[job.name] = bundle.sha256
    if errors:
        raise ValidationFailed.of(errors)
    return pins


def _version_create(
    *, org: Org, spec: DagSpec, yaml_text: str, digest: str, user, pins: dict[str, str]
) -> DagVersion:
    latest = DagVersion.objects.filter(org=org, name=spec.name).aggregate(v=Max("version"))["v"]
    version = DagVersion.objects.create(
        org=org,
        name=spec.name,
        version=(latest or 0) + 1,
        content_hash=digest,
        source_yaml=yaml_text,
        spec=spec.model_dump(mode="json", by_alias=True),
        created_by=user if getattr(user, "pk", None) else None,
    )
    jobs: dict[str, Job] = {}
    for job_spec in spec.jobs:
        source = job_spec.source
        jobs[job_spec.name] = Job.objects.create(
            dag_version=version,
            org=org,
            name=job_spec.name,
            activation=job_spec.activation,
            runtime=job_spec.runtime,
            operator=job_spec.operator,
            outputs=job_spec.outputs,
            execution_strategy=job_spec.execution_strategy,
            update_strategy=job_spec.update_strategy,
            source_kind=source.kind if source else "",
            schedule=_schedule_text(source),
            config=job_spec.config,
            max_concurrency=job_spec.scaling.max_concurrency if job_spec.scaling else None,
            timeout_seconds=job_spec.timeout_seconds,
            heartbeat_timeout_seconds=job_spec.heartbeat_timeout_seconds,
            max_attempts=job_spec.max_attempts or settings.TRACE_MAX_ATTEMPTS,
            spec=_job_spec(job_spec, pins.get(job_spec.name)),
        )
    for job_spec in spec.jobs:
        for position, edge in enumerate(job_spec.inputs):
            origin = edge.from_
            JobInput.objects.create(
                job=jobs[job_spec.name],
                position=position,
                from_job=jobs[origin.job] if getattr(origin, "job", None) else None,
                from_output=getattr(origin, "output", None)
                if getattr(origin, "job", None)
                else None,
                from_dataset_name=getattr(origin, "dataset", None) or "",
                where=dict(edge.where),
            )
    datasets_register(org=org, dag_name=spec.name, spec=spec)
    return version


def _job_spec(job_spec, bundle_sha256: str | None) -> dict:
    spec = job_spec.model_dump(mode="json", by_alias=True)
    if bundle_sha256 is not None:
        spec["udf"]["sha256"] = bundle_sha256  # what every run fetches and checks
    return spec


def _schedule_text(source) -> str:
    if source is None or source.kind != "cron":
        return ""
    return source.schedule or f"every {source.every_seconds}s"


@transaction.atomic
def dag_activate(*, org: Org, name: str, version: int, user=None) -> DagPointer:
    """Point org+dag at `version` (activate, or roll back to an older one) in one transaction,
    and bring cron schedules in line with the now-active jobs."""
    from trace_web.orchestration.services.sources import cron_schedules_sync

    target = dag_version_get(org_id=org.pk, name=name, version=version)
    pointer = DagPointer.objects.select_for_update().filter(org=org, name=name).first()
    editor = user if getattr(user, "pk", None) else None
    if pointer is None:
        pointer = DagPointer.objects.create(org=org, name=name, current=target, updated_by=editor)
    elif pointer.current_id != target.pk:
        pointer.previous_id = pointer.current_id
        pointer.current = target
        pointer.updated_by = editor
        pointer.save(update_fields=["previous", "current", "updated_by", "updated_at"])
    cron_schedules_sync(org=org, dag_name=name)
    return pointer


@transaction.atomic
def dag_rollback(*, org: Org, name: str, user=None) -> DagPointer:
    pointer = DagPointer.objects.select_for_update().filter(org=org, name=name).first()
    if pointer is None:
        raise NotFound(f"DAG {name!r} has no active version")
    if pointer.previous_id is None:
        raise ValidationFailed(f"DAG {name!r} has no previous version to roll back to")
    return dag_activate(org=org, name=name, version=pointer.previous.version, user=user)
