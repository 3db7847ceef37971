"""Beat stops on SIGTERM even when the signal lands while its database query waits.

Celery's own SIGTERM handler saves the schedule inside the handler; with psycopg 3 that query
waits for the connection's (non-reentrant) lock, which the interrupted query in the main thread
holds, so beat hung until a supervisor killed it. Trace's handler only raises SystemExit: the
interrupted query is cancelled and the schedule is saved after the stack has unwound."""

from __future__ import annotations

import re
import subprocess

import psycopg
import pytest
from django_celery_beat.models import PeriodicTask

from tests import processes
from tests.waiting import wait_for

pytestmark = pytest.mark.celery

WAITING_ON_TABLE = """
    SELECT count(*) FROM pg_locks
    WHERE relation = 'django_celery_beat_periodictasks'::regclass AND NOT granted
"""


def test_beat_stops_on_sigterm_while_its_database_query_waits(services):
    beat = services.beat()
    beat.wait_for_log("Sending due task", timeout=60)  # entries to save at shutdown
    with (
        psycopg.connect(processes.test_state_db_url()) as blocker,
        psycopg.connect(processes.test_state_db_url(), autocommit=True) as observer,
    ):
        # Beat reads this table on every tick (has the schedule changed?): its next read waits.
        blocker.execute("LOCK TABLE django_celery_beat_periodictasks IN ACCESS EXCLUSIVE MODE")
        wait_for(
            lambda: observer.execute(WAITING_ON_TABLE).fetchone()[0] > 0,
            timeout=30,
            what="beat's schedule query waiting on the locked table",
        )
        beat.proc.terminate()
        # The handler cancels the waiting query (a deadlocked handler never would).
        wait_for(
            lambda: observer.execute(WAITING_ON_TABLE).fetchone()[0] == 0,
            timeout=30,
            what="beat's waiting query cancelled by its SIGTERM handler",
        )
        blocker.rollback()
    try:
        returncode = beat.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"beat did not exit after SIGTERM:\n{beat.log()[-3000:]}")
    assert returncode == 0, beat.log()[-3000:]
    # ... and the schedule was saved on the way out (beat's periodic save is minutes away).
    sent = set(re.findall(r"Sending due task (\S+)", beat.log()))
    runs = dict(PeriodicTask.objects.values_list("name", "total_run_count"))
    assert sent and all(runs[name] > 0 for name in sent), (sent, runs)
