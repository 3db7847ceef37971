"""RpcPool against anvil and against local servers that refuse, stall or fail."""

from __future__ import annotations

import logging
import threading

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


class VirtualClock:
    """Stands in for the `time` module of trace_chain.rpc: `monotonic` moves only when the code
    sleeps, so what the code waits is exact and asserted as such, whatever the machine's load
    (real requests take no virtual time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> VirtualClock:
    fake = VirtualClock()
    monkeypatch.setattr("trace_chain.rpc.time", fake)
    return fake


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


def test_fails_over_from_a_dead_port_within_one_round(anvil, clock):
    with RpcPool("p", [dead_url(), anvil.url], timeout=2, max_retries=0, **FAST) as pool:
        assert pool.call("eth_chainId") == "0x7a69"
        assert pool.batch([("eth_chainId", [])]) == ["0x7a69"]
    assert clock.sleeps == []  # the live endpoint answered in the same round: no backoff


def test_fails_over_from_a_stalling_endpoint_after_the_timeout(anvil):
    with (
        StallingServer(stall=30) as stalling,
        # The stall (30 s) is far beyond the timeout, which leaves anvil, asked under the same
        # timeout, all the time a loaded machine needs.
        RpcPool("p", [stalling.url, anvil.url], timeout=2, max_retries=0, **FAST) as pool,
    ):
        assert pool.call("eth_chainId") == "0x7a69"
        assert len(stalling.requests) == 1  # it was asked first, and timed out
        # The next requests start at the endpoint that last answered: no second stall.
        for _ in range(3):
            pool.call("eth_chainId")
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


def test_unavailable_lists_every_endpoint_redacted_after_all_rounds(caplog, clock):
    secret = "SUPERSECRETKEY123"
    urls = [dead_url(f"/v2/{secret}"), f"http://user:{secret}@127.0.0.1:{free_port()}/?key=1"]
    caplog.set_level(logging.DEBUG, logger="trace_chain")
    with (
        RpcPool("p", urls, timeout=1, max_retries=2, backoff_base=0.05, backoff_max=1) as pool,
        pytest.raises(RpcUnavailable) as caught,
    ):
        pool.call("eth_chainId")
    error = caught.value
    assert error.rounds == 3
    assert set(error.errors) == {redact_url(u) for u in urls}
    assert all("ConnectionError" in e for e in error.errors.values())
    # Two backoff sleeps between three rounds, each with "equal jitter" under its ceiling:
    # [0.025, 0.05] after round 1, [0.05, 0.1] after round 2.
    assert len(clock.sleeps) == 2
    assert 0.025 <= clock.sleeps[0] <= 0.05 and 0.05 <= clock.sleeps[1] <= 0.1
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


def test_token_bucket_limits_the_rate(clock):
    bucket = TokenBucket(rate=20, capacity=1)
    waits = [bucket.acquire() for _ in range(11)]
    # One burst token, then one token per 1/20 s: 11 acquisitions take exactly 0.5 s.
    assert waits[0] == 0
    assert clock.now - 1000.0 == pytest.approx(0.5)
    assert all(w == pytest.approx(0.05) for w in waits[1:])


def test_token_bucket_queues_concurrent_callers_one_slot_each(clock):
    bucket = TokenBucket(rate=40, capacity=1)
    clock.sleep = lambda seconds: None  # frozen: every caller reserves before anyone sleeps
    barrier = threading.Barrier(4)
    waits: list[float] = []

    def worker():
        barrier.wait(timeout=10)
        waits.append(bucket.acquire())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Reserved under the lock: each caller gets its own slot, none spins or shares one.
    assert sorted(waits) == pytest.approx([0, 0.025, 0.05, 0.075])


def test_pool_rate_limit_applies_per_endpoint(anvil, clock):
    with RpcPool("p", [anvil.url], rps_per_endpoint=10, timeout=2, max_retries=0) as pool:
        for _ in range(16):
            pool.call("eth_chainId")
    # A burst of one second's worth (10), then one request per 0.1 s for the other 6.
    assert sum(clock.sleeps) == pytest.approx(0.6)
    assert len(clock.sleeps) == 6


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
