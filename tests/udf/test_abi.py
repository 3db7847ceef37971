"""The handlers' ABI helpers (`ctx.abi`): known vectors, round trips through eth-abi's encoder
for any value (hypothesis), clear errors for signatures and rows that do not read, and real
logs and inputs of the dev chain's emitter decoded to what the node says was sent."""

from __future__ import annotations

import re

import eth_abi
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trace_chain.rpc import RpcPool
from trace_tasks.sandbox import abi

ERC20_TRANSFER = "Transfer(address indexed from, address indexed to, uint256 value)"
ERC721_TRANSFER = "Transfer(address indexed from, address indexed to, uint256 indexed tokenId)"
PING = "Ping(address indexed sender, uint256 indexed seq, bytes32 tag, uint256 value)"
ALICE = "0x" + "ab" * 20
BOB = "0x" + "cd" * 20


def _topic_of_address(address: str) -> str:
    return "0x" + "00" * 12 + address[2:]


def _log(topics: list[str], data: bytes = b"") -> dict:
    row = {f"topic{i}": None for i in range(4)}
    row.update({f"topic{i}": t for i, t in enumerate(topics)})
    row["data"] = "0x" + data.hex()
    return row


def test_known_topic_and_selector():
    assert abi.event_topic(ERC20_TRANSFER) == (
        "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    )
    assert abi.function_selector("transfer(address to, uint256 amount)") == "0xa9059cbb"
    # `uint` is `uint256` in the canonical form that is hashed
    assert abi.function_selector("transfer(address,uint)") == "0xa9059cbb"
    assert abi.signature_parse("event Approval(address indexed, address, uint)").canonical == (
        "Approval(address,address,uint256)"
    )


def test_an_erc20_transfer_decodes_by_name_with_lowercase_addresses():
    topic0 = abi.event_topic(ERC20_TRANSFER)
    log = _log(
        [topic0, _topic_of_address(ALICE), _topic_of_address(BOB)],
        eth_abi.encode(["uint256"], [10**24]),
    )
    assert abi.decode_log(log, ERC20_TRANSFER) == {"from": ALICE, "to": BOB, "value": 10**24}
    # the same log in the RPC's spelling (a topics list) decodes the same
    rpc_log = {"topics": [topic0, _topic_of_address(ALICE), _topic_of_address(BOB)]}
    rpc_log["data"] = log["data"]
    assert abi.decode_log(rpc_log, ERC20_TRANSFER) == {"from": ALICE, "to": BOB, "value": 10**24}


def test_another_event_or_another_count_of_indexed_arguments_is_not_a_match():
    topic0 = abi.event_topic(ERC20_TRANSFER)
    erc721 = _log(
        [topic0, _topic_of_address(ALICE), _topic_of_address(BOB), "0x" + "00" * 31 + "07"]
    )
    assert abi.decode_log(erc721, ERC20_TRANSFER) is None
    assert abi.decode_log(erc721, ERC721_TRANSFER) == {"from": ALICE, "to": BOB, "tokenId": 7}
    other = _log([abi.event_topic("Approval(address,address,uint256)")], b"")
    assert abi.decode_log(other, ERC20_TRANSFER) is None
    assert abi.decode_log(_log([]), ERC20_TRANSFER) is None  # anonymous: no topic0


def test_indexed_dynamic_values_come_back_as_their_hash_and_unnamed_params_get_names():
    sig = "Named(string indexed label, bytes note)"
    label_hash = "0x" + "11" * 32
    log = _log([abi.event_topic(sig), label_hash], eth_abi.encode(["bytes"], [b"\x01\x02"]))
    assert abi.decode_log(log, sig) == {"label": label_hash, "note": "0x0102"}
    unnamed = "Pair(uint256,(address,bool)[])"
    data = eth_abi.encode(["uint256", "(address,bool)[]"], [5, [(ALICE, True), (BOB, False)]])
    assert abi.decode_log(_log([abi.event_topic(unnamed)], data), unnamed) == {
        "arg0": 5,
        "arg1": [[ALICE, True], [BOB, False]],
    }


def test_function_input_decodes_only_with_its_selector():
    sig = "transfer(address to, uint256 amount)"
    data = bytes.fromhex("a9059cbb") + eth_abi.encode(["address", "uint256"], [BOB, 3])
    assert abi.decode_function_input("0x" + data.hex(), sig) == {"to": BOB, "amount": 3}
    assert abi.decode_function_input("0x" + data.hex(), "approve(address,uint256)") is None
    assert abi.decode_function_input("0x", sig) is None


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        ("Transfer", "expected 'Name(type name, ...)'"),
        ("(uint256)", "expected 'Name(type name, ...)'"),
        ("Transfer(uint257 value)", "unknown ABI type 'uint257'"),
        ("Transfer(bytes33 value)", "unknown ABI type 'bytes33'"),
        ("Transfer(uint256 a, uint256 a)", "share a name"),
        (
            "Transfer(uint256 indexed a, uint256 indexed b, uint8 indexed c, bool indexed d)",
            "at most 3",
        ),
        ("Transfer((uint256,bool value)", "unbalanced"),
        ("Transfer(uint256 a b)", "expected 'type [indexed] [name]'"),
        ("Transfer(tuple(uint256) a)", "write tuple types"),
        ("Bad-Name(uint256)", "bad name"),
    ],
)
def test_a_signature_that_does_not_read_says_why(signature, message):
    with pytest.raises(abi.AbiError, match=re.escape(message)):
        abi.signature_parse(signature)


