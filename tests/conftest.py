"""Shared fixtures: orgs and users, API clients, and real Celery worker processes."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests import subprocess_coverage
from tests.factories import MembershipFactory, OrgFactory, UserFactory
from trace_web.orgs.models import Role

# Chain fixtures (anvil, fresh_anvil, chain_with_traffic, anvil_pool) and the Lite worker
# layout for drills (lite_stack) for every test module.
pytest_plugins = ["tests.chain_fixtures", "tests.stack_fixtures"]


def pytest_configure(config) -> None:
    # Under `coverage run`, the processes tests start can save their data before being killed.
    subprocess_coverage.prepare_children_environment()


@pytest.hookimpl(trylast=True)  # after pytest-django's own ordering by database use
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start Celery processes first (in their own order): they are few but hold most
    of the wall time, mostly waiting on leases and outages. Under xdist (README: `-n 2`) they
    are dealt out to the workers first, so the waits of the two overlap and the many short tests
    fill in after them, instead of one worker ending on a queue of drills."""
    items.sort(key=lambda item: item.get_closest_marker("celery") is None)


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Rate limits count in Django's cache, per process: each test starts with none spent."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def org(db):
    return OrgFactory(slug="acme")


@pytest.fixture
def other_org(db):
    return OrgFactory(slug="globex")


def _client_for(org, role=Role.MEMBER, username=None):
    user = UserFactory(username=username or f"{org.slug}-{role}")
    MembershipFactory(org=org, user=user, role=role)
    client = APIClient()
    client.force_authenticate(user)
    client.user = user
    return client


@pytest.fixture
def client_for():
    return _client_for


@pytest.fixture
def api(org):
    return _client_for(org, Role.ADMIN)


@pytest.fixture
def services(transactional_db, tmp_path, settings):
    """Start real Celery processes on demand; every one is stopped at teardown.

    Tests using it run against committed data (transactional_db) because the workers are other
    processes. This run's broker keys (and only those: the db may be shared) are deleted first,
    so no stale wake-up leaks in."""
    from tests import processes
    from tests.plugin_services import delete_broker_keys

    delete_broker_keys(settings.TRACE_BROKER_URL, settings.TRACE_BROKER_KEY_PREFIX)
    started: list[processes.ServiceProcess] = []

    class Services:
        log_dir = tmp_path

        def worker(self, name="w1", **kwargs):
            started.append(processes.start_worker(name, tmp_path, **kwargs))
            return started[-1]

        def stream_worker(self, name="stream"):
            started.append(processes.start_stream_worker(name, tmp_path))
            return started[-1]

        def dispatcher(self, name="dispatcher"):
            return self.worker(name, queues="dispatcher", concurrency=1)

        def beat(self):
            started.append(processes.start_beat(tmp_path))
            return started[-1]

    yield Services()
    for proc in reversed(started):
        proc.stop()


@pytest.fixture(scope="session")
def _data_db_migrated():
    from trace_chain.db import migrate_data_db

    migrate_data_db()


@pytest.fixture
def hot_engine(_data_db_migrated):
    """The data DB engine with empty hot tables (and no compacted segments)."""
    import sqlalchemy as sa

    from trace_chain import cold_segments  # noqa: F401 - declared on metadata: emptied too
    from trace_chain.db import data_engine
    from trace_chain.hot_schema import metadata

    engine = data_engine()
    with engine.begin() as conn:
        names = ", ".join(table.name for table in metadata.sorted_tables)
        conn.execute(sa.text(f"TRUNCATE {names}"))
    return engine
