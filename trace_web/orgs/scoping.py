"""Org scoping in one place: every user-facing API view derives from OrgScopedView, which
resolves the caller's org and role before the handler runs and hands out querysets already
filtered to that org. Reaching another org's rows needs `unscoped_queryset`, named to stand
out in review."""

from __future__ import annotations

from django.db.models import Model, QuerySet
from rest_framework.request import Request
from rest_framework.views import APIView

from trace_web.errors import PermissionDenied
from trace_web.orgs.models import Org, OrgMembership, Role
from trace_web.orgs.selectors import membership_for_user, role_at_least

ORG_HEADER = "HTTP_X_TRACE_ORG"


class OrgScopedView(APIView):
    # Minimum role per HTTP method; reads are open to viewers, writes need members.
    required_roles: dict[str, str] = {
        "GET": Role.VIEWER,
        "HEAD": Role.VIEWER,
        "OPTIONS": Role.VIEWER,
        "POST": Role.MEMBER,
        "PUT": Role.MEMBER,
        "PATCH": Role.MEMBER,
        "DELETE": Role.MEMBER,
    }
    membership: OrgMembership

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttling
        self.membership = membership_for_user(
            user=request.user, org_slug=request.META.get(ORG_HEADER)
        )
        needed = self.required_roles.get(request.method or "GET", Role.ADMIN)
        if not role_at_least(self.membership.role, needed):
            raise PermissionDenied(
                f"role '{Role(self.membership.role).value}' may not do this; needs "
                f"'{Role(needed).value}' or higher"
            )

    @property
    def org(self) -> Org:
        return self.membership.org

    def scoped(self, model: type[Model]) -> QuerySet:
        """The model's rows that belong to the caller's org (the only safe default)."""
        return model.objects.filter(org=self.org)

    @staticmethod
    def unscoped_queryset(model: type[Model]) -> QuerySet:
        """Escape hatch: rows of every org. Use only with an explicit check of your own."""
        return model.objects.all()
