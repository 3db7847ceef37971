"""Capability tokens: a short-lived JWT per task attempt, the only credential untrusted
runtimes hold. It names the attempt and its lease, so it is useless once the attempt ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from django.conf import settings
from django.utils import timezone

from trace_web.errors import Unauthenticated

AUDIENCE = "trace.task"
ALGORITHM = "HS256"
UNBOUNDED_TASK_TOKEN_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Lease:
    """The fencing triple every task mutation must name."""

    task_id: int
    attempt: int
    lease_token: str


@dataclass(frozen=True)
class Capability:
    lease: Lease
    org_id: int
    claims: dict[str, Any]


def capability_token_issue(
    *,
    lease: Lease,
    org_id: int,
    timeout_seconds: float | None,
    grants: list[dict[str, Any]] | None = None,
    prefixes: list[str] | None = None,
) -> str:
    now = timezone.now()
    # A task without a timeout (an always_on source) still needs a bounded token; the token is
    # useless once the attempt ends anyway, because every call is fenced by its lease.
    lifetime = (timeout_seconds or UNBOUNDED_TASK_TOKEN_SECONDS) + (
        settings.TRACE_TASK_TOKEN_GRACE_SECONDS
    )
    claims = {
        "aud": AUDIENCE,
        "sub": f"task:{lease.task_id}",
        "iat": now,
        "exp": now + timedelta(seconds=lifetime),
        "org_id": org_id,
        "task_id": lease.task_id,
        "attempt": lease.attempt,
        "lease_token": lease.lease_token,
        "datasets": grants or [],
        "prefixes": prefixes or [],
    }
    return jwt.encode(claims, settings.TRACE_TASK_TOKEN_SECRET, algorithm=ALGORITHM)


def capability_token_verify(token: str) -> Capability:
    try:
        claims = jwt.decode(
            token,
            settings.TRACE_TASK_TOKEN_SECRET,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "aud", "sub", "task_id", "attempt", "lease_token"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("capability token expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid capability token: {exc}") from exc
    lease = Lease(
        task_id=int(claims["task_id"]),
        attempt=int(claims["attempt"]),
        lease_token=str(claims["lease_token"]),
    )
    return Capability(lease=lease, org_id=int(claims["org_id"]), claims=claims)
