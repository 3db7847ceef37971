"""The session advisory locks behind the one-writer-per-chain and one-compaction-per-chain
rules: a second holder waits until the first leaves, leaving by an exception frees the lock,
and the lock is another chain's or another name's only when its key is."""

from __future__ import annotations

import threading

import pytest

from trace_chain.compaction import compaction_lock
from trace_chain.db import advisory_lock_key, session_advisory_lock


def test_a_second_holder_waits_until_the_first_leaves(hot_engine):
    key = advisory_lock_key("trace.test:waits")
    entered, leave = threading.Event(), threading.Event()
    order: list[str] = []

    def first():
        with session_advisory_lock(hot_engine, key=key, wait=lambda: None):
            order.append("first in")
            entered.set()
            leave.wait(30)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(30)
    waits = []

    def wait():
        waits.append(1)
        if len(waits) == 3:
            leave.set()  # the first leaves only once the second has waited
        threading.Event().wait(0.01)

    with session_advisory_lock(hot_engine, key=key, wait=wait):
        order.append("second in")
    thread.join(30)
    assert order == ["first in", "first out", "second in"]
    assert len(waits) >= 3


def test_leaving_by_an_exception_frees_the_lock(hot_engine):
    key = advisory_lock_key("trace.test:raises")
    with (
        pytest.raises(RuntimeError),
        session_advisory_lock(hot_engine, key=key, wait=lambda: None),
    ):
        raise RuntimeError("boom")

    def never():
        raise AssertionError("the lock was still held")

    with session_advisory_lock(hot_engine, key=key, wait=never):
        pass


def test_compactions_of_two_chains_do_not_wait_for_each_other_but_of_one_chain_do(hot_engine):
    def never():
        raise AssertionError("waited for another chain's compaction")

    with compaction_lock(hot_engine, chain_id=1, wait=never):
        with compaction_lock(hot_engine, chain_id=2, wait=never):
            pass

        class Busy(Exception):
            pass

        def busy():
            raise Busy

        with pytest.raises(Busy), compaction_lock(hot_engine, chain_id=1, wait=busy):
            pass
    assert advisory_lock_key("trace.compaction:1") != advisory_lock_key("trace.hot_writer:1")
