"""Capability tokens: a short-lived JWT per task attempt, the only credential untrusted
runtimes hold. It names the attempt and its lease, so it is useless once the attempt ends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

import jwt
from django.conf import settings
from django.utils import timezone
from pydantic import Field, model_validator

from trace_operators.validation import BIGINT_MAX, INT_MAX, Problems, StrictModel, validate
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


Id = Annotated[int, Field(ge=1, le=BIGINT_MAX)]


class Grant(StrictModel):
    """A dataset version the attempt may read: one of its pinned inputs."""

    dataset_id: Id
    dataset_version_id: Id | None = None


class CapabilityClaims(StrictModel):
    """The claims a capability token must carry, typed: a token signed with our key but with
    claims we did not write (a bug, a leaked key used carelessly) is refused, never half-used."""

    # Registered JWT claims PyJWT has already checked; others (nbf, jti) are not ours to get.
    aud: Literal["trace.task"]
    sub: str
    iat: int
    exp: int
    org_id: Id
    task_id: Id
    attempt: Annotated[int, Field(ge=1, le=INT_MAX)]
    lease_token: Annotated[str, Field(min_length=36, max_length=36)]
    datasets: list[Grant] = []
    prefixes: list[Annotated[str, Field(max_length=2000)]] = []

    @model_validator(mode="after")
    def _consistent(self) -> CapabilityClaims:
        if self.sub != f"task:{self.task_id}":
            raise ValueError("sub does not name the token's task_id")
        uuid.UUID(self.lease_token)  # ValueError: not a UUID
        return self


def capability_token_verify(token: str) -> Capability:
    """The attempt a capability token names; Unauthenticated (401) for anything else: a bad
    signature, an expired token, or claims that are missing, mistyped or inconsistent."""
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
    try:
        checked = validate(CapabilityClaims, claims)
    except Problems as exc:
        raise Unauthenticated(f"invalid capability token claims: {'; '.join(exc.errors)}") from None
    lease = Lease(task_id=checked.task_id, attempt=checked.attempt, lease_token=checked.lease_token)
    return Capability(lease=lease, org_id=checked.org_id, claims=claims)
