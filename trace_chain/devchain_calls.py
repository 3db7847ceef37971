"""Dev-chain traffic with internal calls, for the `traces` dataset: deploys TraceCaller
(trace_chain/contracts/TraceCaller.sol) and sends the call shapes a trace indexer must store.

Each round is one block holding: a contract calling another with value (`relay` -> emitter
`ping`), a factory creating a contract (`spawn` -> CREATE of TraceChild), an inner call that
reverts under a successful outer call (`tryFail` -> emitter `fail`), a create two frames
deep (`nest` -> its own `spawn` -> CREATE, trace address `0_0`), and a plain transfer (a
trace with no subtraces). Used by tests and benchmarks; plain Python, no Django.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from trace_chain.devchain import (
    CALL_GAS,
    CALLER_ARTIFACT,
    DEPLOY_GAS,
    TRANSFER_GAS,
    AnvilError,
    _rpc,
    deploy_emitter,
    wait_receipts,
)

CALL_KINDS = ("relay", "spawn", "try_fail", "nest", "transfer")


def caller_artifact() -> dict[str, Any]:
    """The committed compiler output for TraceCaller.sol."""
    return json.loads(CALLER_ARTIFACT.read_text())


def caller_calldata(function: str, *args: str | bytes) -> str:
    """ABI-encode a call to TraceCaller (`address` arguments as 0x hex, `bytes32` as bytes)."""
    selectors = caller_artifact()["selectors"]
    signature = next((s for s in selectors if s.split("(")[0] == function), None)
    if signature is None:
        raise ValueError(f"TraceCaller has no function {function!r}")
    encoded = ""
    for arg in args:
        if isinstance(arg, bytes):
            encoded += arg.ljust(32, b"\0").hex()
        else:
            encoded += arg.lower().removeprefix("0x").rjust(64, "0")
    return selectors[signature] + encoded


def deploy_caller(url: str, *, sender: str | None = None) -> str:
    """Deploy TraceCaller from an unlocked dev account; returns its lowercase address."""
    with _rpc(url) as rpc:
        sender = sender or rpc.call("eth_accounts")[0]
        tx = {"from": sender, "data": caller_artifact()["bytecode"], "gas": hex(DEPLOY_GAS)}
        (receipt,) = wait_receipts(rpc, [rpc.call("eth_sendTransaction", [tx])])
        if int(receipt["status"], 16) != 1 or not receipt.get("contractAddress"):
            raise AnvilError(f"TraceCaller deployment failed: {receipt}")
        return receipt["contractAddress"].lower()


@dataclass
class CallTraffic:
    """What `generate_call_traffic` sent: the contracts used and every transaction by kind."""

    emitter: str
    caller: str
    block_numbers: list[int] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # tx hash -> kind


def _call_tx(
    kind: str, sender: str, receiver: str, caller: str, emitter: str, n: int
) -> dict[str, Any]:
    if kind == "relay":
        data = caller_calldata("relay", emitter, f"relay-{n}".encode())
        value = hex(n + 1)
        return {"from": sender, "to": caller, "data": data, "value": value, "gas": hex(CALL_GAS)}
    if kind == "spawn":
        data = caller_calldata("spawn")
        return {"from": sender, "to": caller, "data": data, "value": hex(n), "gas": hex(CALL_GAS)}
    if kind == "try_fail":
        data = caller_calldata("tryFail", emitter)
        return {"from": sender, "to": caller, "data": data, "gas": hex(CALL_GAS)}
    if kind == "nest":
        return {"from": sender, "to": caller, "data": caller_calldata("nest"), "gas": hex(CALL_GAS)}
    if kind == "transfer":
        return {"from": sender, "to": receiver, "value": hex(n), "gas": hex(TRANSFER_GAS)}
    raise ValueError(f"unknown call kind {kind!r}")


def generate_call_traffic(
    url: str, *, blocks: int, emitter: str | None = None, caller: str | None = None
) -> CallTraffic:
    """Mine `blocks` blocks, each holding one transaction of every CALL_KINDS shape (sent from
    distinct dev accounts with automine paused, then `evm_mine`); the plain transfer goes to a
    dev account (no code, so a trace without subtraces)."""
    if blocks < 1:
        raise ValueError("need blocks >= 1")
    emitter = emitter or deploy_emitter(url)
    caller = caller or deploy_caller(url)
    traffic = CallTraffic(emitter=emitter.lower(), caller=caller.lower())
    with _rpc(url) as rpc:
        accounts = [a.lower() for a in rpc.call("eth_accounts")]
        if len(accounts) < len(CALL_KINDS) + 2:
            raise AnvilError(f"call traffic needs {len(CALL_KINDS) + 2} dev accounts")
        automine = bool(rpc.call("anvil_getAutomine"))
        if automine:
            rpc.call("evm_setAutomine", [False])
        sent: list[str] = []
        try:
            n = int(rpc.call("eth_blockNumber"), 16) * 100
            for _ in range(blocks):
                for i, kind in enumerate(CALL_KINDS):
                    sender = accounts[1 + i]
                    tx = _call_tx(kind, sender, accounts[0], traffic.caller, traffic.emitter, n)
                    tx_hash = rpc.call("eth_sendTransaction", [tx]).lower()
                    traffic.kinds[tx_hash] = kind
                    sent.append(tx_hash)
                    n += 1
                rpc.call("evm_mine")
            receipts = wait_receipts(rpc, sent)
        finally:
            if automine:
                rpc.call("evm_setAutomine", [True])
    for receipt in receipts:
        if int(receipt["status"], 16) != 1:
            kind = traffic.kinds[receipt["transactionHash"].lower()]
            raise AnvilError(f"{kind} transaction {receipt['transactionHash']} reverted")
    traffic.block_numbers = sorted({int(r["blockNumber"], 16) for r in receipts})
    return traffic


__all__ = [
    "CALL_KINDS",
    "CallTraffic",
    "caller_artifact",
    "caller_calldata",
    "deploy_caller",
    "generate_call_traffic",
]
