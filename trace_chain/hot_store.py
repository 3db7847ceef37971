"""Reads and writes of the hot tables. Writes are bulk COPY inside one transaction per block
range: a range is replaced whole or not at all, so readers never see half a block."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from trace_chain.db import advisory_lock_key, session_advisory_lock
from trace_chain.hot_schema import (
    BLOCK_COLUMNS,
    LOG_COLUMNS,
    TRACE_COLUMNS,
    TRANSACTION_COLUMNS,
    hot_blocks,
    hot_chain_status,
    hot_followers,
    hot_logs,
    hot_rewrites,
    hot_traces,
    hot_transactions,
)

# Hot column -> key of the adapter's normalized row, where the names differ.
BLOCK_KEYS = {"block_number": "number", "block_hash": "hash"}
TRANSACTION_KEYS = {
    "transaction_hash": "hash",
    "from_address": "from",
    "to_address": "to",
    "transaction_type": "type",
    "gas_limit": "gas",
}
LOG_KEYS: dict[str, str] = {}
TRACE_KEYS: dict[str, str] = {}
# Every hot table holding chain rows: reorgs, resets and compaction delete from all of them.
HOT_TABLES = (hot_traces, hot_logs, hot_transactions, hot_blocks)


def _copy(
    conn: Connection,
    table: sa.Table,
    columns: list[str],
    keys: Mapping[str, str],
    chain_id: int,
    rows: Iterable[Mapping[str, Any]],
) -> int:
    driver = conn.connection.driver_connection  # the psycopg connection of this transaction
    fields = [keys.get(c, c) for c in columns if c != "chain_id"]
    values = operator.itemgetter(*fields)  # C-speed for the rows the adapter builds (all keys)
    count = 0
    with driver.cursor() as cursor:
        statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        with cursor.copy(statement) as copy:
            for row in rows:
                try:
                    copy.write_row((chain_id, *values(row)))
                except KeyError:  # a row without some optional field: NULL there
                    copy.write_row((chain_id, *(row.get(f) for f in fields)))
                count += 1
    return count


class StaleWriter(Exception):
    """Another follower became the chain's writer since this one did: it must stop writing."""


def hot_writer_epoch_take(engine: Engine, *, chain_id: int) -> int:
    """Become the chain's writer: bump and return its writer epoch. The row lock this takes
    waits for a previous writer's write in flight; every later write of that writer fails."""
    from sqlalchemy.dialects.postgresql import insert

    epoch = hot_chain_status.c.writer_epoch
    statement = (
        insert(hot_chain_status)
        .values(chain_id=chain_id, writer_epoch=1)
        .on_conflict_do_update(index_elements=["chain_id"], set_={"writer_epoch": epoch + 1})
        .returning(epoch)
    )
    with engine.begin() as conn:
        return conn.execute(statement).scalar_one()


def _check_epoch(conn: Connection, chain_id: int, epoch: int | None) -> None:
    """Within a write's transaction: lock the chain's status row and refuse a stale writer."""
    if epoch is None:
        return
    current = conn.execute(
        sa.select(hot_chain_status.c.writer_epoch)
        .where(hot_chain_status.c.chain_id == chain_id)
        .with_for_update()
    ).scalar()
    if current != epoch:
        raise StaleWriter(
            f"chain {chain_id} has a newer writer (epoch {current}); this one (epoch {epoch}) "
            "must stop writing"
        )


def hot_replace_range(
    engine: Engine,
    *,
    chain_id: int,
    start: int,
    end: int,
    blocks: list[Mapping[str, Any]],
    transactions: list[Mapping[str, Any]],
    logs: list[Mapping[str, Any]],
    traces: Sequence[Mapping[str, Any]] = (),
    epoch: int | None = None,
) -> dict[str, int]:
    """Atomically make [start, end) hold exactly these rows (delete, then COPY), traces
    included (none when the follower does not fetch them). With an `epoch`, only if it is
    still the chain's writer epoch (else StaleWriter)."""
    with engine.begin() as conn:
        _check_epoch(conn, chain_id, epoch)
        _delete(conn, chain_id, start, end)
        return {
            "blocks": _copy(conn, hot_blocks, BLOCK_COLUMNS, BLOCK_KEYS, chain_id, blocks),
            "transactions": _copy(
                conn,
                hot_transactions,
                TRANSACTION_COLUMNS,
                TRANSACTION_KEYS,
                chain_id,
                transactions,
            ),
            "logs": _copy(conn, hot_logs, LOG_COLUMNS, LOG_KEYS, chain_id, logs),
            "traces": _copy(conn, hot_traces, TRACE_COLUMNS, TRACE_KEYS, chain_id, traces),
        }


def _delete(conn: Connection, chain_id: int, start: int, end: int | None) -> None:
    for table in HOT_TABLES:
        condition = (table.c.chain_id == chain_id) & (table.c.block_number >= start)
        if end is not None:
            condition &= table.c.block_number < end
        conn.execute(table.delete().where(condition))


def hot_rewrite_from(
    engine: Engine, *, chain_id: int, start: int, end: int, epoch: int | None = None
) -> int | None:
    """Delete every hot row at or above `start` (orphans of a reorg, or a reset) and log the
    rewrite of `[start, end)` in the same transaction, so every follower of the chain learns
    of it. Returns the log row's id (None when the range was empty). Fenced by `epoch` like
    hot_replace_range; the row lock also makes log ids commit in order."""
    with engine.begin() as conn:
        _check_epoch(conn, chain_id, epoch)
        _delete(conn, chain_id, start, None)
        if end <= start:
            return None
        return conn.execute(
            hot_rewrites.insert()
            .values(chain_id=chain_id, range_start=start, range_end=end)
            .returning(hot_rewrites.c.id)
        ).scalar_one()


