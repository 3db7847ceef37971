"""deploy/compose.yaml read as data (images cannot be pulled here, so the stack is not run): every
platform role is there, long-running services have healthchecks, the platform's object store is
the S3-compatible service, images are pinned, no secret is inlined, ports bind to loopback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from trace_tasks.queues import Queue

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE_TEXT = (DEPLOY / "compose.yaml").read_text()
SERVICES: dict = yaml.safe_load(COMPOSE_TEXT)["services"]
ONE_SHOT = {name for name, s in SERVICES.items() if s.get("restart") == "no"}
PLATFORM = {name for name, s in SERVICES.items() if s.get("image") == "trace-platform:local"}


def role(service: dict) -> str:
    """The role a platform container runs: web (the image's CMD), beat, worker:<queue>, flower."""
    argv = service.get("command")
    if argv is None:
        return "web"
    if argv[:3] != ["celery", "-A", "trace_tasks.celery_app"]:
        return argv[0]
    if argv[3] == "worker":
        return f"worker:{argv[argv.index('-Q') + 1]}"
    return argv[3]


def test_every_platform_role_runs_from_the_one_image():
    roles = sorted(role(SERVICES[name]) for name in PLATFORM - ONE_SHOT)
    expected = ["beat", "flower", "web", *(f"worker:{q.value}" for q in Queue)]
    assert roles == sorted(expected)
    for name in PLATFORM:
        assert SERVICES[name]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


def test_every_long_running_service_has_a_healthcheck():
    long_running = set(SERVICES) - ONE_SHOT
    assert {"postgres", "redis", "minio", "web", "beat", "flower"} <= long_running
    missing = sorted(n for n in long_running if not SERVICES[n].get("healthcheck", {}).get("test"))
    assert missing == []


def test_one_shot_services_run_before_the_platform_roles():
    assert {"migrate", "minio-init"} == ONE_SHOT
    for name in PLATFORM - ONE_SHOT:
        needs = SERVICES[name]["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}
        assert needs["minio-init"] == {"condition": "service_completed_successfully"}
    assert SERVICES["minio-init"]["depends_on"]["minio"] == {"condition": "service_healthy"}


def test_the_object_store_is_the_s3_service_with_credentials_from_the_environment():
    env = SERVICES["web"]["environment"]
    assert env["TRACE_OBJECT_STORE_URL"] == "s3://trace-objects/"
    assert env["TRACE_S3_ENDPOINT_URL"] == "http://minio:9000"
    # The same key pair MinIO is started with, the secret from the caller's environment.
    minio_env = SERVICES["minio"]["environment"]
    assert env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]
    assert env["AWS_SECRET_ACCESS_KEY"].startswith("${TRACE_S3_PASSWORD:?")
    # minio-init makes exactly the bucket the platform uses.
    assert SERVICES["minio-init"]["entrypoint"][-1] == "trace/trace-objects"


# The platform's own image is built from deploy/Dockerfile, whose base is checked below.
@pytest.mark.parametrize("name", sorted(set(SERVICES) - PLATFORM))
def test_images_are_pinned_to_an_exact_version(name):
    image = SERVICES[name]["image"]
    _, _, tag = image.partition(":")
    assert tag and tag != "latest", image
    # A version with at least major.minor (postgres:16.10-...), or a dated MinIO release.
    assert re.match(r"^(\d+\.\d+[\w.-]*|RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z)$", tag), image


def test_the_dockerfile_base_is_pinned_and_the_image_runs_as_non_root():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, flags=re.M)
    assert re.match(r"^python:3\.11\.\d+-slim-bookworm$", base), base
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.M)
    assert users and users[-1] not in ("root", "0")


SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$")


def test_no_secret_is_inlined():
    """Every secret-looking variable takes its value from the caller's environment (and fails
    when it is unset); the password inside a URL too."""
    for name, service in SERVICES.items():
        for var, value in (service.get("environment") or {}).items():
            if SECRET_NAMES.search(var):
                assert str(value).startswith("${") and ":?" in str(value), (name, var)
            if isinstance(value, str) and "://" in value and "@" in value:
                password = value.split("://", 1)[1].rsplit("@", 1)[0].partition(":")[2]
                assert password.startswith("${") and ":?" in password, (name, var)


def test_published_ports_bind_to_loopback_only():
    published = [(n, p) for n, s in SERVICES.items() for p in s.get("ports", [])]
    assert {n for n, _ in published} == {"web", "flower", "minio"}
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), (name, port)


def test_beats_healthcheck_is_a_valid_trace_smoke_command():
    from trace_web.cli import _parser

    argv = SERVICES["beat"]["healthcheck"]["test"]
    assert argv[:3] == ["CMD", "trace", "smoke"]
    assert _parser().parse_args(argv[2:]).only == ["state-db", "broker"]
