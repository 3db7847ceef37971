"""Per-channel rate limits: a token bucket in Redis per channel (capacity: the channel's
`rate_limit_per_minute`, refilled continuously at that many a minute), taken by one Lua script
so concurrent delivery workers can never overspend it. Over the limit a send waits; it is
never dropped (trace_web.alerts.delivery puts it back with the wait as its due time).

The bucket lives in TRACE_DELIVERY_REDIS_URL (the broker's Redis when unset) under keys of its
own, `<TRACE_BROKER_KEY_PREFIX>ratelimit:channel:<id>`: kombu's keys never start that way, and
a run's prefix keeps test runs sharing a Redis db apart."""

from __future__ import annotations

import functools

from django.conf import settings

# KEYS[1]: the bucket; ARGV[1]: capacity (and refill per minute). Returns "0" when a token was
# taken, else the seconds until one will be there (as a string: Lua numbers would be truncated
# to integers on the way back). The clock is Redis's own, so workers' clocks cannot skew it.
# An idle bucket is full again after a minute, so its key expires then.
_TAKE = """
if redis.replicate_commands then redis.replicate_commands() end
local capacity = tonumber(ARGV[1])
local rate = capacity / 60.0
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], 61)
return tostring(wait)
"""


def bucket_take(*, channel_id: int, per_minute: int) -> float:
    """Take one send from the channel's bucket: 0.0 if it may send now, else the seconds to
    wait (nothing is taken then). A limit of 0 means the channel is not limited."""
    if per_minute <= 0:
        return 0.0
    return float(_script()(keys=[bucket_key(channel_id)], args=[per_minute]))


def bucket_reset(*, channel_id: int) -> None:
    """Fill the channel's bucket (forget what was spent): after its limit was raised, or in a
    test that advances time instead of waiting for the refill."""
    _client().delete(bucket_key(channel_id))


def bucket_key(channel_id: int) -> str:
    return f"{settings.TRACE_BROKER_KEY_PREFIX}ratelimit:channel:{channel_id}"


@functools.cache
def _client_for(url: str):
    import redis

    timeout = settings.TRACE_BROKER_PUBLISH_TIMEOUT_SECONDS
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


@functools.cache
def _script_for(url: str):
    return _client_for(url).register_script(_TAKE)  # EVALSHA, loading the script when missing


def _url() -> str:
    return settings.TRACE_DELIVERY_REDIS_URL or settings.TRACE_BROKER_URL


def _client():
    return _client_for(_url())


def _script():
    return _script_for(_url())
