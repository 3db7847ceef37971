"""RpcPool against anvil and against local servers that refuse, stall or fail."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from tests.chain.servers import RpcProxy, StallingServer, StatusServer
from trace_chain.devchain import free_port, mine
from trace_chain.rpc import (
    RpcError,
    RpcPool,
    RpcPoolNotConfigured,
    RpcTooLarge,
    RpcUnavailable,
    TokenBucket,
    redact_url,
    rpc_pool_config_from_env,
    rpc_pool_from_env,
)

FAST = {"backoff_base": 0.01, "backoff_max": 0.05}


def dead_url(path: str = "") -> str:
    return f"http://127.0.0.1:{free_port()}{path}"  # nothing listens there: connection refused


def test_call_and_batch_return_results_in_request_order(anvil_pool):
    head = int(anvil_pool.call("eth_blockNumber"), 16)
    numbers = list(range(head + 1))
    results = anvil_pool.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
    assert [int(b["number"], 16) for b in results] == numbers
    assert anvil_pool.batch([]) == []


def test_batch_matches_answers_by_id_even_when_the_server_reorders_them(anvil):
    def reverse(_request, answer):
        return list(reversed(answer)) if isinstance(answer, list) else answer

    mine(anvil.url, 3)  # make sure blocks 0..2 exist
    with (
        RpcProxy(anvil.url, transform=reverse) as proxy,
        RpcPool("p", [proxy.url], timeout=5, max_retries=0) as pool,
    ):
        results = pool.batch([("eth_getBlockByNumber", [hex(n), False]) for n in range(3)])
        assert [int(b["number"], 16) for b in results] == [0, 1, 2]
        assert results[0]["hash"] != results[1]["hash"]


def test_per_item_error_raises_rpc_error_with_code(anvil_pool):
    with pytest.raises(RpcError) as caught:
        anvil_pool.batch([("eth_blockNumber", []), ("eth_getBlockByNumber", ["zz", False])])
    assert caught.value.code == -32602
    assert caught.value.method == "eth_getBlockByNumber"


def test_fails_over_from_a_dead_port_and_then_prefers_the_live_endpoint(anvil):
    with RpcPool("p", [dead_url(), anvil.url], timeout=2, max_retries=0, **FAST) as pool:
        started = time.monotonic()
        assert pool.call("eth_chainId") == "0x7a69"
        assert time.monotonic() - started < 2
        assert pool.batch([("eth_chainId", [])]) == ["0x7a69"]


def test_fails_over_from_a_stalling_endpoint_after_the_timeout(anvil):
    with (
        StallingServer(stall=30) as stalling,
        RpcPool("p", [stalling.url, anvil.url], timeout=0.3, max_retries=0, **FAST) as pool,
    ):
        started = time.monotonic()
        assert pool.call("eth_chainId") == "0x7a69"
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < 3
        # The next request starts at the endpoint that last answered: no second stall.
        started = time.monotonic()
        pool.call("eth_chainId")
        assert time.monotonic() - started < 0.3
        assert len(stalling.requests) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
def test_fails_over_from_an_endpoint_answering_http_errors(anvil, status):
    with (
        StatusServer(status) as failing,
        RpcPool("p", [failing.url, anvil.url], timeout=2, max_retries=0, **FAST) as pool,
    ):
        assert pool.batch([("eth_chainId", []), ("eth_blockNumber", [])])[0] == "0x7a69"
        assert len(failing.requests) == 1


def test_fails_over_on_a_retryable_json_rpc_error(anvil):
    def rate_limited(body):
        return 200, {"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32005, "message": "x"}}

    with (
        RpcProxy(anvil.url, hook=rate_limited) as limited,
        RpcPool("p", [limited.url, anvil.url], timeout=2, max_retries=0, **FAST) as pool,
    ):
        assert pool.call("eth_chainId") == "0x7a69"
        assert len(limited.requests) == 1


def test_non_retryable_error_raises_at_once_without_trying_other_endpoints(anvil):
    with (
        RpcProxy(anvil.url) as first,
        RpcProxy(anvil.url) as second,
        RpcPool("p", [first.url, second.url], timeout=2, max_retries=3, **FAST) as pool,
    ):
        with pytest.raises(RpcError) as caught:
            pool.call("eth_getBlockByNumber", ["zz", False])
        assert caught.value.code == -32602
        assert len(first.requests) == 1
        assert second.requests == []


def test_whole_batch_failure_is_retried(anvil):
    failures = iter([True, False])

    def fail_once(body):
        return (503, {"error": "busy"}) if next(failures, False) else None

    with (
        RpcProxy(anvil.url, hook=fail_once) as proxy,
        RpcPool("p", [proxy.url], timeout=2, max_retries=1, **FAST) as pool,
    ):
        assert pool.batch([("eth_chainId", []), ("eth_chainId", [])]) == ["0x7a69", "0x7a69"]
        assert len(proxy.requests) == 2


def test_oversized_batch_raises_too_large_without_retrying(anvil):
    with (
        RpcProxy(anvil.url, hook=lambda body: (413, b"payload too large")) as proxy,
        RpcPool("p", [proxy.url], timeout=2, max_retries=3, **FAST) as pool,
    ):
        with pytest.raises(RpcTooLarge):
            pool.batch([("eth_chainId", [])] * 3)
        assert len(proxy.requests) == 1


def test_unavailable_lists_every_endpoint_redacted_after_all_rounds(caplog):
    secret = "SUPERSECRETKEY123"
    urls = [dead_url(f"/v2/{secret}"), f"http://user:{secret}@127.0.0.1:{free_port()}/?key=1"]
    caplog.set_level(logging.DEBUG, logger="trace_chain")
    with RpcPool("p", urls, timeout=1, max_retries=2, backoff_base=0.05, backoff_max=1) as pool:
        started = time.monotonic()
        with pytest.raises(RpcUnavailable) as caught:
            pool.call("eth_chainId")
        elapsed = time.monotonic() - started
    error = caught.value
    assert error.rounds == 3
    assert set(error.errors) == {redact_url(u) for u in urls}
    assert all("ConnectionError" in e for e in error.errors.values())
    # Two backoff sleeps between three rounds: at least half of 0.05 + 0.1.
    assert elapsed >= 0.075
    assert secret not in str(error)
    assert secret not in caplog.text
    assert "127.0.0.1" in caplog.text  # the redacted form is still logged


def test_endpoints_that_redact_alike_are_told_apart():
    port = free_port()
    urls = [f"http://127.0.0.1:{port}/key-one", f"http://127.0.0.1:{port}/key-two"]
    with RpcPool("p", urls, timeout=1, max_retries=0) as pool:
        with pytest.raises(RpcUnavailable) as caught:
            pool.call("eth_chainId")
        assert pool.endpoints == [f"http://127.0.0.1:{port}/…#1", f"http://127.0.0.1:{port}/…#2"]
    assert len(caught.value.errors) == 2
    assert "key-one" not in str(caught.value)


def test_redact_url_keeps_scheme_host_and_port_only():
    assert redact_url("https://key:pw@rpc.example.com:8545/v3/abc?x=1") == (
        "https://rpc.example.com:8545/…"
    )
    assert redact_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545/"
    assert redact_url("http://[::1]:8545/k") == "http://[::1]:8545/…"


def test_token_bucket_limits_the_rate():
    bucket = TokenBucket(rate=20, capacity=1)
    started = time.monotonic()
    calls = 0
    while time.monotonic() - started < 0.5:
        bucket.acquire()
        calls += 1
    assert 6 <= calls <= 14  # ~11 expected: one burst token plus 20/s for 0.5 s


def test_token_bucket_is_shared_fairly_between_threads():
    bucket = TokenBucket(rate=40, capacity=1)
    counts = [0] * 4
    stop = time.monotonic() + 0.5

    def worker(i):
        while time.monotonic() < stop:
            bucket.acquire()
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 10 <= sum(counts) <= 30  # ~21 expected; unlimited would be thousands


def test_pool_rate_limit_applies_per_endpoint(anvil):
    with RpcPool("p", [anvil.url], rps_per_endpoint=10, timeout=2, max_retries=0) as pool:
        started = time.monotonic()
        for _ in range(16):
            pool.call("eth_chainId")
        elapsed = time.monotonic() - started
    # A burst of one second's worth (10), then one request per 0.1 s: ~0.6 s for the other 6.
    assert 0.45 <= elapsed < 2.0


def test_pool_from_env_reads_urls_and_options(anvil):
    env = {
        "TRACE_RPC_POOL_MAIN_NET": f" {dead_url()} , {anvil.url} ",
        "TRACE_RPC_POOL_MAIN_NET_RPS": "50",
        "TRACE_RPC_POOL_MAIN_NET_TIMEOUT": "1.5",
        "TRACE_RPC_POOL_MAIN_NET_RETRIES": "0",
    }
    config = rpc_pool_config_from_env("main-net", env)
    assert config.rps_per_endpoint == 50.0
    assert config.timeout == 1.5
    assert config.max_retries == 0
    assert len(config.endpoints) == 2
    with rpc_pool_from_env("main-net", env) as pool:
        assert pool.call("eth_chainId") == "0x7a69"


def test_unknown_pool_error_names_the_variable():
    with pytest.raises(RpcPoolNotConfigured, match="TRACE_RPC_POOL_ARCHIVE"):
        rpc_pool_from_env("archive", {})


@pytest.mark.parametrize(
    ("var", "value"), [("_RPS", "fast"), ("_TIMEOUT", "0"), ("_RETRIES", "-1"), ("_RETRIES", "1.5")]
)
def test_bad_pool_options_name_the_variable(var, value):
    env = {"TRACE_RPC_POOL_X": "http://127.0.0.1:1", f"TRACE_RPC_POOL_X{var}": value}
    with pytest.raises(ValueError, match=f"TRACE_RPC_POOL_X{var}"):
        rpc_pool_config_from_env("x", env)


def test_non_http_url_is_refused_without_echoing_it():
    with pytest.raises(ValueError) as caught:
        RpcPool("p", ["ws://127.0.0.1:8546/secretkey"])
    assert "secretkey" not in str(caught.value)


def test_closed_pool_refuses_requests(anvil):
    pool = RpcPool("p", [anvil.url])
    with pool:
        pool.call("eth_chainId")
    with pytest.raises(RuntimeError, match="closed"):
        pool.call("eth_chainId")
