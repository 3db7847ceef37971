"""The condition language (trace_web/alerts/conditions): what a security team writes is
accepted and normalized, anything else is refused naming `condition.<field>` and where in
the expression; evaluation follows Python's semantics over the row's fields."""

from __future__ import annotations

import json

import pytest

from trace_chain import devchain
from trace_chain.rpc import RpcPool
from trace_web.alerts.conditions import (
    Condition,
    condition_datasets,
    condition_evaluate,
    condition_matches,
    condition_parse,
    condition_sql,
)
from trace_web.errors import ValidationFailed

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # EIP-55 form of anvil's first deployment
ALICE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
BOB = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
TRANSFER = "Transfer(address indexed from, address indexed to, uint256 value)"
TRANSFER_TOPIC0 = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def refusal(data) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        condition_parse(data)
    assert caught.value.details, "a refusal lists its problems"
    return caught.value.details


def test_the_log_example_is_accepted_and_normalized():
    cond = condition_parse(
        {
            "match": "log",
            "address": [TOKEN],
            "event": TRANSFER,
            "where": f"value > 10**18 and from in ['{ALICE}', '{BOB}']",
        }
    )
    assert isinstance(cond, Condition)
    assert cond.addresses == (TOKEN.lower(),)
    assert cond.topic0 == TRANSFER_TOPIC0
    assert cond.to_json() == {
        "match": "log",
        "address": [TOKEN.lower()],
        "event": "Transfer(address,address,uint256)",
        "topic0": TRANSFER_TOPIC0,
        "where": f"value > 10**18 and from in ['{ALICE}', '{BOB}']",
    }
    assert condition_datasets(cond) == ["blocks", "logs"]
    # `from` is a Python keyword, read here as the event's argument
    env = {"value": 10**18 + 1, "from": ALICE.lower()}
    assert cond.where.evaluate(env)
    assert not cond.where.evaluate({**env, "value": 10**18})
    assert not cond.where.evaluate({**env, "from": "0x" + "11" * 20})


def test_the_transaction_examples_are_accepted():
    call = condition_parse(
        {
            "match": "transaction",
            "to": [TOKEN],
            "function": "transfer(address to, uint256 amount)",
            "where": "amount >= 5 * 10**17 or value > 0",
        }
    )
    assert call.selector == "0xa9059cbb"
    assert call.to_addresses == (TOKEN.lower(),)
    assert call.where.evaluate({"amount": 5 * 10**17, "value": 0})
    assert not call.where.evaluate({"amount": 5 * 10**17 - 1, "value": 0})
    plain = condition_parse({"match": "transaction", "from": [ALICE], "where": "value > 10**18"})
    assert plain.from_addresses == (ALICE.lower(),) and plain.signature is None
    assert condition_datasets(plain) == ["blocks", "transactions"]
    by_selector = condition_parse({"match": "transaction", "selector": "0xA9059CBB"})
    assert by_selector.selector == "0xa9059cbb"


@pytest.mark.parametrize(
    ("signature", "canonical", "selector"),
    [
        ("transfer(address,uint256)", "transfer(address,uint256)", "0xa9059cbb"),
        ("approve(address spender, uint amount)", "approve(address,uint256)", "0x095ea7b3"),
        (
            "transferFrom(address from, address to, uint256 value)",
            "transferFrom(address,address,uint256)",
            "0x23b872dd",
        ),
        ("balanceOf(address)", "balanceOf(address)", "0x70a08231"),
        ("multicall(bytes[] calldata data)", "multicall(bytes[])", "0xac9650d8"),
        (
            "swap((address a, uint256 b)[] memory legs, bytes32 id)",
            "swap((address,uint256)[],bytes32)",
            None,
        ),
    ],
)
def test_function_signatures_canonicalize_to_their_known_selectors(signature, canonical, selector):
    cond = condition_parse({"match": "transaction", "function": signature})
    assert cond.signature.canonical == canonical
    if selector is not None:
        assert cond.selector == selector


