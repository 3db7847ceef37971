"""The sweeper of replaced cold partitions: a merge or a rebuild leaves the segments it
replaced in the store for the queries already reading them; once the longest query could no
longer be reading one (TRACE_COLD_REPLACED_RETENTION_SECONDS, above the task query limit), its
files are deleted and its row forgotten. Called by the dispatcher's pruner."""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine

from trace_chain.cold_segments import segments_forget, segments_sweep
from trace_chain.object_store import ObjectStore

log = logging.getLogger(__name__)


def replaced_sweep(
    engine: Engine, store: ObjectStore, *, older_than_seconds: float, batch_size: int
) -> int:
    """Delete one batch of replaced segments' files and rows; returns how many rows went.
    Files first, then the rows in the same transaction: a crash between them leaves rows whose
    files are (partly) gone, and the next sweep deletes what is left and forgets them."""
    root = store.uri()
    root = root if root.endswith("/") else root + "/"
    with engine.begin() as conn:
        rows = segments_sweep(conn, older_than_seconds=older_than_seconds, limit=batch_size)
        files = 0
        for segment_id, location, delete_files in rows:
            if not delete_files:
                continue
            prefix = location if location.endswith("/") else location + "/"
            if not prefix.startswith(root) or prefix == root:
                # Another store's (or the root itself): never delete what this store does not
                # hold; the row stays for someone to look at.
                log.warning(
                    "cold sweep: segment %s lies outside %s: %s", segment_id, root, location
                )
                rows = [r for r in rows if r[0] != segment_id]
                continue
            files += store.delete_prefix(prefix[len(root) :])
        segments_forget(conn, [r[0] for r in rows])
    if rows:
        log.info(
            "cold sweep: %s replaced segment(s) forgotten, %s file(s) deleted", len(rows), files
        )
    return len(rows)
