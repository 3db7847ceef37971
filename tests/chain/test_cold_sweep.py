"""The sweeper of replaced cold partitions (trace_chain/cold_sweep.py) on the real data DB and
a file store: a segment replaced longer ago than the retention loses its files and its row; a
younger one, a live one, one whose prefix a live segment also names and one outside the store
keep their files."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from django.utils import timezone

from trace_chain.cold_segments import LIVE, REPLACED, cold_segments
from trace_chain.cold_sweep import replaced_sweep
from trace_chain.object_store import object_store_from_env
from trace_web.orchestration.services.retention import state_prune


def segment(conn, store, *, key, state, replaced_ago=None, location=None, start=0) -> int:
    if location is None:
        store.put_bytes(b"rows", f"{key}blocks.parquet")
        store.put_bytes(b"", f"{key}_SUCCESS")
    replaced_at = timezone.now() - replaced_ago if replaced_ago is not None else None
    return conn.execute(
        cold_segments.insert()
        .values(
            chain_id=31337,
            dataset="blocks",
            range_start=start,
            range_end=start + 50,
            location=location or store.uri(key),
            files=[],
            row_count=50,
            bytes=4,
            last_block_hash="0x" + "ab" * 32,
            state=state,
            replaced_at=replaced_at,
        )
        .returning(cold_segments.c.id)
    ).scalar_one()


def remaining(engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(cold_segments.c.id)).scalars())


def test_old_replaced_segments_lose_their_files_and_rows_others_keep_theirs(
    hot_engine, tmp_path, monkeypatch
):
    monkeypatch.setenv("TRACE_OBJECT_STORE_URL", (tmp_path / "objects").as_uri())
    store = object_store_from_env()
    old, young = timedelta(hours=2), timedelta(seconds=30)
    with hot_engine.begin() as conn:
        gone = segment(conn, store, key="c/blocks/0_50/aa/", state=REPLACED, replaced_ago=old)
        fresh = segment(conn, store, key="c/blocks/0_50/bb/", state=REPLACED, replaced_ago=young)
        live = segment(conn, store, key="c/blocks/0_100/cc/", state=LIVE)
        # A re-run that wrote the same content to the same prefix: live there now.
        shared = segment(
            conn,
            store,
            key="",
            state=REPLACED,
            replaced_ago=old,
            location=store.uri("c/blocks/0_100/cc/"),
        )
        outside = segment(
            conn, store, key="", state=REPLACED, replaced_ago=old, location="file:///elsewhere/x/"
        )
    assert replaced_sweep(hot_engine, store, older_than_seconds=3600, batch_size=100) == 2
    assert remaining(hot_engine) == {fresh, live, outside}
    assert not store.list("c/blocks/0_50/aa/")
    assert sorted(store.list("c/blocks/0_50/bb/")) == [
        "c/blocks/0_50/bb/_SUCCESS",
        "c/blocks/0_50/bb/blocks.parquet",
    ]
    assert len(store.list("c/blocks/0_100/cc/")) == 2
    assert {gone, shared}.isdisjoint(remaining(hot_engine))
    # Nothing more is old enough: a second sweep changes nothing.
    assert replaced_sweep(hot_engine, store, older_than_seconds=3600, batch_size=100) == 0


def test_the_pruner_sweeps_in_batches_with_the_configured_retention(
    hot_engine, db, tmp_path, monkeypatch, settings
):
    monkeypatch.setenv("TRACE_OBJECT_STORE_URL", (tmp_path / "objects").as_uri())
    settings.TRACE_PRUNE_BATCH_SIZE = 2
    settings.TRACE_COLD_REPLACED_RETENTION_SECONDS = 600
    store = object_store_from_env()
    with hot_engine.begin() as conn:
        for n in range(5):
            segment(
                conn,
                store,
                key=f"c/blocks/{n}/",
                state=REPLACED,
                replaced_ago=timedelta(minutes=11),
                start=50 * n,
            )
        kept = segment(
            conn, store, key="c/blocks/young/", state=REPLACED, replaced_ago=timedelta(minutes=9)
        )
    assert state_prune() == 5
    assert remaining(hot_engine) == {kept}
    assert store.list("c/blocks/") == ["c/blocks/young/_SUCCESS", "c/blocks/young/blocks.parquet"]