def test_event_signatures_give_their_topic0_and_argument_kinds():
    approval = condition_parse(
        {
            "match": "log",
            "event": "Approval(address indexed owner, address indexed spender, uint256 value)",
        }
    )
    assert approval.topic0 == ("0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925")
    named = condition_parse(
        {"match": "log", "event": "Note(string indexed tag, string text, uint8[] codes, bool ok)"}
    )
    assert {k: named.fields[k] for k in ("tag", "text", "codes", "ok")} == {
        "tag": "str",  # an indexed string is its hash
        "text": "str",
        "codes": "list",
        "ok": "bool",
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("not a mapping", "condition: must be a mapping"),
        ({}, "condition.match: required"),
        (
            {"match": "block"},
            "condition.match: must be 'transaction', 'log' or 'trace', got 'block'",
        ),
        ({"match": "log", "event": TRANSFER, "x": 1}, "condition.x: unknown field"),
        (
            {"match": "log", "from": [ALICE]},
            "condition.from: only for match 'transaction' or 'trace'",
        ),
        ({"match": "transaction", "event": TRANSFER}, "condition.event: only for match 'log'"),
        ({"match": "log", "address": []}, "condition.address: must not be empty"),
        ({"match": "log", "address": "0x12"}, "condition.address: must be a list"),
        (
            {"match": "log", "address": ["0x12"]},
            "condition.address[0]: must be an address, 0x + 40 hex digits",
        ),
        (
            {"match": "log", "address": [ALICE.replace("f39F", "f39f")]},
            "condition.address[0]: bad EIP-55 checksum",
        ),
        (
            {"match": "transaction", "to": [ALICE, ALICE.lower()]},
            f"condition.to[1]: {ALICE.lower()} is listed twice",
        ),
        (
            {"match": "transaction", "selector": "a9059cbb"},
            "condition.selector: must be a function selector, 0x + 8 hex digits",
        ),
        (
            {
                "match": "transaction",
                "selector": "0xa9059cbb",
                "function": "transfer(address,uint)",
            },
            "condition.selector: give either selector or function, not both",
        ),
        (
            {"match": "log"},
            "condition: give at least one of address, event, where: it would match every row",
        ),
        ({"match": "log", "where": 1}, "condition.where: must be a string, got 1"),
        ({"match": "log", "where": ""}, "condition.where: must not be empty"),
        (
            {"match": "log", "event": "Transfer(address indexed from, uint7 value)"},
            "condition.event: 'uint7' is not an ABI type (integer size out of bounds (max 256 "
            "bits)) (column 32)",
        ),
        (
            {"match": "log", "event": f"{TRANSFER} anonymous"},
            "condition.event: anonymous events are not supported (they have no topic0) (column 76)",
        ),
        (
            {
                "match": "log",
                "event": "E(uint indexed a, uint indexed b, uint indexed c, bool indexed d)",
            },
            "condition.event: an event has at most 3 indexed arguments",
        ),
        (
            {"match": "transaction", "function": "f(uint indexed a)"},
            "condition.function: 'indexed' is only for the arguments of an event (column 8)",
        ),
        (
            {"match": "log", "event": "E(uint a, bool a)"},
            "condition.event: argument name 'a' is used twice",
        ),
        (
            {"match": "transaction", "function": "deposit(uint256 value)", "where": "value > 1"},
            "condition.where: 'value' is both an argument of condition.function and a "
            "transactions column; rename the argument in the signature (names do not change "
            "the hash) (column 1)",
        ),
        (
            {"match": "log", "event": "Transfer"},
            "condition.event: expected '(', found 'the end' (column 9)",
        ),
        (
            {"match": "log", "where": "a\u0000"},
            "condition.where: text may not contain NUL (\\u0000)",
        ),
    ],
)
def test_structural_problems_name_their_field(data, expected):
    assert expected in refusal(data)


def test_an_unquoted_address_in_yaml_is_a_number_and_the_error_says_so():
    from trace_web.orchestration.dag_spec import load_strict_yaml

    data = load_strict_yaml(f"match: transaction\nto: [{TOKEN}]\nselector: 0xa9059cbb\n")
    assert refusal(data) == [
        "condition.to[0]: must be a string: quote it (YAML reads an unquoted 0x… as a number)",
        "condition.selector: must be a string: quote it (YAML reads an unquoted 0x… as a number)",
    ]
    quoted = load_strict_yaml(f"match: transaction\nto: ['{TOKEN}']\nselector: '0xa9059cbb'\n")
    assert condition_parse(quoted).to_addresses == (TOKEN.lower(),)


