"""The alert sink called directly, without a chain or a sandbox: a publication's rows become
events field by field, once per dedupe key; one bad row (or a bad record) dead-letters the
whole publication with the reason and writes nothing; a window the new evaluation read
retracts what it no longer finds there, and only there; a backtest's events are its own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.alerts.conftest import dead_letter, event_row, make_event, published_record
from trace_web.alerts.models import AlertEvent, DeadLetterBatch, Delivery
from trace_web.alerts.services import alert_definition_create, channel_create
from trace_web.alerts.sink import (
    PAYLOAD_MAX_BYTES,
    EventRow,
    dead_letter_replay,
    event_keys,
    publication_sink,
)
from trace_web.errors import ValidationFailed

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


def store_root(settings) -> str:
    from trace_chain.object_store import object_store_from_url

    root = object_store_from_url(settings.TRACE_OBJECT_STORE_URL).uri()
    return root if root.endswith("/") else root + "/"


def block_hash(number: int) -> str:
    return "0x" + f"{number:064x}"


def test_rows_become_events_field_by_field_and_are_routed(org, definition):
    full = event_row(
        definition,
        block=7,
        log_index=3,
        block_time=1_700_000_000,
        key="leg-1",
        payload={"value": 5},
    )
    bare = event_row(definition, block=8, tx_hash=None)
    record = published_record(org, definition, [full, bare], task_id=50)
    outcome = publication_sink(record=record)
    assert (outcome.created, outcome.existing, outcome.stale, outcome.retracted) == (2, 0, 0, 0)
    assert not outcome.dead_lettered
    assert outcome.deliveries == 2 and Delivery.objects.count() == 2
    first, second = AlertEvent.objects.order_by("block_number")
    assert [e.pk for e in outcome.events] == [first.pk, second.pk]
    dedupe, match = event_keys(EventRow.model_validate(full))
    assert (first.dedupe_key, first.match_key) == (dedupe, match)
    assert (first.org_id, first.definition_id, first.chain_id) == (org.pk, definition.pk, 31337)
    assert (first.block_number, first.block_hash) == (7, block_hash(7))
    assert (first.tx_hash, first.log_index) == ("0x" + "cd" * 32, 3)
    assert first.event_time == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert first.payload == {"value": 5}
    assert (first.producer_task_id, first.producer_attempt) == (50, 1)
    assert (first.backtest, first.state, first.retracted_at) == (False, "active", None)
    assert (second.tx_hash, second.log_index, second.event_time, second.payload) == (
        "",
        None,
        None,
        {},
    )


def test_the_same_publication_twice_is_one_event_per_key(org, definition):
    rows = [event_row(definition, block=4), event_row(definition, block=4, key="other")]
    record = published_record(org, definition, rows)
    publication_sink(record=record)
    again = publication_sink(record=record)
    assert (again.created, again.existing, again.deliveries, again.events) == (0, 2, 0, [])
    assert AlertEvent.objects.count() == 2 and Delivery.objects.count() == 2


def test_the_dedupe_key_names_the_block_and_the_match_key_does_not():
    row = EventRow.model_validate(
        {"definition": 1, "chain_id": 1, "block_number": 5, "block_hash": block_hash(5)}
    )
    moved = row.model_copy(update={"block_hash": block_hash(6)})
    higher = row.model_copy(update={"block_number": 6})
    assert event_keys(row)[0] != event_keys(moved)[0]
    assert event_keys(row)[1] == event_keys(moved)[1]
    assert event_keys(row)[1] != event_keys(higher)[1]  # no transaction: known by its height
    assert event_keys(row, backtest_task=9) != event_keys(row)
    assert event_keys(row, backtest_task=9) != event_keys(row, backtest_task=10)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"extra": 1}, "extra: unknown field"),
        ({"block_hash": "0xnot-a-hash"}, "block_hash: "),
        ({"block_number": -1}, "block_number: "),
        ({"definition": 999_999}, "definition 999999 is not one this job evaluates"),
        ({"chain_id": 1}, "chain_id 1 is not definition 'whale''s chain 31337"),
        ({"payload": {"x": "y" * PAYLOAD_MAX_BYTES}}, f"payload over {PAYLOAD_MAX_BYTES} bytes"),
    ],
)
def test_one_bad_row_dead_letters_the_whole_publication_and_writes_nothing(
    org, definition, bad, reason
):
    rows = [event_row(definition, block=4), {**event_row(definition, block=5), **bad}]
    record = published_record(org, definition, rows, task_id=60)
    outcome = publication_sink(record=record)
    assert outcome.dead_lettered and outcome.created == 0
    assert not AlertEvent.objects.exists() and not Delivery.objects.exists()
    letter = DeadLetterBatch.objects.get()
    assert (letter.org_id, letter.task_id, letter.attempt) == (org.pk, 60, 1)
    assert letter.record == record and letter.status == "pending"
    assert letter.error.startswith("batch-0.jsonl line 2: ")
    assert reason in letter.error


def test_a_line_that_is_not_json_is_named(org, definition):
    record = published_record(org, definition, [event_row(definition), b"{oops"])
    assert publication_sink(record=record).dead_lettered
    assert DeadLetterBatch.objects.get().error.startswith("batch-0.jsonl line 2: not JSON (")


def test_a_batch_whose_bytes_changed_or_that_lies_outside_the_store_is_refused(
    org, definition, settings
):
    from trace_chain.object_store import object_store_from_url

    record = published_record(org, definition, [event_row(definition)], task_id=61)
    location = record["batches"][0]["location"]
    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    store.put_bytes(b"{}\n", location[len(store.uri().rstrip("/")) + 1 :])
    assert publication_sink(record=record).dead_lettered
    assert DeadLetterBatch.objects.get(task_id=61).error == (
        "batch-0.jsonl line 0: its bytes differ from what was published"
    )
    outside = {
        **record,
        "task_id": 62,
        "batches": [{**record["batches"][0], "location": "s3://x/b"}],
    }
    assert publication_sink(record=outside).dead_lettered
    assert DeadLetterBatch.objects.get(task_id=62).error == (
        "b line 0: the batch is outside the object store"
    )
    assert not AlertEvent.objects.exists()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"evaluated": [[0, 1]]}, "evaluated window [0, 1] is not [definition, start, end]"),
        ({"evaluated": [[1, 5, 4]]}, "evaluated window [1, 5, 4] is not [definition, start, end]"),
        (
            {"evaluated": [[1, -1, 4]]},
            "evaluated window [1, -1, 4] is not [definition, start, end]",
        ),
        (
            {"evaluated": [[True, 1, 4]]},
            "evaluated window [True, 1, 4] is not [definition, start, end]",
        ),
        (
            {"evaluated": [[1, 1.0, 4]]},
            "evaluated window [1, 1.0, 4] is not [definition, start, end]",
        ),
        (
            {"evaluated": [[999_999, 1, 4]]},
            "evaluated window of definition 999999 it may not evaluate",
        ),
        ({"seen": {"5": "0x12"}}, "seen is not a map of block numbers to block hashes"),
        ({"seen": {"x": block_hash(5)}}, "seen is not a map of block numbers to block hashes"),
        ({"seen": {"5": 5}}, "seen is not a map of block numbers to block hashes"),
        ({"seen": [5]}, "seen is not a map of block numbers to block hashes"),
    ],
)
def test_a_record_with_a_bad_window_or_seen_map_is_refused(org, definition, fields, error):
    record = published_record(org, definition, [event_row(definition)], **fields)
    assert publication_sink(record=record).dead_lettered
    assert DeadLetterBatch.objects.get().error == error
    assert not AlertEvent.objects.exists()


def test_a_window_is_accepted_from_its_first_height_to_its_last(org, definition):
    window = [[definition.pk, 4, 4], [definition.pk, 0, 9]]
    record = published_record(org, definition, [event_row(definition)], evaluated=window)
    assert publication_sink(record=record).created == 1


def test_a_refused_publication_stays_refused_until_a_replay(org, definition):
    rows = [event_row(definition, block=4), {"bad": True}]
    record = published_record(org, definition, rows, task_id=70)
    publication_sink(record=record)
    good = published_record(org, definition, [event_row(definition, block=4)], task_id=70)
    assert publication_sink(record=good).dead_lettered  # the same attempt: only a replay
    assert not AlertEvent.objects.exists() and DeadLetterBatch.objects.count() == 1
    letter = DeadLetterBatch.objects.get()
    outcome = dead_letter_replay(dead_letter=letter)
    assert outcome.created == 1 and letter.status == "replayed" and letter.replayed_at
    with pytest.raises(ValidationFailed, match=f"dead letter {letter.pk} was already replayed"):
        dead_letter_replay(dead_letter=letter)


def test_a_replay_still_refused_keeps_the_letter_with_the_new_reason(org, definition):
    letter = dead_letter(org, definition, [{"bad": True}], error="old")
    with pytest.raises(ValidationFailed, match=r"batch: still refused: batch-0\.jsonl line 1: "):
        dead_letter_replay(dead_letter=letter)
    letter.refresh_from_db()
    assert letter.status == "pending" and letter.error.startswith("batch-0.jsonl line 1: ")
    assert "bad: unknown field" in letter.error and not AlertEvent.objects.exists()


def test_only_the_definitions_the_job_may_evaluate_take_events(org, other_org, definition):
    other = alert_definition_create(
        org=org, spec={"name": "minnow", "chain_id": 31337, "condition": TO_ALICE}
    )
    elsewhere = alert_definition_create(
        org=other_org, spec={"name": "whale", "chain_id": 31337, "condition": TO_ALICE}
    )
    on_another_chain = alert_definition_create(
        org=org, spec={"name": "l1", "chain_id": 1, "condition": TO_ALICE}
    )
    named = {"alerts": ["whale"]}
    for refused, fields in (
        (other, named),
        (elsewhere, {}),
        (on_another_chain, {"chain_id": 31337}),
        (other, {"backtest": True, "definitions": [definition.pk]}),
        (definition, {"backtest": True}),
    ):
        row = {**event_row(definition), "definition": refused.pk, "chain_id": refused.chain_id}
        record = published_record(org, definition, [row], task_id=80 + refused.pk, **fields)
        assert publication_sink(record=record).dead_lettered, (refused.name, fields)
        error = DeadLetterBatch.objects.get(task_id=80 + refused.pk).error
        assert f"definition {refused.pk} is not one this job evaluates" in error
        DeadLetterBatch.objects.all().delete()
    row = event_row(other)
    record = published_record(org, definition, [row], alerts=["whale", "minnow"])
    assert publication_sink(record=record).created == 1


def test_a_new_evaluation_retracts_what_it_no_longer_finds_where_it_read(org, definition):
    kept, dropped = event_row(definition, block=5), event_row(definition, block=5, key="b")
    unseen = event_row(definition, block=6)  # in the window, but not a height it read
    outside = event_row(definition, block=12)
    publication_sink(record=published_record(org, definition, [kept, dropped, unseen, outside]))
    backtest = make_event(definition, block=5, backtest=True)
    other = alert_definition_create(
        org=org, spec={"name": "minnow", "chain_id": 31337, "condition": TO_ALICE}
    )
    others = make_event(other, block=5)
    make_event(definition, block=5, state="retracted")  # not found either: retracted already
    notified = set(Delivery.objects.values_list("pk", flat=True))
    again = published_record(
        org,
        definition,
        [kept],
        task_id=42,
        evaluated=[[definition.pk, 0, 10], [definition.pk, 12, 12]],
        seen={"5": block_hash(5), "12": block_hash(12)},
    )
    outcome = publication_sink(record=again)
    assert (outcome.existing, outcome.retracted) == (1, 1)
    name_of = {
        event_keys(EventRow.model_validate(row))[0]: name
        for name, row in (
            ("kept", kept),
            ("dropped", dropped),
            ("unseen", unseen),
            ("outside", outside),
        )
    }
    states = {
        name_of[e.dedupe_key]: (e.state, e.retracted_at is not None)
        for e in AlertEvent.objects.filter(dedupe_key__in=name_of)
    }
    assert states == {
        "kept": ("active", False),
        "dropped": ("retracted", True),
        "unseen": ("active", False),  # a height it did not read
        "outside": ("active", False),  # [12, 12) holds no height
    }
    [retraction] = Delivery.objects.exclude(pk__in=notified)
    assert outcome.deliveries == 1 and retraction.purpose == "retract"
    assert retraction.event.dedupe_key == event_keys(EventRow.model_validate(dropped))[0]
    for event in (backtest, others):
        event.refresh_from_db()
        assert event.state == "active"


def test_a_match_found_again_in_the_same_block_is_active_again(org, definition):
    row = event_row(definition, block=5)
    first = published_record(org, definition, [row], evaluated=[[definition.pk, 0, 10]])
    publication_sink(record=first)
    empty = published_record(
        org,
        definition,
        [],
        task_id=42,
        evaluated=[[definition.pk, 0, 10]],
        seen={"5": block_hash(5)},
    )
    assert publication_sink(record=empty).retracted == 1
    back = published_record(org, definition, [row], task_id=43)
    outcome = publication_sink(record=back)
    assert (outcome.created, outcome.existing) == (0, 1)
    event = AlertEvent.objects.get()
    assert (event.state, event.retracted_at) == ("active", None)


def test_a_backtests_events_are_its_own_and_retract_nothing(org, definition):
    row = event_row(definition, block=5)
    publication_sink(record=published_record(org, definition, [row]))
    Delivery.objects.all().delete()
    window = {"evaluated": [[definition.pk, 0, 10]], "seen": {"5": block_hash(5)}}
    fields = {"backtest": True, "definitions": [definition.pk], **window}
    quiet = published_record(org, definition, [], task_id=90, **fields)
    assert publication_sink(record=quiet).retracted == 0
    silent = published_record(org, definition, [row], task_id=91, **fields)
    outcome = publication_sink(record=silent)
    assert (outcome.created, outcome.deliveries) == (1, 0)
    found = AlertEvent.objects.get(backtest=True)
    assert found.dedupe_key == event_keys(EventRow.model_validate(row), backtest_task=91)[0]
    loud = published_record(org, definition, [row], task_id=92, deliver=True, **fields)
    assert publication_sink(record=loud).deliveries == 1
    assert AlertEvent.objects.filter(backtest=False, state="active").count() == 1
    assert AlertEvent.objects.filter(backtest=True).count() == 2


def test_a_second_replay_is_refused_naming_the_status_even_from_a_stale_copy(org, definition):
    letter = dead_letter(org, definition, [event_row(definition)])
    stale = DeadLetterBatch.objects.get(pk=letter.pk)  # read before the replay: still pending
    dead_letter_replay(dead_letter=letter)
    expected = f"status: dead letter {letter.pk} was already replayed"
    for copy in (letter, stale):  # the first check, and the one under the row's lock
        with pytest.raises(ValidationFailed) as refused:
            dead_letter_replay(dead_letter=copy)
        assert (str(refused.value), refused.value.details) == (expected, [expected])
    assert AlertEvent.objects.count() == 1


def test_a_refusal_is_kept_to_its_first_4000_characters(org, definition):
    bad = {**event_row(definition), **{f"extra_{n}": n for n in range(400)}}
    record = published_record(org, definition, [bad], task_id=95)
    assert publication_sink(record=record).dead_lettered
    letter = DeadLetterBatch.objects.get()
    assert len(letter.error) == 4000
    assert letter.error.startswith("batch-0.jsonl line 1: extra_0: unknown field")
    DeadLetterBatch.objects.filter(pk=letter.pk).update(error="old")
    with pytest.raises(ValidationFailed, match="still refused"):
        dead_letter_replay(dead_letter=letter)
    letter.refresh_from_db()
    assert len(letter.error) == 4000 and letter.error.startswith("batch-0.jsonl line 1: ")


def _evaluation_task(org, *, payload, config="{chain_id: 31337, alerts: [whale]}"):
    from tests.alerts.conftest import alerting_dag
    from trace_web.orchestration.models import Task
    from trace_web.orchestration.selectors import active_job
    from trace_web.orchestration.services.dags import dag_sync
    from trace_web.orchestration.services.tasks import task_claim

    dag_sync(org=org, yaml_text=alerting_dag(config=config), activate=True)
    job = active_job(org_id=org.pk, dag_name="alerting", job_name="evaluate")
    task = Task.objects.create(
        org=org, job=job, attempt=1, max_attempts=1, trigger="manual", payload=payload
    )
    return task_claim(task_id=task.pk, worker_id="w").lease


def _batch(org, lease, *, sequence, attempt=1, output=0, task_id=None):
    from trace_web.udf.models import OutputBatch

    return OutputBatch.objects.create(
        org=org,
        task_id=task_id or lease.task_id,
        attempt=attempt,
        output=output,
        sequence=sequence,
        location=f"s3://b/{task_id or lease.task_id}/{attempt}/{output}/{sequence}",
        row_count=sequence + 1,
        bytes=10,
        sha256=f"{sequence:064x}",
    )


def _sink_records():
    from trace_web.orchestration.models import Outbox

    return [row.payload for row in Outbox.objects.filter(kind="alert_sink").order_by("id")]


def test_a_committed_evaluation_enqueues_the_trusted_record_of_its_publication(
    org, settings, hot_engine
):
    from trace_web.orchestration.services.tasks import task_events

    payload = {"backtest": True, "deliver": True, "definitions": [7]}
    lease = _evaluation_task(org, payload=payload)
    later, first = _batch(org, lease, sequence=1), _batch(org, lease, sequence=0)
    _batch(org, lease, sequence=2, attempt=2)  # another attempt's
    _batch(org, lease, sequence=3, output=1)  # another output's
    _batch(org, lease, sequence=4, task_id=lease.task_id + 1000)  # another task's
    manifest = {"evaluated": [[7, 0, 5]], "seen": {"3": block_hash(3)}}
    location = f"{store_root(settings)}orgs/{org.pk}/alerting/evaluate/p/"
    publication = {"location": location, "manifest": manifest}
    task_events(
        lease=lease, events=[{"output": 0, "partition_key": "p", "publication": publication}]
    )
    assert _sink_records() == [
        {
            "org_id": org.pk,
            "task_id": lease.task_id,
            "attempt": 1,
            "dag": "alerting",
            "job": "evaluate",
            "chain_id": 31337,
            "alerts": ["whale"],
            "backtest": True,
            "deliver": True,
            "definitions": [7],
            "evaluated": [[7, 0, 5]],
            "seen": {"3": block_hash(3)},
            "batches": [
                {"location": b.location, "sha256": b.sha256, "row_count": b.row_count}
                for b in (first, later)
            ],
        }
    ]


def test_a_record_takes_only_a_literal_true_as_backtest_or_deliver(org, settings, hot_engine):
    from trace_web.orchestration.services.tasks import task_events

    lease = _evaluation_task(
        org, payload={"backtest": "yes", "deliver": 1}, config="{chain_id: 31337}"
    )
    location = f"{store_root(settings)}orgs/{org.pk}/alerting/evaluate/p/"
    item = {"output": 0, "partition_key": "p", "publication": {"location": location}}
    task_events(lease=lease, events=[item])
    [record] = _sink_records()
    assert (record["backtest"], record["deliver"], record["definitions"]) == (False, False, None)
    assert (record["alerts"], record["evaluated"], record["seen"], record["batches"]) == (
        None,
        [],
        {},
        [],
    )


def test_the_keys_are_stable_digests_of_what_names_a_match():
    # Stored keys must not change between releases: a changed digest re-notifies every event.
    import hashlib

    row = EventRow.model_validate(
        {"definition": 1, "chain_id": 1, "block_number": 5, "block_hash": block_hash(5)}
    )
    match = "1|1|block:5|None|"
    assert event_keys(row) == (
        hashlib.sha256(f"{match}|{block_hash(5)}".encode()).hexdigest(),
        hashlib.sha256(match.encode()).hexdigest(),
    )
    keyed = row.model_copy(update={"key": "leg-1"})
    assert event_keys(keyed)[1] == hashlib.sha256(b"1|1|block:5|None|leg-1").hexdigest()


def _hot_blocks(hot_engine, chain_id: int, hashes: dict[int, str]) -> None:
    from trace_chain.hot_schema import hot_blocks

    with hot_engine.begin() as conn:
        conn.execute(
            hot_blocks.insert(),
            [
                {
                    "chain_id": chain_id,
                    "block_number": n,
                    "block_hash": h,
                    "parent_hash": block_hash(n - 1),
                    "timestamp": n,
                }
                for n, h in hashes.items()
            ],
        )


def test_a_row_read_before_a_reorg_replaced_its_block_is_stale(org, definition, hot_engine):
    replaced = "0x" + "ee" * 32
    _hot_blocks(
        hot_engine, 31337, {4: block_hash(4), 5: block_hash(5), 6: replaced, 7: "0x" + "ef" * 32}
    )
    _hot_blocks(hot_engine, 1, {5: replaced})  # another chain's block at the same height
    rows = [
        event_row(definition, block=5),  # as the chain still is
        event_row(definition, block=6),  # its block was replaced: stale
        event_row(definition, block=7),  # the highest height read: stale too
        event_row(definition, block=9),  # above the hot range: nothing says otherwise
    ]
    outcome = publication_sink(record=published_record(org, definition, rows))
    assert (outcome.created, outcome.stale) == (2, 2)
    assert sorted(AlertEvent.objects.values_list("block_number", flat=True)) == [5, 9]


def test_no_retraction_at_a_height_the_evaluation_read_before_a_reorg(org, definition, hot_engine):
    replaced = "0x" + "ee" * 32
    _hot_blocks(hot_engine, 31337, {4: replaced, 5: block_hash(5)})
    rows = [event_row(definition, block=4, block_hash=replaced), event_row(definition, block=5)]
    publication_sink(record=published_record(org, definition, rows))
    # A new evaluation found nothing, reading 4 at the replaced hash and 5 as it is.
    again = published_record(
        org,
        definition,
        [],
        task_id=42,
        evaluated=[[definition.pk, 0, 10]],
        seen={"4": block_hash(4), "5": block_hash(5)},
    )
    assert publication_sink(record=again).retracted == 1
    states = dict(AlertEvent.objects.values_list("block_number", "state"))
    assert states == {4: "active", 5: "retracted"}
