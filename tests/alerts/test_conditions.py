"""The condition language (trace_web/alerts/conditions): what a security team writes is
accepted and normalized, anything else is refused naming `condition.<field>` and where in
the expression; evaluation follows Python's semantics over the row's fields."""

from __future__ import annotations

import pytest

from trace_web.alerts.conditions import Condition, condition_datasets, condition_parse
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
        ({"match": "block"}, "condition.match: must be 'transaction' or 'log', got 'block'"),
        ({"match": "log", "event": TRANSFER, "x": 1}, "condition.x: unknown field"),
        ({"match": "log", "from": [ALICE]}, "condition.from: only for match 'transaction'"),
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


def test_every_problem_is_reported_at_once():
    errors = refusal(
        {
            "match": "log",
            "address": ["nope"],
            "from": [ALICE],
            "event": "Transfer(address indexed from, uint7 value)",
        }
    )
    assert "condition.from: only for match 'transaction'" in errors
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