def test_every_problem_is_reported_at_once():
    errors = refusal(
        {
            "match": "log",
            "address": ["nope"],
            "from": [ALICE],
            "event": "Transfer(address indexed from, uint7 value)",
        }
    )
    assert "condition.from: only for match 'transaction' or 'trace'" in errors
    assert "condition.address[0]: must be an address, 0x + 40 hex digits" in errors


TX = {"match": "transaction", "function": "transfer(address to, uint256 amount)"}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("value.real > 1", "attribute access (.name) is not allowed (column 1)"),
        ("len(to) > 1", "function calls are not allowed (column 1)"),
        ("__import__('os') == 1", "function calls are not allowed (column 1)"),
        ("input[0:4] == '0x'", "subscripts ([...]) are not allowed (column 1)"),
        ("(lambda: 1) == 1", "lambdas are not allowed (column 2)"),
        ("amount in [x for x in [1]]", "comprehensions are not allowed (column 11)"),
        ("value in {1, 2}", "sets are not allowed: use a list [...] (column 10)"),
        ("value == {1: 2}", "dicts are not allowed (column 10)"),
        (
            "value > (1 if True else 2)",
            "conditional expressions (a if c else b) are not allowed (column 10)",
        ),
        ("(y := 1) == 1", "assignments (:=) are not allowed (column 2)"),
        ("value > 10**10**10", "a constant beyond ±2**256 (column 9)"),
        ("value > 2**257", "a constant beyond ±2**256 (column 9)"),
        ("value > 9**99999999", "a constant beyond ±2**256 (column 9)"),
        ("value > 2**-1", "negative exponents are not allowed (column 9)"),
        ("value > 1 // 0", "division by zero (column 9)"),
        ("value > 1 % 0", "division by zero (column 9)"),
        ("value > 7 / 2", "/ is not allowed: use // (integer division) (column 9)"),
        ("value > 1 << 3", "operator LShift is not allowed (column 9)"),
        ("value > 1.5", "float constants are not allowed (column 9)"),
        ("value + 1 > 2", "arithmetic is only allowed on constants, not on fields (column 1)"),
        ("value > 'a' * 3", "arithmetic is only allowed on integers (column 9)"),
        ("value > True + 1", "arithmetic is only allowed on integers (column 9)"),
        ("valeu > 1", "unknown name 'valeu' (did you mean 'value'?) (column 1)"),
        ("nobody > 1", "unknown name 'nobody' (column 1)"),
        ("value", "must be a comparison or a boolean, not an integer (column 1)"),
        ("value > 1 and amount", "must be a comparison or a boolean, not an integer (column 15)"),
        ("value == 'x'", "compares an integer with a string (column 10)"),
        ("to < 5", "'<' needs two integers or two strings, not a string and an integer (column 6)"),
        (
            "success > False",
            "'>' needs two integers or two strings, not a boolean and a boolean (column 11)",
        ),
        ("value in 5", "the right of 'in' must be a list or a string (column 10)"),
        ("value in ['a']", "compares an integer with a string (column 10)"),
        ("value == [1]", "a list is only allowed on the right of 'in' / 'not in' (column 10)"),
        ("value is None", "'is' is not allowed: use == or != (column 10)"),
        ("value > 1 >", "syntax error: invalid syntax (column 12)"),
        ("value >\n  (lambda: 1)", "lambdas are not allowed (line 2, column 4)"),
        (
            f"to == '{ALICE.replace('f39F', 'f39f')}'",
            f"address '{ALICE.replace('f39F', 'f39f')}' has a bad EIP-55 checksum (column 7)",
        ),
        ("not " * 2000 + "success", "nested more than 50 deep (column 205)"),
        (
            "(" * 300 + "1" + ")" * 300 + " == value",
            "syntax error: too many nested parentheses (column 200)",
        ),
        ("value > " + "1" * 5000, "syntax error: an integer literal of more than 4300 digits"),
    ],
)
def test_where_refusals_say_what_and_where(where, expected):
    assert refusal({**TX, "where": where}) == [f"condition.where: {expected}"]