def test_indexed_is_refused_in_a_function_signature():
    with pytest.raises(abi.AbiError, match="'indexed' outside an event"):
        abi.function_selector("transfer(address indexed to)")


def test_a_matching_log_that_does_not_decode_raises_with_the_field():
    topic0 = abi.event_topic(ERC20_TRANSFER)
    short = _log([topic0, _topic_of_address(ALICE), _topic_of_address(BOB)], b"\x01")
    with pytest.raises(abi.AbiError, match=r"data does not decode as \(uint256\)"):
        abi.decode_log(short, ERC20_TRANSFER)
    bad_topic = _log([topic0, "0x1234", _topic_of_address(BOB)])
    with pytest.raises(abi.AbiError, match="topic of 'from' is 2 bytes"):
        abi.decode_log(bad_topic, ERC20_TRANSFER)
    not_hex = _log([topic0, _topic_of_address(ALICE), _topic_of_address(BOB)])
    not_hex["data"] = "zz"
    with pytest.raises(abi.AbiError, match="data is not 0x hex"):
        abi.decode_log(not_hex, ERC20_TRANSFER)
    gap = _log([topic0, None, _topic_of_address(BOB)])
    with pytest.raises(abi.AbiError, match="gap in its topics"):
        abi.decode_log(gap, ERC20_TRANSFER)


addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


@given(
    sender=addresses,
    recipient=addresses,
    value=st.integers(min_value=0, max_value=2**256 - 1),
    memo=st.binary(max_size=100),
    flags=st.lists(st.booleans(), max_size=5),
    delta=st.integers(min_value=-(2**255), max_value=2**255 - 1),
)
def test_any_encoded_event_decodes_to_its_values(sender, recipient, value, memo, flags, delta):
    sig = (
        "Moved(address indexed from, address to, uint256 value, bytes memo, bool[] flags,"
        " int256 indexed delta)"
    )
    data = eth_abi.encode(
        ["address", "uint256", "bytes", "bool[]"], [recipient, value, memo, flags]
    )
    topics = [abi.event_topic(sig), _topic_of_address(sender)]
    topics.append("0x" + eth_abi.encode(["int256"], [delta]).hex())
    assert abi.decode_log(_log(topics, data), sig) == {
        "from": sender,
        "to": recipient,
        "value": value,
        "memo": "0x" + memo.hex(),
        "flags": flags,
        "delta": delta,
    }


def test_the_dev_chains_ping_logs_decode_to_what_each_transaction_sent(chain_with_traffic):
    topic0 = abi.event_topic(PING)
    with RpcPool("abi", [chain_with_traffic.url], timeout=10, max_retries=0) as rpc:
        logs = rpc.call(
            "eth_getLogs",
            [
                {
                    "fromBlock": hex(chain_with_traffic.start),
                    "toBlock": hex(chain_with_traffic.end_exclusive - 1),
                    "address": chain_with_traffic.emitter,
                    "topics": [topic0],
                }
            ],
        )
        assert logs, "the traffic has ping calls"
        seqs = []
        for log in logs:
            tx = rpc.call("eth_getTransactionByHash", [log["transactionHash"]])
            decoded = abi.decode_log(log, PING)
            assert decoded["sender"] == tx["from"].lower()
            assert decoded["value"] == int(tx["value"], 16)
            assert abi.decode_function_input(tx["input"], "ping(bytes32 tag)") == {
                "tag": decoded["tag"]
            }
            seqs.append(decoded["seq"])
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
