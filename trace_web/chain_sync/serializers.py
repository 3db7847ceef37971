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
    dataset = serializers.ChoiceField(choices=["blocks", "transactions", "logs", "traces"])
    cursor = serializers.IntegerField(help_text="Next block to plan; all below are scheduled")
    target = serializers.IntegerField(
        allow_null=True,
        help_text="to_block (fixed_target) or the last observed head (follow_head; null "
        "before the first observation)",
    )
    plan_target = serializers.IntegerField(
        allow_null=True,
        help_text="End-exclusive block the planner plans up to: to_block, or (follow_head) "
        "head - tail_lag + 1; null before the first head observation",
    )
    inflight = serializers.IntegerField(help_text="Ranges scheduled and not yet finished")
    done_ranges = serializers.IntegerField()
    done_blocks = serializers.IntegerField()
    total_blocks = serializers.IntegerField(
        allow_null=True, help_text="to_block - from_block; null in follow_head mode"
    )
    remaining_blocks = serializers.IntegerField(
        allow_null=True, help_text="Blocks below plan_target not done yet; null without a target"
    )
    errors = serializers.IntegerField(help_text="Ranges that failed")
    blocks_per_second = serializers.FloatField(
        help_text="Measured: blocks of the ranges completed in the last 10 minutes over the "
        "time since the first of them was scheduled (to now while ranges are in flight); 0 "
        "when none completed"
    )
    eta_seconds = serializers.FloatField(
        allow_null=True,
        help_text="remaining_blocks / blocks_per_second; 0 when nothing remains; null without "
        "a target or a measured rate",
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


class ChainSyncSummaryOut(serializers.Serializer):
    """One chain_sync with its streams' progress added up (details: /v1/chain-syncs/{name})."""

    name = serializers.CharField()
    chain_id = serializers.IntegerField()
    mode = serializers.ChoiceField(choices=["fixed_target", "follow_head"])
    enabled = serializers.BooleanField()
    from_block = serializers.IntegerField()
    to_block = serializers.IntegerField(
        allow_null=True, help_text="End-exclusive; null in follow_head mode"
    )
    head_block = serializers.IntegerField(
        allow_null=True, help_text="Head as last observed through the RPC pool"
    )
    plan_target = serializers.IntegerField(
        allow_null=True, help_text="End-exclusive block the planner plans up to"
    )
    streams = serializers.IntegerField(help_text="Number of streams (datasets)")
    inflight = serializers.IntegerField(help_text="Ranges in flight, all streams")
    done_blocks = serializers.IntegerField(help_text="Blocks done, summed over the streams")
    errors = serializers.IntegerField(help_text="Ranges that failed, all streams")
    eta_seconds = serializers.FloatField(
        allow_null=True, help_text="The slowest stream's ETA; null if any stream has none"
    )
    complete = serializers.BooleanField(help_text="Every stream reached to_block")
    updated_at = serializers.DateTimeField()
