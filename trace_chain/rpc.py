"""JSON-RPC access to chain nodes: named pools of endpoints with failover, retries, backoff,
a per-endpoint rate limit and real batch requests. Plain Python (requests), no Django.

Endpoint URLs often embed API keys, so a URL is only ever logged or put in an error message in
its redacted form (`scheme://host:port/…`), never whole.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

# Failures that say "this endpoint, right now" rather than "this request": try the next one.
RETRYABLE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,  # refused, reset, DNS, TLS handshake (ConnectTimeout is one too)
    requests.Timeout,  # connect or read timeout
    requests.exceptions.ChunkedEncodingError,  # connection dropped mid-body
    requests.exceptions.ContentDecodingError,
)
RETRYABLE_HTTP_STATUSES: frozenset[int] = frozenset({408, 429, *range(500, 600)})
# JSON-RPC error codes that mean the node is overloaded, rate-limiting or temporarily unable.
RETRYABLE_RPC_CODES: frozenset[int] = frozenset(
    {
        -32603,  # internal error
        -32005,  # limit exceeded (EIP-1474; Infura and others use it for rate limits)
        -32002,  # resource unavailable (EIP-1474)
        -32007,  # request limit reached (QuickNode)
        429,  # providers that pass the HTTP status through as the JSON-RPC code
    }
)
# -32000 is the catch-all "server error"; it is retryable only when the message says the node
# is behind or busy (a lagging node answers "header not found" for a block its peers have).
RETRYABLE_RPC_MESSAGE_FRAGMENTS: tuple[str, ...] = (
    "header not found",
    "unknown block",
    "timeout",
    "timed out",
    "rate limit",
    "too many requests",
    "busy",
    "temporarily unavailable",
    "try again",
)
# A request or response the endpoint refuses for its size: the caller should split it, not retry.
TOO_LARGE_HTTP_STATUSES: frozenset[int] = frozenset({413})
TOO_LARGE_RPC_MESSAGE_FRAGMENTS: tuple[str, ...] = (
    "too large",
    "too big",
    "batch limit",
    "batch size",
    "response size",
    "exceeds the limit",
    "too many requests in batch",
)

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF_BASE_SECONDS = 0.25
DEFAULT_BACKOFF_MAX_SECONDS = 8.0
ENV_POOL_PREFIX = "TRACE_RPC_POOL_"


# --- errors -----------------------------------------------------------------------------------


class RpcError(Exception):
    """A JSON-RPC error answer (or a non-retryable HTTP answer) for one request."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        data: Any = None,
        method: str | None = None,
        endpoint: str | None = None,
        http_status: int | None = None,
    ) -> None:
        self.code = code
        self.rpc_message = message
        self.data = data
        self.method = method
        self.endpoint = endpoint  # redacted form
        self.http_status = http_status
        where = f" from {endpoint}" if endpoint else ""
        code_part = f" {code}" if code is not None else ""
        http_part = f" (HTTP {http_status})" if http_status is not None else ""
        super().__init__(f"{method or 'rpc'}{where}: error{code_part}{http_part}: {message}")

    @property
    def is_method_not_found(self) -> bool:
        text = self.rpc_message.lower()
        return self.code == -32601 or "method not found" in text or "not supported" in text


class RpcTooLarge(RpcError):
    """The endpoint refused a request or response for its size; split it and try again."""


class RpcUnavailable(Exception):
    """Every endpoint of a pool failed for every retry round; `errors` holds each one's last."""

    def __init__(self, pool: str, method: str, errors: Mapping[str, str], rounds: int) -> None:
        self.pool = pool
        self.method = method
        self.errors = dict(errors)  # redacted endpoint -> last error
        self.rounds = rounds
        detail = "; ".join(f"{endpoint}: {error}" for endpoint, error in self.errors.items())
        super().__init__(
            f"RPC pool {pool!r}: {method} failed on every endpoint after {rounds} round(s): "
            f"{detail}"
        )


class RpcPoolNotConfigured(LookupError):
    """A named pool has no endpoints in the environment."""


class _EndpointFailure(Exception):
    """Internal: this endpoint failed in a way the next endpoint might not."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


# --- URL redaction ----------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """`https://key@host:8545/v2/SECRET?k=x` -> `https://host:8545/…`: enough to tell endpoints
    apart in logs, nothing that could be a credential (user info, path, query, fragment)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "<unparseable url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    hidden = (parts.path not in ("", "/")) or parts.query or parts.fragment
    return f"{parts.scheme}://{netloc}/{'…' if hidden else ''}"


