"""What a udf job's run relies on before any user code starts: DAG sync pins the bundle a job
names (by name@version or sha256) to its sha256, and every run fetches the stored bundle and
checks it against its manifest, failing closed on any mismatch."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.udf_bundles import HANDLER, bundle, manifest_for, public_key_b64, zip_bytes
from trace_chain.object_store import object_store_from_url
from trace_tasks.runner import task_run
from trace_tasks.task_api import InProcessTaskApi
from trace_web.orchestration.models import Job
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import task_claim
from trace_web.udf.services import (
    BundleCorrupt,
    bundle_materialize,
    bundle_upload,
    signing_policy_set,
)


def udf_dag(ref: str, *, entrypoint: str = "main", name: str = "users") -> str:
    return f"""
name: {name}
jobs:
  - name: handle
    activation: manual
    runtime: udf
    operator: udf
    update_strategy: replace
    udf: {{bundle: "{ref}", entrypoint: {entrypoint}}}
    config: {{params: {{threshold: 3}}}}
"""


@pytest.fixture(autouse=True)
def _no_broker(settings, monkeypatch):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kwargs: None)


@pytest.mark.parametrize("by", ["name@version", "sha256"])
def test_dag_sync_pins_the_named_bundle_to_its_sha256(org, by):
    stored = bundle_upload(org=org, data=bundle()).bundle
    ref = "demo@1.0.0" if by == "name@version" else stored.sha256
    dag_sync(org=org, yaml_text=udf_dag(ref), activate=True)
    job = Job.objects.get(org=org, name="handle")
    assert job.spec["udf"] == {"bundle": ref, "entrypoint": "main", "sha256": stored.sha256}


def test_an_unknown_bundle_or_entrypoint_is_a_sync_error_naming_the_field(org, other_org, api):
    bundle_upload(org=other_org, data=bundle())  # another org's bundle is no bundle of ours
    response = api.post("/v1/dags/users/versions", {"yaml": udf_dag("demo@1.0.0")}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0].startswith(
        "jobs[0].udf.bundle: no bundle 'demo@1.0.0' in this org"
    )
    bundle_upload(org=org, data=bundle())
    response = api.post(
        "/v1/dags/users/versions",
        {"yaml": udf_dag("demo@1.0.0", entrypoint="other")},
        format="json",
    )
    assert response.json()["errors"] == [
        "jobs[0].udf.entrypoint: bundle demo@1.0.0 "
        f"({hashlib.sha256(bundle()).hexdigest()[:12]}) has no other.py"
    ]
    assert not Job.objects.filter(org=org).exists()


def test_a_stored_bundle_is_materialized_as_its_manifest_says(org, tmp_path):
    files = {"main.py": HANDLER.encode(), "lib/abi.py": b"TRANSFER = 'Transfer'\n"}
    stored = bundle_upload(org=org, data=bundle(files)).bundle
    checked = bundle_materialize(org_id=org.pk, sha256=stored.sha256, dest=tmp_path)
    assert checked.manifest.entrypoint == "main"
    assert (tmp_path / "main.py").read_bytes() == files["main.py"]
    assert (tmp_path / "lib" / "abi.py").read_bytes() == files["lib/abi.py"]
    assert not (tmp_path / "main.py").stat().st_mode & 0o222  # read-only


def _tamper_file(data: bytes) -> bytes:
    """The same zip with main.py changed but the manifest kept."""
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info in source.infolist():
            content = source.read(info)
            archive.writestr(
                info.filename, b"import os\n" if info.filename == "main.py" else content
            )
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        (_tamper_file, "the stored zip's sha256 is"),
        (lambda data: data + b"\0", "the stored zip's sha256 is"),
        (None, "its stored zip cannot be read"),
    ],
)
def test_a_run_fails_closed_when_the_stored_bundle_does_not_match(
    org, settings, tamper, error, tmp_path
):
    data = bundle()
    stored = bundle_upload(org=org, data=data).bundle
    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    if tamper is None:
        store.delete_prefix(stored.key)
    else:
        store.put_bytes(tamper(data), stored.key)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BundleCorrupt, match=r"bundle demo@1\.0\.0") as raised:
        bundle_materialize(org_id=org.pk, sha256=stored.sha256, dest=dest)
    assert error in raised.value.message
    assert list(dest.iterdir()) == []  # nothing of it was written


def test_an_unsigned_bundle_does_not_run_once_the_org_requires_signatures(org, tmp_path):
    stored = bundle_upload(org=org, data=bundle()).bundle
    key = Ed25519PrivateKey.generate()
    signing_policy_set(org=org, keys={"release": public_key_b64(key)}, require_signed=True)
    with pytest.raises(BundleCorrupt, match="only signed manifests"):
        bundle_materialize(org_id=org.pk, sha256=stored.sha256, dest=tmp_path)


def test_the_task_api_refuses_a_corrupt_bundle_as_a_permanent_error(org, settings, tmp_path):
    from trace_operators.context import PermanentError

    stored = bundle_upload(org=org, data=bundle()).bundle
    dag_sync(org=org, yaml_text=udf_dag("demo@1.0.0"), activate=True)
    task = job_run_manual(org=org, dag_name="users", job_name="handle")
    claimed = task_claim(task_id=task.pk, worker_id="udf")
    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    files = {"main.py": b"import os\n"}
    store.put_bytes(zip_bytes(files, manifest_for(files)), stored.key)
    with pytest.raises(PermanentError, match=r"bundle_corrupt: bundle demo@1\.0\.0"):
        InProcessTaskApi(claimed).bundle_materialize(tmp_path)


def test_without_the_sandbox_a_udf_task_fails_for_good_and_never_runs_the_handler(org, monkeypatch):
    import sys

    import trace_tasks

    monkeypatch.setitem(sys.modules, "trace_tasks.sandbox", None)  # import fails
    # and once imported elsewhere in this process, `from trace_tasks import sandbox` would
    # find the package's attribute without looking at sys.modules
    monkeypatch.delattr(trace_tasks, "sandbox", raising=False)
    bundle_upload(org=org, data=bundle())
    dag_sync(org=org, yaml_text=udf_dag("demo@1.0.0"), activate=True)
    task = job_run_manual(org=org, dag_name="users", job_name="handle")
    assert task_run(task_id=task.pk, worker_id="udf").status == "failed"
    task.refresh_from_db()
    assert task.status == "Failed" and task.next_retry_at is None
    assert "sandbox unavailable" in task.error and "never runs unsandboxed" in task.error