def test_a_trailing_comment_does_not_hide_the_rest_of_the_expression():
    cond = condition_parse({**TX, "where": "amount > 1  # large\n and value == 0"})
    assert cond.where.evaluate({"amount": 2, "value": 0})
    assert not cond.where.evaluate({"amount": 2, "value": 1})


def test_a_keyword_argument_name_is_named_in_errors_as_written():
    cond = {"match": "log", "event": TRANSFER}
    assert refusal({**cond, "where": "value > 1 and from.x == 1"}) == [
        "condition.where: attribute access (.name) is not allowed (column 15)"
    ]
    assert refusal({**cond, "where": "from == 1"}) == [
        "condition.where: compares a string with an integer (column 9)"
    ]


@pytest.mark.parametrize(
    ("where", "env", "expected"),
    [
        ("value > 10**18", {"value": 10**18 + 1}, True),
        ("value > 10**18", {"value": 10**18}, False),
        ("1 < value < 3", {"value": 2}, True),
        ("1 < value < 3", {"value": 3}, False),
        ("not success", {"success": False}, True),
        ("success == None", {"success": None}, True),
        # an order or membership test against NULL is false, whichever way it is negated
        ("gas_limit > 5", {"gas_limit": None}, False),
        ("not (gas_limit > 5)", {"gas_limit": None}, True),
        ("to_address == None", {"to_address": None}, True),
        (f"to_address in ['{ALICE}']", {"to_address": None}, False),
        (f"to_address not in ['{ALICE}']", {"to_address": None}, True),
        ("'a9059cbb' in input", {"input": None}, False),
        ("'a9059cbb' in input", {"input": "0xa9059cbb00"}, True),
        # addresses compare case-insensitively: constants are lowercased at parse time
        (f"from_address == '{ALICE}'", {"from_address": ALICE.lower()}, True),
        (
            f"from_address != '{ALICE.upper().replace('0X', '0x')}'",
            {"from_address": ALICE.lower()},
            False,
        ),
        ("value == -5 + 5 and nonce == 14 % 8 - -1", {"value": 0, "nonce": 7}, True),
        ("value > 1 or nonce == 3 and success", {"value": 0, "nonce": 3, "success": True}, True),
    ],
)
def test_evaluation(where, env, expected):
    cond = condition_parse({"match": "transaction", "where": where})
    assert cond.where.evaluate(env) is expected


# --- against a real chain: anvil, the block follower's hot rows, the real query gate ------------
FOLLOW = f"""
name: follow
jobs:
  - name: follow
    activation: source
    source: {{kind: always_on}}
    operator: block_follower
    config: {{chain_id: {devchain.ANVIL_CHAIN_ID}, rpc_pool: devchain}}
publish:
  chain.hot: {{job: follow, read_roles: [admin, member]}}
"""
BIG_TAG = "0x" + b"big".ljust(32, b"\0").hex()
PING = "Ping(address indexed sender, uint256 indexed seq, bytes32 tag, uint256 value)"
ETH = 10**18


@pytest.fixture
def chain(org, fresh_anvil, hot_engine, settings):
    """An emitter on a fresh anvil and, in their own blocks, calls and a transfer that a
    condition must tell apart; the follower's hot rows of all of it, readable by `org`."""
    from tests.chain.test_block_follower import Recorder, catch_up, make_follower
    from trace_web.orchestration.services.dags import dag_sync

    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    url = fresh_anvil.url
    emitter = devchain.deploy_emitter(url)
    alice, bob = devchain.dev_accounts(url)[:2]
    sent = {}
    with RpcPool("test", [url], timeout=30.0, max_retries=0) as rpc:

        def send(name, sender, to, value, data="0x"):
            tx = {"from": sender, "to": to, "value": hex(value), "data": data, "gas": hex(300_000)}
            sent[name] = rpc.call("eth_sendTransaction", [tx]).lower()
            (receipt,) = devchain.wait_receipts(rpc, [sent[name]])
            assert int(receipt["status"], 16) == 1

        send("big_ping", alice, emitter, 2 * ETH, devchain.emitter_calldata("ping", b"big"))
        send("small_ping", alice, emitter, 1, devchain.emitter_calldata("ping", b"small"))
        send("bob_ping", bob, emitter, 3 * ETH, devchain.emitter_calldata("ping", b"big"))
        send("burst", alice, emitter, 0, devchain.emitter_calldata("burst", 2))
        send("transfer", alice, bob, 5 * ETH)
        send("dust", alice, bob, 7)
        head = int(rpc.call("eth_blockNumber"), 16)
        logs = rpc.call("eth_getLogs", [{"fromBlock": "0x0", "toBlock": hex(head)}])
        txs = {name: rpc.call("eth_getTransactionByHash", [h]) for name, h in sent.items()}
        times = {
            n: int(rpc.call("eth_getBlockByNumber", [hex(n), False])["timestamp"], 16)
            for n in range(head + 1)
        }
    catch_up(make_follower(url, hot_engine, Recorder(), org_id=org.pk))
    dag_sync(org=org, yaml_text=FOLLOW, activate=True)
    return {
        "emitter": emitter,
        "alice": alice,
        "bob": bob,
        "sent": sent,
        "logs": logs,
        "txs": txs,
        "times": times,
        "end": head + 1,
    }


