"""Which cold file answers for which blocks, over random overlapping partitions: every block
some file holds (below the line) is read from exactly one file, the best one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trace_chain.query.catalog import ColdFile
from trace_chain.query.coverage import gaps, windows


@st.composite
def partitions(draw):
    count = draw(st.integers(0, 12))
    files = []
    for index in range(count):
        start = draw(st.integers(0, 90))
        end = draw(st.integers(start + 1, 100))
        files.append(
            ColdFile(
                dataset="blocks",
                chain_id=1,
                path=f"f{index}",
                range_start=start,
                range_end=end,
                schema_version=1,
                priority=draw(st.integers(0, 2)),
                committed_seq=index,
            )
        )
    return files


@settings(max_examples=300, deadline=None)
@given(partitions(), st.one_of(st.none(), st.integers(0, 110)))
def test_each_block_is_read_once_from_the_best_file(files, below):
    pieces = windows(files, below=below)
    reader: dict[int, ColdFile] = {}
    for piece in pieces:
        assert piece.file.range_start <= piece.start < piece.end <= piece.file.range_end
        for block in range(piece.start, piece.end):
            assert block not in reader, f"block {block} read twice"
            reader[block] = piece.file
    limit = 101 if below is None else below
    for block in range(limit):
        holders = [f for f in files if f.range_start <= block < f.range_end]
        if not holders:
            assert block not in reader
            continue
        best = max(holders, key=lambda f: (f.priority, f.committed_seq))
        assert reader[block] is best
    assert all(block < limit for block in reader)
    assert [p.start for p in pieces] == sorted(p.start for p in pieces)


def test_gaps_are_the_blocks_no_window_covers():
    files = [
        ColdFile("blocks", 1, "a", 0, 10, 1),
        ColdFile("blocks", 1, "b", 20, 30, 1),
    ]
    assert gaps(windows(files), start=0, end=40) == [(10, 20), (30, 40)]
    assert gaps(windows(files, below=25), start=0, end=25) == [(10, 20)]