def hot_rewrites_since(engine: Engine, *, chain_id: int, after: int) -> list[dict[str, Any]]:
    query = (
        sa.select(hot_rewrites)
        .where(hot_rewrites.c.chain_id == chain_id, hot_rewrites.c.id > after)
        .order_by(hot_rewrites.c.id)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def hot_rewrites_last(engine: Engine, *, chain_id: int) -> int:
    query = sa.select(sa.func.coalesce(sa.func.max(hot_rewrites.c.id), 0)).where(
        hot_rewrites.c.chain_id == chain_id
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def hot_bounds(engine: Engine, *, chain_id: int) -> tuple[int, int] | None:
    """(lowest, highest) hot block number of the chain, or None when it has none. The writer
    keeps the rows between them contiguous."""
    query = sa.select(
        sa.func.min(hot_blocks.c.block_number), sa.func.max(hot_blocks.c.block_number)
    ).where(hot_blocks.c.chain_id == chain_id)
    with engine.connect() as conn:
        low, high = conn.execute(query).one()
    return None if low is None else (low, high)


def follower_get(engine: Engine, *, chain_id: int, follower: str) -> dict[str, Any] | None:
    query = sa.select(hot_followers).where(
        hot_followers.c.chain_id == chain_id, hot_followers.c.follower == follower
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def follower_save(engine: Engine, *, chain_id: int, follower: str, **fields: Any) -> None:
    """Upsert one follower's progress (emitted_upto, rewrites_seen)."""
    from sqlalchemy.dialects.postgresql import insert

    values = {**fields, "updated_at": sa.func.now()}
    statement = insert(hot_followers).values(chain_id=chain_id, follower=follower, **values)
    statement = statement.on_conflict_do_update(
        index_elements=["chain_id", "follower"], set_=values
    )
    with engine.begin() as conn:
        conn.execute(statement)


def hot_tip(engine: Engine, *, chain_id: int) -> tuple[int, str] | None:
    """(number, hash) of the highest hot block of the chain, or None when empty."""
    query = (
        sa.select(hot_blocks.c.block_number, hot_blocks.c.block_hash)
        .where(hot_blocks.c.chain_id == chain_id)
        .order_by(hot_blocks.c.block_number.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return (row[0], row[1]) if row else None


def hot_hashes(engine: Engine, *, chain_id: int, start: int, end: int) -> dict[int, str]:
    """Block hashes of [start, end) as stored, for fork-point search beyond memory."""
    query = sa.select(hot_blocks.c.block_number, hot_blocks.c.block_hash).where(
        hot_blocks.c.chain_id == chain_id,
        hot_blocks.c.block_number >= start,
        hot_blocks.c.block_number < end,
    )
    with engine.connect() as conn:
        return dict(conn.execute(query).all())


def hot_status_get(engine: Engine, *, chain_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(hot_chain_status).where(hot_chain_status.c.chain_id == chain_id)
        ).first()
    return dict(row._mapping) if row else None


def hot_status_update(
    engine: Engine, *, chain_id: int, reorg_depth: int | None = None, **fields
) -> None:
    """Upsert the chain's follower status; a reorg_depth also bumps the reorg counter."""
    from sqlalchemy.dialects.postgresql import insert

    values = {**fields, "updated_at": sa.func.now()}
    if reorg_depth is not None:
        values.update(last_reorg_depth=reorg_depth, last_reorg_at=sa.func.now())
    statement = insert(hot_chain_status).values(
        chain_id=chain_id, reorg_count=1 if reorg_depth else 0, **values
    )
    update = dict(values)
    if reorg_depth is not None:
        update["reorg_count"] = hot_chain_status.c.reorg_count + 1
    with engine.begin() as conn:
        conn.execute(statement.on_conflict_do_update(index_elements=["chain_id"], set_=update))


def hot_follower_org_register(engine: Engine, *, chain_id: int, org_id: int) -> None:
    """Record that a follower of `org_id` writes or announces this chain's rows (idempotent)."""
    from sqlalchemy.dialects.postgresql import insert

    orgs = hot_chain_status.c.follower_org_ids
    statement = insert(hot_chain_status).values(chain_id=chain_id, follower_org_ids=[org_id])
    statement = statement.on_conflict_do_update(
        index_elements=["chain_id"],
        set_={"follower_org_ids": sa.func.array_append(orgs, org_id)},
        where=sa.literal(org_id, sa.BigInteger) != sa.all_(orgs),
    )
    with engine.begin() as conn:
        conn.execute(statement)


def chain_writer_lock_key(chain_id: int) -> int:
    """The bigint advisory-lock key of a chain's one-writer lock."""
    return advisory_lock_key(f"trace.hot_writer:{chain_id}")


@contextmanager
def chain_writer_lock(engine: Engine, *, chain_id: int, wait: Callable[[], None]):
    """Hold the one-writer-per-chain lock (a Postgres session advisory lock in the data DB) for
    the duration of the block. Two followers of one chain — another org's, or an old attempt
    that has not noticed it lost its lease — never write the hot tables at the same time; the
    lock dies with its connection, so a killed worker frees it at once. Calls `wait()` between
    tries while another writer holds it. Yields `still_held()`, to check before each write
    that the session (and so the lock) did not end under us."""
    with session_advisory_lock(engine, key=chain_writer_lock_key(chain_id), wait=wait) as conn:

        def still_held() -> bool:
            """A session-level lock lives exactly as long as its session: if the session still
            answers, we hold it."""
            try:
                conn.execute(sa.select(1))
                conn.commit()
                return True
            except sa.exc.DBAPIError:
                return False

        yield still_held