def run(org, cond, chain, start=0, end=None):
    """The condition's SQL through the real gate and engine, then its matches."""
    from trace_web.query.services import org_query_rows

    sql = condition_sql(
        cond,
        chain_id=devchain.ANVIL_CHAIN_ID,
        range_start=start,
        range_end=chain["end"] if end is None else end,
    )
    answer = org_query_rows(org=org, sql=sql)
    assert answer["truncated"] is False
    return answer, condition_evaluate(cond, answer["columns"], answer["rows"])


def test_a_log_condition_finds_exactly_the_matching_events_as_the_node_logged_them(org, chain):
    cond = condition_parse(
        {
            "match": "log",
            "address": [chain["emitter"]],
            "event": PING,
            "where": f"value > 10**18 and sender in ['{chain['alice']}']",
        }
    )
    answer, evaluation = run(org, cond, chain)
    # the SQL pushed address and topic0 down: only the three Ping logs came back
    assert len(answer["rows"]) == 3
    assert evaluation.undecodable == []
    (match,) = evaluation.matches
    (node_log,) = [
        log for log in chain["logs"] if log["transactionHash"] == chain["sent"]["big_ping"]
    ]
    # the node's own log, decoded by hand: topic1 = sender, topic2 = seq, data = tag ++ value
    assert node_log["topics"][0] == cond.topic0
    data = bytes.fromhex(node_log["data"][2:])
    assert match == {
        "block_number": int(node_log["blockNumber"], 16),
        "block_hash": node_log["blockHash"],
        "tx_hash": chain["sent"]["big_ping"],
        "log_index": int(node_log["logIndex"], 16),
        "key": None,
        "block_time": chain["times"][int(node_log["blockNumber"], 16)],
        "payload": match["payload"],
    }
    payload = match["payload"]
    assert payload["args"] == {
        "sender": "0x" + node_log["topics"][1][-40:],
        "seq": str(int(node_log["topics"][2], 16)),
        "tag": "0x" + data[:32].hex(),
        "value": str(int.from_bytes(data[32:], "big")),
    }
    assert payload["args"]["value"] == str(2 * ETH) and payload["args"]["sender"] == chain["alice"]
    assert payload["args"]["tag"] == BIG_TAG
    assert (
        payload["address"] == chain["emitter"] and payload["signature"] == cond.signature.canonical
    )
    assert payload["data"] == node_log["data"]
    json.dumps(payload)  # JSON-safe as it is


