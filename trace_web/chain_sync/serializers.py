"""Output serializers of the chain observability API: the follower's status of a chain and a
chain_sync's progress per stream. They document the dicts the views build (the views do not
serialize through them)."""

from __future__ import annotations

from rest_framework import serializers


class ChainStatusOut(serializers.Serializer):
    chain_id = serializers.IntegerField()
    head_block = serializers.IntegerField(
        allow_null=True, help_text="Chain head the follower last saw"
    )
    tip_block = serializers.IntegerField(
        allow_null=True, help_text="Highest block in the hot tables"
    )
    lag_blocks = serializers.IntegerField(
        allow_null=True, help_text="head_block - tip_block; null until both are known"
    )
    reorg_count = serializers.IntegerField()
    last_reorg_depth = serializers.IntegerField(allow_null=True)
    last_reorg_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()


class ChainSyncStreamStatusOut(serializers.Serializer):
    dataset = serializers.ChoiceField(choices=["blocks", "transactions", "logs"])
    cursor = serializers.IntegerField(help_text="Next block to plan; all below are scheduled")
    target = serializers.IntegerField(
        allow_null=True,
        help_text="to_block (fixed_target) or the last observed head (follow_head; null "
        "before the first observation)",
    )
    inflight = serializers.IntegerField(help_text="Ranges scheduled and not yet finished")
    done_ranges = serializers.IntegerField()
    done_blocks = serializers.IntegerField()
    total_blocks = serializers.IntegerField(
        allow_null=True, help_text="to_block - from_block; null in follow_head mode"
    )
    errors = serializers.IntegerField(help_text="Ranges that failed")
    blocks_per_second = serializers.FloatField(help_text="Over the last two minutes")
    eta_seconds = serializers.FloatField(
        allow_null=True, help_text="Null without a target, a rate, or blocks remaining"
    )
    complete = serializers.BooleanField()


class ChainSyncStatusOut(serializers.Serializer):
    name = serializers.CharField()
    chain_id = serializers.IntegerField()
    mode = serializers.ChoiceField(choices=["fixed_target", "follow_head"])
    enabled = serializers.BooleanField()
    head_block = serializers.IntegerField(
        allow_null=True, help_text="Head as last observed through the RPC pool"
    )
    streams = ChainSyncStreamStatusOut(many=True)
