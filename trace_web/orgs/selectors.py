"""Reads for orgs: which org a request acts in and with what role."""

from __future__ import annotations

import re

from trace_web.errors import PermissionDenied
from trace_web.orgs.models import ROLE_RANK, Org, OrgMembership, Role

SLUG = re.compile(r"[-a-zA-Z0-9_]{1,63}")  # Org.slug (a SlugField of 63)


def org_by_slug(slug: str) -> Org | None:
    """The org with this slug; None also for a string no slug can be (never a database
    error)."""
    return Org.objects.filter(slug=slug).first() if SLUG.fullmatch(slug) else None


def membership_for_user(*, user, org_slug: str | None = None) -> OrgMembership:
    """The caller's membership: the named org, or the only one they belong to."""
    memberships = OrgMembership.objects.select_related("org").filter(user=user)
    if org_slug:
        if not SLUG.fullmatch(org_slug):  # no org has such a slug; never a database error
            raise PermissionDenied("you are not a member of that org (X-Trace-Org)")
        memberships = memberships.filter(org__slug=org_slug)
    found = list(memberships[:2])
    if not found:
        raise PermissionDenied(
            "you are not a member of " + (f"org {org_slug!r}" if org_slug else "any org")
        )
    if len(found) > 1:
        raise PermissionDenied("you belong to several orgs: name one with the X-Trace-Org header")
    return found[0]


def role_at_least(role: str, minimum: str) -> bool:
    return ROLE_RANK[Role(role)] >= ROLE_RANK[Role(minimum)]