def test_a_transaction_condition_on_a_function_and_one_on_a_sender(org, chain):
    call = condition_parse(
        {
            "match": "transaction",
            "to": [chain["emitter"]],
            "function": "ping(bytes32 tag)",
            "where": f"value >= 2 * 10**18 and tag == '{BIG_TAG}'",
        }
    )
    answer, evaluation = run(org, call, chain)
    # the SQL read the pings of at least 2 ETH: the burst has another selector, and `value >=`
    # on the column is pushed down with it (the small ping); the tag was decoded here
    assert len(answer["rows"]) == 2
    assert "r.value >= 2000000000000000000" in condition_sql(
        call, chain_id=devchain.ANVIL_CHAIN_ID, range_start=0, range_end=1
    )
    found = [m["tx_hash"] for m in evaluation.matches]
    assert found == [chain["sent"]["big_ping"], chain["sent"]["bob_ping"]]
    node_tx = chain["txs"]["big_ping"]
    first = evaluation.matches[0]
    assert first["log_index"] is None
    assert first["block_number"] == int(node_tx["blockNumber"], 16)
    assert first["block_hash"] == node_tx["blockHash"]
    assert first["payload"]["value"] == str(int(node_tx["value"], 16)) == str(2 * ETH)
    assert first["payload"]["from_address"] == chain["alice"]
    assert first["payload"]["input"] == node_tx["input"]
    assert first["payload"]["args"] == {"tag": BIG_TAG}

    sender = condition_parse(
        {"match": "transaction", "from": [chain["alice"]], "where": "value > 10**18"}
    )
    _, evaluation = run(org, sender, chain)
    assert [m["tx_hash"] for m in evaluation.matches] == [
        chain["sent"]["big_ping"],
        chain["sent"]["transfer"],
    ]
    # the range is end-exclusive: stopping at the transfer's block leaves it out
    transfer_block = int(chain["txs"]["transfer"]["blockNumber"], 16)
    _, before = run(org, sender, chain, end=transfer_block)
    assert [m["tx_hash"] for m in before.matches] == [chain["sent"]["big_ping"]]
    _, only = run(org, sender, chain, start=transfer_block, end=transfer_block + 1)
    assert [m["tx_hash"] for m in only.matches] == [chain["sent"]["transfer"]]


def test_a_log_that_does_not_fit_the_declared_abi_is_no_match_and_is_counted(org, chain):
    # Triple indexes three arguments; declared with two, its topics do not fit
    cond = condition_parse(
        {
            "match": "log",
            "address": [chain["emitter"]],
            "event": "Triple(uint256 indexed seq, uint256 indexed index, address sender)",
        }
    )
    answer, evaluation = run(org, cond, chain)
    assert len(answer["rows"]) == 2 and evaluation.matches == []
    assert [u["tx_hash"] for u in evaluation.undecodable] == [chain["sent"]["burst"]] * 2
    assert all(u["reason"] == "topic count" for u in evaluation.undecodable)
    # declared as the contract does, the same two logs decode and match
    right = condition_parse(
        {
            "match": "log",
            "address": [chain["emitter"]],
            "event": "Triple(uint256 indexed seq, uint256 indexed index, address indexed sender)",
            "where": f"sender == '{chain['alice']}' and index in [0, 1]",
        }
    )
    _, evaluation = run(org, right, chain)
    assert [m["payload"]["args"]["index"] for m in evaluation.matches] == ["0", "1"]


# --- rows to matches, without a chain: decoding edge cases and the payload's JSON types ----------
def log_row(cond, **overrides):
    row = {
        "chain_id": 1,
        "block_number": 7,
        "block_hash": "0x" + "aa" * 32,
        "transaction_index": 0,
        "log_index": 3,
        "transaction_hash": "0x" + "bb" * 32,
        "address": TOKEN.lower(),
        "topic0": cond.topic0,
        "topic1": "0x" + "00" * 12 + ALICE[2:].lower(),
        "topic2": "0x" + "00" * 12 + BOB[2:].lower(),
        "topic3": None,
        "data": "0x" + (10**30).to_bytes(32, "big").hex(),
        "block_time": 1_700_000_000,
        **overrides,
    }
    return list(row), [list(row.values())]


def test_a_row_whose_data_does_not_fit_the_abi_is_counted_not_matched():
    cond = condition_parse({"match": "log", "event": TRANSFER})
    columns, good = log_row(cond)
    _, short = log_row(cond, data="0x" + "00" * 31)
    _, extra_topic = log_row(cond, topic3="0x" + "00" * 32)
    _, not_hex = log_row(cond, data="0xzz")
    evaluation = condition_evaluate(cond, columns, good + short + extra_topic + not_hex)
    assert len(evaluation.matches) == 1
    assert [u["reason"] for u in evaluation.undecodable] == [
        "InsufficientDataBytes",
        "topic count",
        "not 0x hex",
    ]
    assert evaluation.undecodable[0] == {
        "block_number": 7,
        "block_hash": "0x" + "aa" * 32,
        "tx_hash": "0x" + "bb" * 32,
        "log_index": 3,
        "reason": "InsufficientDataBytes",
    }
    # condition_matches returns the matches only (the rest is logged)
    assert condition_matches(cond, columns, good + short) == evaluation.matches[:1]


