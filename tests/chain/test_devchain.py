"""The dev chain: anvil from npm, the emitter contract, traffic, sub-second blocks and reorgs."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time

import pytest

from trace_chain import devchain
from trace_chain.adapter import ChainAdapter
from trace_chain.rpc import RpcPool


def test_anvil_binary_is_the_pinned_npm_version():
    path = devchain.anvil_path()
    pinned = json.loads((devchain.REPO_ROOT / "package.json").read_text())["devDependencies"]
    version = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    assert f"anvil Version: {pinned['@foundry-rs/anvil']}" in version.stdout


def test_missing_anvil_tells_the_user_to_run_npm_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(devchain, "NODE_MODULES", tmp_path / "node_modules")
    monkeypatch.delenv(devchain.ANVIL_PATH_ENV, raising=False)
    with pytest.raises(devchain.AnvilNotInstalled, match="npm ci"):
        devchain.anvil_path()
    monkeypatch.setenv(devchain.ANVIL_PATH_ENV, str(tmp_path / "nope"))
    with pytest.raises(devchain.AnvilNotInstalled, match=devchain.ANVIL_PATH_ENV):
        devchain.anvil_path()


def test_anvil_starts_on_loopback_and_stops_cleanly():
    node = devchain.Anvil()
    with node:
        assert node.url.startswith("http://127.0.0.1:")
        proc = node.proc
        assert devchain.mine(node.url, 2) == 2
    assert proc is not None and proc.poll() is not None
    with pytest.raises(devchain.AnvilError):
        _ = node.url


def test_sub_second_block_time_mines_on_an_interval():
    with devchain.Anvil(block_time=0.2) as node, RpcPool("t", [node.url]) as pool:
        adapter = ChainAdapter(pool)
        first = adapter.head_number()
        time.sleep(1.2)
        mined = adapter.head_number() - first
    assert 3 <= mined <= 9  # ~6 at 0.2 s


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run solc-js")
def test_committed_emitter_bytecode_is_what_solc_js_compiles_from_the_source():
    committed = devchain.emitter_artifact()
    compiled = devchain.compile_emitter()
    assert compiled["bytecode"] == committed["bytecode"]
    assert compiled["selectors"] == committed["selectors"]
    assert compiled["events"] == committed["events"]
    # js-sha3 keccak is what event topics are computed with; check it on a known answer.
    transfer = subprocess.run(
        [
            "node",
            "-e",
            "console.log(require('js-sha3').keccak256('Transfer(address,address,uint256)'))",
        ],
        cwd=devchain.REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert transfer.stdout.strip() == (
        "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    )


def test_deployed_emitter_emits_logs_with_the_expected_topics(anvil, anvil_pool):
    artifact = devchain.emitter_artifact()
    events = artifact["events"]
    emitter = devchain.deploy_emitter(anvil.url)
    sender = devchain.dev_accounts(anvil.url)[4]

    def send(data):
        tx_hash = anvil_pool.call(
            "eth_sendTransaction", [{"from": sender, "to": emitter, "data": data, "gas": "0x7a120"}]
        )
        return anvil_pool.call("eth_getTransactionReceipt", [tx_hash])  # automine: mined

    ping = send(devchain.emitter_calldata("ping", b"hello"))
    (log,) = ping["logs"]
    assert log["address"].lower() == emitter
    assert log["topics"] == [
        events["Ping"]["topic0"],
        "0x" + sender[2:].rjust(64, "0"),  # indexed sender
        "0x" + "1".rjust(64, "0"),  # indexed seq: first call
    ]
    assert log["data"].startswith("0x" + b"hello".hex())

    burst = send(devchain.emitter_calldata("burst", 2))
    topics = [entry["topics"] for entry in burst["logs"]]
    assert [len(t) for t in topics] == [4, 4, 1, 0]
    assert topics[0][0] == topics[1][0] == events["Triple"]["topic0"]
    assert topics[2][0] == events["Note"]["topic0"]

    fail = send(devchain.emitter_calldata("fail"))
    assert int(fail["status"], 16) == 0
    assert fail["logs"] == []


def test_traffic_blocks_hold_the_requested_transactions(chain_with_traffic):
    c = chain_with_traffic
    assert c.end_exclusive - c.start == 20
    assert len(c.traffic.tx_hashes) == 20 * 6
    assert set(c.traffic.kinds.values()) == set(devchain.TRAFFIC_KINDS)


def test_traffic_restores_automine(anvil, anvil_pool):
    devchain.generate_traffic(anvil.url, blocks=1, txs_per_block=2)
    assert anvil_pool.call("anvil_getAutomine") is True


def test_traffic_under_interval_mining_is_all_mined():
    with devchain.Anvil(block_time=0.5) as node:
        traffic = devchain.generate_traffic(node.url, blocks=3, txs_per_block=3)
        assert len(traffic.tx_hashes) == 9
        assert traffic.block_numbers  # every receipt was found (else generate_traffic raises)


def test_reorg_of_depth_3_replaces_the_tip_blocks(anvil, anvil_pool):
    # Mine blocks of our own first, so the reorg never touches blocks other tests rely on.
    devchain.generate_traffic(anvil.url, blocks=5, txs_per_block=2)
    adapter = ChainAdapter(anvil_pool)
    head = adapter.head_number()
    before = adapter.blocks(head - 3, head + 1, full_transactions=False)
    receiver = devchain.dev_accounts(anvil.url)[7]
    tx = {"from": devchain.dev_accounts(anvil.url)[6], "to": receiver, "value": "0x2a"}

    devchain.reorg(anvil.url, 3, [(tx, 1)])

    assert adapter.head_number() == head
    after = adapter.blocks(head - 3, head + 1, full_transactions=False)
    assert after[0]["hash"] == before[0]["hash"]  # the common ancestor stays
    for old, new in zip(before[1:], after[1:], strict=True):
        assert new["hash"] != old["hash"]
    for parent, child in itertools.pairwise(after):
        assert child["parentHash"] == parent["hash"]
    # Offsets count from the common ancestor's child: offset 1 is the second replaced block.
    assert [len(b["transactions"]) for b in after[1:]] == [0, 1, 0]


def test_reorg_rejects_offsets_outside_the_depth(anvil):
    with pytest.raises(ValueError, match="outside"):
        devchain.reorg(anvil.url, 2, [({"to": "0x" + "00" * 20}, 2)])
    with pytest.raises(ValueError):
        devchain.reorg(anvil.url, 0)
