"""Chain fixtures (a pytest plugin loaded by tests/conftest.py): one anvil node for the
session and a stretch of blocks with transactions and logs on it. Plain Python: nothing here
needs the Django database.

The session `anvil` is shared by every chain test module, so a test that rewrites history
(`reorg`) must first mine its own blocks above anything it does not own, or use `fresh_anvil`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from trace_chain import devchain
from trace_chain.rpc import RpcPool

TRAFFIC_BLOCKS = 20
TRAFFIC_TXS_PER_BLOCK = 6


@pytest.fixture(scope="session")
def anvil() -> Iterator[devchain.Anvil]:
    """anvil on a free 127.0.0.1 port, chain id 31337, automine (a block per transaction unless
    a helper such as `generate_traffic` pauses it)."""
    with devchain.Anvil() as node:
        yield node


@pytest.fixture
def fresh_anvil() -> Iterator[devchain.Anvil]:
    """A private anvil for one test (starting one takes ~0.1 s), for tests that change the
    mining mode or history in ways other tests must not see."""
    with devchain.Anvil() as node:
        yield node


@dataclass(frozen=True)
class ChainWithTraffic:
    url: str
    traffic: devchain.Traffic
    start: int  # first block holding generated transactions
    end_exclusive: int

    @property
    def emitter(self) -> str:
        return self.traffic.emitter


@pytest.fixture(scope="session")
def chain_with_traffic(anvil: devchain.Anvil) -> ChainWithTraffic:
    """~20 consecutive blocks on the session anvil, each with transfers (some above 2**63 wei,
    legacy and EIP-1559), emitter calls with 0 to 4 topics per log, and one reverted call in
    every few transactions."""
    traffic = devchain.generate_traffic(
        anvil.url, blocks=TRAFFIC_BLOCKS, txs_per_block=TRAFFIC_TXS_PER_BLOCK
    )
    return ChainWithTraffic(anvil.url, traffic, traffic.first_block, traffic.last_block + 1)


@pytest.fixture
def anvil_pool(anvil: devchain.Anvil) -> Iterator[RpcPool]:
    with RpcPool("anvil", [anvil.url], timeout=10.0, max_retries=0) as pool:
        yield pool


@pytest.fixture
def cold(tmp_path, monkeypatch):
    """A private object store and staging root for one test."""
    from trace_chain.object_store import object_store_from_env

    url = (tmp_path / "objects").as_uri()
    monkeypatch.setenv("TRACE_OBJECT_STORE_URL", url)
    monkeypatch.setenv("TRACE_STAGING_DIR", str(tmp_path / "staging"))
    from django.conf import settings

    if settings.configured:  # the control plane checks publications against the same store
        monkeypatch.setattr(settings, "TRACE_OBJECT_STORE_URL", url)
    return object_store_from_env()