def test_payload_types_are_stable_and_json_safe():
    cond = condition_parse(
        {
            "match": "log",
            "event": "Odd(uint48 small, uint64 wide, int8 neg, string text, bool ok, "
            "address[] who, string indexed tag)",
        }
    )
    from eth_abi import encode

    data = encode(
        ["uint48", "uint64", "int8", "string", "bool", "address[]"],
        [5, 6, -7, "a\x00b\xff", True, [ALICE, BOB]],
    )
    columns, rows = log_row(cond, topic1="0x" + "cd" * 32, topic2=None, data="0x" + data.hex())
    (match,) = condition_matches(cond, columns, rows)
    assert match["payload"]["args"] == {
        "small": 5,  # up to 48 bits: a number
        "wide": "6",  # wider: always a decimal string, whatever the value
        "neg": -7,
        "text": "a\ufffdb\xff",  # NUL cannot be stored in jsonb
        "ok": True,
        "who": [ALICE.lower(), BOB.lower()],
        "tag": "0x" + "cd" * 32,  # an indexed string is only its hash
    }
    assert match["block_time"] == 1_700_000_000 and match["log_index"] == 3
    json.dumps(match)


def test_transaction_rows_from_the_query_api_and_from_duckdb_read_the_same():
    from decimal import Decimal

    cond = condition_parse({"match": "transaction", "where": "value > 10**18"})
    base = {
        "chain_id": 1,
        "block_number": 9,
        "block_hash": "0x" + "aa" * 32,
        "transaction_index": 2,
        "transaction_hash": "0x" + "bb" * 32,
        "from_address": ALICE.lower(),
        "to_address": None,
        "value": str(2**70),
        "gas_limit": 21000,
        "gas_price": "1",
        "max_fee_per_gas": None,
        "max_priority_fee_per_gas": None,
        "input": "0x" + "ab" * 5000,
        "nonce": 0,
        "transaction_type": 2,
        "success": True,
        "gas_used": 21000,
    }
    columns = list(base)
    as_text = condition_matches(cond, columns, [list(base.values())])
    as_decimal = condition_matches(
        cond, columns, [list({**base, "value": Decimal(2**70), "gas_price": Decimal(1)}.values())]
    )
    assert as_text == as_decimal
    (match,) = as_text
    assert match["block_time"] is None and match["log_index"] is None
    payload = match["payload"]
    assert payload["value"] == str(2**70) and payload["gas_price"] == "1"  # wei: always text
    assert payload["input"] == "0x" + "ab" * 2047 and payload["truncated"] == ["input"]
    small = condition_matches(cond, columns, [list({**base, "value": "10"}.values())])
    assert small == []


def test_the_sql_of_any_condition_passes_the_gate():
    from trace_chain.query import gate

    relations = ["blocks", "transactions", "logs"]
    for data in (
        {"match": "log", "address": [TOKEN, ALICE], "event": TRANSFER, "where": "value > 1"},
        {"match": "log", "where": "log_index > 1"},
        {"match": "transaction", "from": [ALICE], "to": [BOB], "selector": "0xa9059cbb"},
        {"match": "transaction", "function": "transfer(address to, uint256 amount)"},
    ):
        cond = condition_parse(data)
        sql = condition_sql(cond, chain_id=31337, range_start=0, range_end=10**12)
        gated = gate(sql, relations=relations)
        assert set(gated.relations) == set(condition_datasets(cond)), gated.relations


