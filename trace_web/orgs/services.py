"""Writes for orgs and memberships."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from trace_web.orgs.models import Org, OrgMembership, Role


@transaction.atomic
def org_create(*, slug: str, name: str | None = None) -> Org:
    org, _ = Org.objects.get_or_create(slug=slug, defaults={"name": name or slug})
    return org


@transaction.atomic
def membership_set(*, org: Org, user: AbstractBaseUser, role: str = Role.MEMBER) -> OrgMembership:
    membership, _ = OrgMembership.objects.update_or_create(
        org=org, user=user, defaults={"role": Role(role)}
    )
    return membership


@transaction.atomic
def user_create(*, username: str, org: Org, role: str = Role.MEMBER, password: str | None = None):
    user_model = get_user_model()
    user = user_model.objects.create_user(username=username, password=password)
    membership_set(org=org, user=user, role=role)
    return user
