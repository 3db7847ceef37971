"""`manage.py lite_bootstrap`: the Lite stack's default org and admin user (idempotent).

The password comes from the environment (TRACE_LITE_ADMIN_PASSWORD, written to lite.env by
`trace lite up`), never from argv, so it does not show up in `ps`.
"""

from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from trace_web.orgs.models import Role
from trace_web.orgs.services import membership_set, org_create


class Command(BaseCommand):
    help = "Create the Lite default org and its admin user if they do not exist."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--org", default="demo", help="org slug (default: demo)")
        parser.add_argument("--username", default="admin", help="admin username (default: admin)")

    def handle(self, *args, org: str, username: str, **options) -> None:
        password = os.environ.get("TRACE_LITE_ADMIN_PASSWORD")
        if not password:
            raise CommandError("TRACE_LITE_ADMIN_PASSWORD is not set")
        created = _bootstrap(org_slug=org, username=username, password=password)
        if created:
            self.stdout.write(
                f"Admin login (shown once): {username} / {password}\n"
                "  (saved as TRACE_LITE_ADMIN_PASSWORD in lite.env)"
            )
        else:
            self.stdout.write(f"Admin user {username!r} already exists in org {org!r}.")


@transaction.atomic
def _bootstrap(*, org_slug: str, username: str, password: str) -> bool:
    """Ensure the org, a superuser (for Django admin) and its admin membership; True if the
    user was created now. An existing user's password is left alone: it may have been changed."""
    org = org_create(slug=org_slug)
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    created = user is None
    if created:
        user = user_model.objects.create_superuser(username=username, password=password)
    membership_set(org=org, user=user, role=Role.ADMIN)
    return created
