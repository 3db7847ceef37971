"""`trace alerts dlq list|replay`: an operator lists the sink's dead letters (id, org, task,
attempt, rows, error, status, created) and replays one after repairing its batch, through
the sink itself, against real Postgres (both databases) and the object store."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.alerts.conftest import dead_letter, event_row
from trace_web.alerts.models import AlertEvent, DeadLetterBatch
from trace_web.alerts.services import alert_definition_create, channel_create

TO_ALICE = {"match": "transaction", "to": ["0x" + "a1" * 20]}


@pytest.fixture
def definition(org, hot_engine):
    channel_create(
        org=org, spec={"name": "hook", "kind": "webhook", "target": "http://127.0.0.1:9/"}
    )
    return alert_definition_create(
        org=org,
        spec={"name": "whale", "chain_id": 31337, "condition": TO_ALICE, "channels": ["hook"]},
    )


def run(*args) -> str:
    out = io.StringIO()
    call_command("alerts", *args, stdout=out)
    return out.getvalue()


def test_list_shows_each_dead_letter_with_its_rows_and_error(org, other_org, definition):
    mine = dead_letter(org, definition, [event_row(definition)] * 2, error="line 2:\n bad")
    theirs_definition = alert_definition_create(
        org=other_org, spec={"name": "w", "chain_id": 1, "condition": TO_ALICE}
    )
    theirs = dead_letter(other_org, theirs_definition, [{}], task_id=42)
    lines = run("dlq", "list").splitlines()
    assert lines[0].split() == [
        "id",
        "org",
        "task",
        "attempt",
        "rows",
        "error",
        "status",
        "created",
    ]
    assert lines[1].split()[:7] == [str(mine.pk), "acme", "41", "1", "2", "line", "2:"]
    assert " bad " in lines[1] and "pending" in lines[1]
    assert lines[2].split()[:5] == [str(theirs.pk), "globex", "42", "1", "1"]
    only = run("dlq", "list", "--org", "globex").splitlines()
    assert len(only) == 2 and only[1].startswith(str(theirs.pk))
    with pytest.raises(CommandError, match="no org 'nope'"):
        run("dlq", "list", "--org", "nope")


def test_replay_after_a_repair_writes_the_events_and_says_so(org, definition, settings):
    from trace_chain.object_store import object_store_from_url

    bad = event_row(definition, block_hash="0xnot-a-hash")
    letter = dead_letter(org, definition, [event_row(definition, block=4), bad])
    with pytest.raises(CommandError, match="still refused"):
        run("dlq", "replay", str(letter.pk))
    assert not AlertEvent.objects.exists()
    assert DeadLetterBatch.objects.get(pk=letter.pk).status == "pending"
    # The repair: the batch rewritten with the row fixed, where the record points.
    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    location = letter.record["batches"][0]["location"]
    key = location[len(store.uri().rstrip("/")) + 1 :]
    fixed = [event_row(definition, block=4), event_row(definition, block=5)]
    store.put_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in fixed), key)
    out = run("dlq", "replay", str(letter.pk))
    assert out.startswith(f"dead letter {letter.pk} replayed: 2 event(s) created")
    assert sorted(AlertEvent.objects.values_list("block_number", flat=True)) == [4, 5]
    assert DeadLetterBatch.objects.get(pk=letter.pk).status == "replayed"
    assert "no dead letters pending" in run("dlq", "list")
    assert str(letter.pk) in run("dlq", "list", "--all")
    with pytest.raises(CommandError, match="already replayed"):
        run("dlq", "replay", str(letter.pk))
    with pytest.raises(CommandError, match="no dead letter 999999"):
        run("dlq", "replay", "999999")


def test_the_trace_command_runs_it(org, definition):
    from trace_web.cli import main

    dead_letter(org, definition, [event_row(definition)])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["alerts", "dlq", "list"]) == 0
    assert "acme" in out.getvalue() and "pending" in out.getvalue()