def _scrub(text: str, url: str) -> str:
    """Remove every piece of `url` that could carry a secret from an exception message
    (requests quotes the full URL, or its path, in connection errors)."""
    parts = urlsplit(url)
    secrets = [url]
    path_and_query = parts.path + (f"?{parts.query}" if parts.query else "")
    if path_and_query not in ("", "/"):
        secrets.append(path_and_query)
    if parts.path not in ("", "/"):
        secrets.append(parts.path)
    if parts.query:
        secrets.append(parts.query)
    if parts.username:
        secrets.append(parts.username)
    if parts.password:
        secrets.append(parts.password)
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "…")
    return text


def _describe(exc: BaseException, url: str) -> str:
    text = _scrub(str(exc), url)
    # requests nests the urllib3 reason deep in the message; keep it short and readable.
    text = re.sub(r"\s+", " ", text)
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}"


# --- rate limiting ----------------------------------------------------------------------------


class TokenBucket:
    """Thread-safe token bucket: `rate` tokens per second, bursts up to `capacity`.

    `acquire` reserves its tokens under the lock (the balance may go negative) and sleeps outside
    it, so concurrent callers queue fairly instead of spinning."""

    def __init__(self, rate: float, capacity: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = float(rate)
        self.capacity = float(capacity if capacity is not None else max(1.0, rate))
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, tokens: float = 1.0) -> float:
        """Take `tokens`, sleeping until they are available; returns the seconds slept."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= tokens
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)
        return wait


# --- endpoints and pools ----------------------------------------------------------------------


class _Endpoint:
    def __init__(self, url: str, rps: float | None, pool_size: int) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) JSON-RPC URL: {redact_url(url)}")
        self.url = url
        self.redacted = redact_url(url)
        self.limiter = TokenBucket(rps) if rps else None
        self.session = requests.Session()
        # Failover and retries are ours; urllib3 must not retry behind our back.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(
            {"Content-Type": "application/json", "Accept": "application/json"}
        )
        self.last_error: str | None = None

    def close(self) -> None:
        self.session.close()


@dataclass(frozen=True)
class RpcPoolConfig:
    """What `rpc_pool_from_env` read; kept so callers can show it (URLs redacted)."""

    name: str
    endpoints: tuple[str, ...]
    rps_per_endpoint: float | None
    timeout: float
    max_retries: int


class RpcPool:
    """A named set of JSON-RPC endpoints used as one.

    Each request starts at the endpoint that last answered and moves round-robin to the next
    one on a retryable failure (connection error, timeout, HTTP 429/5xx, retryable JSON-RPC
    error). One pass over all endpoints is a round; between rounds it sleeps with exponential
    backoff and jitter. After `max_retries` further rounds it raises `RpcUnavailable`.
    Non-retryable JSON-RPC errors raise `RpcError` at once. Safe to share between threads.
    """

    def __init__(
        self,
        name: str,
        endpoints: Sequence[str],
        *,
        rps_per_endpoint: float | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_base: float = DEFAULT_BACKOFF_BASE_SECONDS,
        backoff_max: float = DEFAULT_BACKOFF_MAX_SECONDS,
        connections_per_endpoint: int = 8,
    ) -> None:
        if not endpoints:
            raise ValueError(f"RPC pool {name!r} needs at least one endpoint")
        if timeout <= 0:
            raise ValueError(f"RPC pool {name!r}: timeout must be positive")
        if max_retries < 0:
            raise ValueError(f"RPC pool {name!r}: max_retries must be >= 0")
        self.name = name
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._endpoints = [
            _Endpoint(u, rps_per_endpoint, connections_per_endpoint) for u in endpoints
        ]
        # Two keys for one provider redact alike; number them so errors stay per endpoint.
        redacted = [e.redacted for e in self._endpoints]
        for index, endpoint in enumerate(self._endpoints):
            if redacted.count(endpoint.redacted) > 1:
                endpoint.redacted = f"{endpoint.redacted}#{index + 1}"
        self._preferred = 0  # index of the endpoint that last answered
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed = False

    # -- public API --

    @property
    def endpoints(self) -> list[str]:
        """The endpoints in redacted form."""
        return [e.redacted for e in self._endpoints]

    def call(self, method: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
        """One JSON-RPC request; returns its `result`."""
        request_id = next(self._ids)
        payload = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": _params(params)}

        def parse(body: Any, endpoint: _Endpoint) -> Any:
            if not isinstance(body, dict):
                raise _EndpointFailure(f"expected a JSON object, got {type(body).__name__}")
            if "error" in body and body["error"] is not None:
                raise _rpc_error(body["error"], method, endpoint)
            if "result" not in body:
                raise _EndpointFailure("answer has neither result nor error")
            return body["result"]

        return self._run(method, payload, parse)

    def batch(
        self, calls: Sequence[tuple[str, Sequence[Any] | Mapping[str, Any] | None]]
    ) -> list[Any]:
        """One JSON-RPC batch request; returns the results in the order of `calls`.

        Answers are matched by id (servers may reorder them). A per-item error raises
        `RpcError` for that item, unless it is retryable, in which case the whole batch is
        retried elsewhere like any other endpoint failure."""
        if not calls:
            return []
        first_id = next(self._ids)
        ids = [first_id, *(next(self._ids) for _ in range(len(calls) - 1))]
        payload = [
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": _params(params)}
            for request_id, (method, params) in zip(ids, calls, strict=True)
        ]
        methods = sorted({method for method, _ in calls})
        label = f"batch[{len(calls)}]({','.join(methods)})"

        def parse(body: Any, endpoint: _Endpoint) -> list[Any]:
            if isinstance(body, dict):
                # The whole batch was refused with one error object (size limits, bad request).
                error = body.get("error")
                if error is None:
                    raise _EndpointFailure("expected a JSON array for a batch request")
                raise _rpc_error(error, label, endpoint)
            if not isinstance(body, list):
                raise _EndpointFailure(f"expected a JSON array, got {type(body).__name__}")
            by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
            missing = [i for i in ids if i not in by_id]
            if missing:
                raise _EndpointFailure(f"batch answer lacks {len(missing)} of {len(ids)} ids")
            results: list[Any] = []
            fatal: RpcError | None = None
            for request_id, (method, _) in zip(ids, calls, strict=True):
                item = by_id[request_id]
                if item.get("error") is not None:
                    error = _rpc_error(item["error"], method, endpoint)
                    if isinstance(error, _EndpointFailure):
                        raise error  # retryable item error: retry the whole batch
                    fatal = fatal or error
                    results.append(None)
                elif "result" not in item:
                    raise _EndpointFailure(f"batch item {request_id} has neither result nor error")
                else:
                    results.append(item["result"])
            if fatal is not None:
                raise fatal
            return results

        return self._run(label, payload, parse)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        for endpoint in self._endpoints:
            endpoint.close()

    def __enter__(self) -> RpcPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RpcPool({self.name!r}, {self.endpoints})"

    # -- internals --

    def _run(self, label: str, payload: Any, parse: Any) -> Any:
        if self._closed:
            raise RuntimeError(f"RPC pool {self.name!r} is closed")
        body = json.dumps(payload, separators=(",", ":"))
        count = len(self._endpoints)
        errors: dict[str, str] = {}
        rounds = self.max_retries + 1
        for round_index in range(rounds):
            if round_index:
                self._sleep_backoff(round_index)
            start = self._preferred
            for offset in range(count):
                index = (start + offset) % count
                endpoint = self._endpoints[index]
                try:
                    answer = self._post(endpoint, body)
                    result = parse(answer, endpoint)
                except _EndpointFailure as failure:
                    endpoint.last_error = failure.description
                    errors[endpoint.redacted] = failure.description
                    log.warning(
                        "rpc %s: %s failed on %s (round %d/%d): %s",
                        self.name,
                        label,
                        endpoint.redacted,
                        round_index + 1,
                        rounds,
                        failure.description,
                    )
                    continue
                if index != self._preferred:
                    with self._lock:
                        self._preferred = index
                    log.info("rpc %s: now preferring %s", self.name, endpoint.redacted)
                endpoint.last_error = None
                return result
        raise RpcUnavailable(self.name, label, errors, rounds)

    def _post(self, endpoint: _Endpoint, body: str) -> Any:
        if endpoint.limiter is not None:
            endpoint.limiter.acquire()
        try:
            response = endpoint.session.post(endpoint.url, data=body, timeout=self.timeout)
        except RETRYABLE_EXCEPTIONS as exc:
            raise _EndpointFailure(_describe(exc, endpoint.url)) from None
        except requests.RequestException as exc:
            # Anything else from requests (invalid URL, too many redirects) will not get better
            # by retrying; say which endpoint without quoting its URL.
            raise RpcError(_describe(exc, endpoint.url), endpoint=endpoint.redacted) from None
        status = response.status_code
        if status in TOO_LARGE_HTTP_STATUSES:
            raise RpcTooLarge("request too large", endpoint=endpoint.redacted, http_status=status)
        if status in RETRYABLE_HTTP_STATUSES:
            raise _EndpointFailure(f"HTTP {status}")
        if status >= 400:
            # A JSON-RPC error may come with a 4xx (some servers do that); use it if present.
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
                return answer
            raise RpcError(f"HTTP {status}", endpoint=endpoint.redacted, http_status=status)
        try:
            return response.json()
        except ValueError:
            raise _EndpointFailure(f"HTTP {status} with a body that is not JSON") from None

    def _sleep_backoff(self, round_index: int) -> None:
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (round_index - 1)))
        # "Equal jitter": at least half the ceiling so retries do spread out, never more.
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto
        time.sleep(delay)


def _params(params: Sequence[Any] | Mapping[str, Any] | None) -> Any:
    if params is None:
        return []
    if isinstance(params, Mapping):
        return dict(params)
    return list(params)


def _rpc_error(error: Any, method: str, endpoint: _Endpoint) -> RpcError | _EndpointFailure:
    """Classify one JSON-RPC error object: retryable ones become `_EndpointFailure`."""
    if not isinstance(error, dict):
        return _EndpointFailure(f"malformed error object: {str(error)[:200]}")
    code = error.get("code")
    message = str(error.get("message", ""))
    lowered = message.lower()
    if any(fragment in lowered for fragment in TOO_LARGE_RPC_MESSAGE_FRAGMENTS):
        return RpcTooLarge(
            message, code=code, data=error.get("data"), method=method, endpoint=endpoint.redacted
        )
    retryable = code in RETRYABLE_RPC_CODES or (
        code == -32000 and any(f in lowered for f in RETRYABLE_RPC_MESSAGE_FRAGMENTS)
    )
    if retryable:
        return _EndpointFailure(f"JSON-RPC error {code}: {message[:200]}")
    return RpcError(
        message, code=code, data=error.get("data"), method=method, endpoint=endpoint.redacted
    )


# --- named pools from the environment ---------------------------------------------------------


def pool_env_name(name: str) -> str:
    """`mainnet-archive` -> `TRACE_RPC_POOL_MAINNET_ARCHIVE`."""
    return ENV_POOL_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def rpc_pool_config_from_env(name: str, environ: Mapping[str, str] | None = None) -> RpcPoolConfig:
    env = os.environ if environ is None else environ
    var = pool_env_name(name)
    raw = env.get(var, "").strip()
    if not raw:
        raise RpcPoolNotConfigured(
            f"RPC pool {name!r} is not configured: set {var} to a comma-separated list of "
            "JSON-RPC URLs (optionally with "
            f"{var}_RPS, {var}_TIMEOUT, {var}_RETRIES)"
        )
    urls = tuple(u.strip() for u in raw.split(",") if u.strip())
    return RpcPoolConfig(
        name=name,
        endpoints=urls,
        rps_per_endpoint=_env_number(env, f"{var}_RPS", float, None),
        timeout=_env_number(env, f"{var}_TIMEOUT", float, DEFAULT_TIMEOUT_SECONDS, positive=True),
        max_retries=_env_number(env, f"{var}_RETRIES", int, DEFAULT_MAX_RETRIES),
    )


def rpc_pool_from_env(name: str, environ: Mapping[str, str] | None = None) -> RpcPool:
    """Build the named pool from `TRACE_RPC_POOL_<NAME>` (comma-separated URLs) and the optional
    `_RPS` (per endpoint; unset or 0 = unlimited), `_TIMEOUT` (seconds) and `_RETRIES` (extra
    rounds over all endpoints). Pools live in the environment, never in DAG YAML, because the
    URLs carry provider keys."""
    config = rpc_pool_config_from_env(name, environ)
    return RpcPool(
        config.name,
        list(config.endpoints),
        rps_per_endpoint=config.rps_per_endpoint or None,
        timeout=config.timeout,
        max_retries=config.max_retries,
    )


def _env_number(
    env: Mapping[str, str], var: str, kind: type, default: Any, *, positive: bool = False
) -> Any:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{var} must be a {kind.__name__}, got {raw!r}") from None
    if not (value > 0 if positive else value >= 0):  # also rejects NaN
        raise ValueError(f"{var} must be {'> 0' if positive else '>= 0'}, got {raw!r}")
    return value
