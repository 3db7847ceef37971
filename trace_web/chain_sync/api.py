"""Chain observability API: the follower's view of each chain (head, hot tip, lag, reorgs) and
chain_sync progress per stream."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from trace_web.chain_sync.models import ChainSync
from trace_web.chain_sync.selectors import chain_sync_get, chain_sync_status, chain_sync_summary
from trace_web.chain_sync.serializers import (
    ChainStatusOut,
    ChainSyncStatusOut,
    ChainSyncSummaryOut,
)
from trace_web.errors import NotFound
from trace_web.orgs.scoping import OrgScopedView
from trace_web.orgs.serializers import NOT_A_MEMBER, ORG_HEADER, ErrorOut


class ChainStatusApi(OrgScopedView):
    """Hot tables are shared by every org that follows a chain; this exposes only counters,
    and only to an org that follows the chain (which chains another org follows is its own
    business)."""

    @extend_schema(
        parameters=[ORG_HEADER],
        responses={
            200: ChainStatusOut,
            403: NOT_A_MEMBER,
            404: OpenApiResponse(ErrorOut, "No follower of the caller's org follows this chain"),
            503: OpenApiResponse(ErrorOut, "The data DB is unreachable; retry after Retry-After"),
        },
    )
    def get(self, request: Request, chain_id: int) -> Response:
        from trace_chain.db import data_engine
        from trace_chain.hot_store import hot_status_get

        status = hot_status_get(data_engine(), chain_id=chain_id)
        followed = status is not None and self.org.pk in (status["follower_org_ids"] or [])
        if not followed or status["head_block"] is None:
            raise NotFound(f"no follower of this org follows chain {chain_id} (yet)")
        head, tip = status["head_block"], status["tip_block"]
        return Response(
            {
                "chain_id": chain_id,
                "head_block": head,
                "tip_block": tip,
                "lag_blocks": head - tip if tip is not None else None,
                "reorg_count": status["reorg_count"],
                "last_reorg_depth": status["last_reorg_depth"],
                "last_reorg_at": status["last_reorg_at"],
                "updated_at": status["updated_at"],
            }
        )


class ChainSyncListApi(OrgScopedView):
    @extend_schema(
        parameters=[ORG_HEADER],
        responses={200: ChainSyncSummaryOut(many=True), 403: NOT_A_MEMBER},
    )
    def get(self, request: Request) -> Response:
        syncs = self.scoped(ChainSync).order_by("name")
        return Response([chain_sync_summary(sync=sync) for sync in syncs])


class ChainSyncStatusApi(OrgScopedView):
    @extend_schema(
        parameters=[ORG_HEADER],
        responses={
            200: ChainSyncStatusOut,
            403: NOT_A_MEMBER,
            404: OpenApiResponse(ErrorOut, "No chain_sync of that name in the org"),
        },
    )
    def get(self, request: Request, name: str) -> Response:
        sync = chain_sync_get(org_id=self.org.pk, name=name)
        return Response(
            {
                "name": sync.name,
                "chain_id": sync.chain_id,
                "mode": sync.mode,
                "enabled": sync.enabled,
                "head_block": sync.head_block,
                "streams": chain_sync_status(sync=sync),
            }
        )
