"""Which cold file answers for which blocks: committed partitions of several sources (a Cryo
backfill, compaction, a rebuilt range) may overlap, and a block must be read exactly once.
Each block goes to the highest-priority file that holds it (then the latest committed); a file
may end up answering for a sub-range of its own (a window), or for nothing."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from trace_chain.query.catalog import ColdFile


@dataclass(frozen=True)
class Window:
    file: ColdFile
    start: int  # the blocks this file answers for: [start, end), within its own range
    end: int

    @property
    def whole(self) -> bool:
        return (self.start, self.end) == (self.file.range_start, self.file.range_end)


def windows(files: list[ColdFile], *, below: int | None = None) -> list[Window]:
    """Non-overlapping windows over `files` of one dataset and chain, in block order; with
    `below`, only blocks under it (the hot rows answer from there on)."""
    bounds = sorted({b for f in files for b in (f.range_start, f.range_end)})
    if below is not None:
        bounds = sorted({b for b in bounds if b < below} | ({below} if bounds else set()))
    ranked = sorted(files, key=lambda f: (-f.priority, -f.committed_seq))
    pieces: list[Window] = []
    for start, end in itertools.pairwise(bounds):
        if below is not None and start >= below:
            break
        owner = next((f for f in ranked if f.range_start <= start and end <= f.range_end), None)
        if owner is None:
            continue  # no file holds these blocks: a gap in history
        last = pieces[-1] if pieces else None
        if last is not None and last.file is owner and last.end == start:
            pieces[-1] = Window(owner, last.start, end)
        else:
            pieces.append(Window(owner, start, end))
    return pieces


def gaps(pieces: list[Window], *, start: int, end: int) -> list[tuple[int, int]]:
    """Block ranges in `[start, end)` no window covers."""
    missing, at = [], start
    for piece in pieces:
        if piece.start > at:
            missing.append((at, min(piece.start, end)))
        at = max(at, piece.end)
    if at < end:
        missing.append((at, end))
    return [(a, b) for a, b in missing if a < b]