def test_the_sql_inlines_only_checked_values():
    import dataclasses

    cond = condition_parse({"match": "log", "address": [TOKEN]})
    for bad in ("0x' OR 1=1 --", TOKEN):  # injected text; a checksummed (not lowercased) one
        forged = dataclasses.replace(cond, addresses=(bad,))
        with pytest.raises(ValueError, match="refusing to inline"):
            condition_sql(forged, chain_id=1, range_start=0, range_end=1)
    for kwargs in (
        {"chain_id": "1", "range_start": 0, "range_end": 1},
        {"chain_id": 1, "range_start": -1, "range_end": 1},
        {"chain_id": 1, "range_start": 5, "range_end": 4},
        {"chain_id": 1, "range_start": True, "range_end": 4},
        {"chain_id": 1, "range_start": 0, "range_end": 2**63},
    ):
        with pytest.raises(ValueError):
            condition_sql(cond, **kwargs)


def test_a_payload_is_cut_to_fit_the_sink_and_says_what_was_cut():
    from eth_abi import encode

    from trace_web.alerts.conditions.matches import PAYLOAD_MAX_BYTES
    from trace_web.alerts.sink import PAYLOAD_MAX_BYTES as SINK_MAX

    assert PAYLOAD_MAX_BYTES <= SINK_MAX // 2
    cond = condition_parse(
        {"match": "log", "event": "Big(string text, uint8[] many, uint256 amount)"}
    )
    data = encode(["string", "uint8[]", "uint256"], ["x" * 20_000, [7] * 300, 10**30])
    columns, rows = log_row(cond, topic1=None, topic2=None, data="0x" + data.hex())
    (match,) = condition_matches(cond, columns, rows)
    payload = match["payload"]
    assert len(json.dumps(payload, separators=(",", ":"))) <= PAYLOAD_MAX_BYTES
    assert payload["truncated"] == ["data", "args.text"]
    assert payload["data"] == "0x" + data.hex()[:8]
    # what fits is kept whole: the other arguments, exactly
    assert payload["args"] == {"text": None, "many": [7] * 300, "amount": str(10**30)}


# --- docs/alerts.md's Conditions section says what the code does ------------------------------
def conditions_section() -> str:
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text()
    return page.split("\n## Conditions\n", 1)[1].split("\n## ", 1)[0]


def code_blocks(text: str, language: str) -> list[str]:
    import re

    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_the_documented_examples_are_accepted():
    import yaml

    section = conditions_section()
    (json_block,) = code_blocks(section, "json")
    decoder, examples, text = json.JSONDecoder(), [], json_block.strip()
    while text:
        value, end = decoder.raw_decode(text)
        examples.append(value)
        text = text[end:].strip()
    (yaml_block,) = code_blocks(section, "yaml")
    examples.append(yaml.safe_load(yaml_block)["condition"])
    assert len(examples) == 5
    for example in examples:
        condition_parse(example)
    calls = condition_parse(examples[3])
    assert calls.match == "trace" and calls.dataset == "traces"
    create = {"trace_type": "create", "value": 0, "error": None}
    assert calls.where.evaluate(create)
    assert not calls.where.evaluate({**create, "trace_type": "call", "value": 2 * 10**18})
    approval = condition_parse(examples[4])
    unlimited = {"value": 2**256 - 1, "spender": "0x" + "12" * 20}
    assert approval.where.evaluate(unlimited)
    permit2 = "0x000000000022d473030f116ddee9f6b43ac78ba3"
    assert not approval.where.evaluate({**unlimited, "spender": permit2})


def test_the_documented_errors_are_the_errors_given():
    import re

    (errors_block,) = re.findall(
        r"<!-- condition-errors -->\n```\n(.*?)```", conditions_section(), re.S
    )
    inputs = [
        {"match": "block"},
        {"match": "log", "address": [ALICE.replace("f39F", "f39f")]},
        {"match": "log", "event": "Transfer(address indexed from, uint7 value)"},
        {"match": "log", "event": TRANSFER, "where": "from == 1"},
        {"match": "log", "event": TRANSFER, "where": "value > 10**10**10"},
    ]
    assert [refusal(data)[0] for data in inputs] == errors_block.strip().splitlines()


def test_a_condition_is_hashable_and_equal_to_the_same_condition_parsed_again():
    data = {"match": "log", "event": TRANSFER, "where": "value > 1"}
    assert condition_parse(data) == condition_parse(data)
    assert len({condition_parse(data), condition_parse(data)}) == 1
