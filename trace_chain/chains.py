"""Per-chain settings keyed by `chain_id`: how deep a block must be to count as final and how
often blocks come. Built-in defaults for known chains, overridable from the environment.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

# Unknown chains get Ethereum's finality depth: re-reading a few extra blocks costs little,
# treating a block as final too early (compacting it to cold storage) costs a rebuild.
CONSERVATIVE_FINALITY_DEPTH_BLOCKS = 64
# Only paces polling; a short hint polls a slow chain a little more often, which is harmless.
DEFAULT_BLOCK_TIME_HINT_SECONDS = 2.0


@dataclass(frozen=True)
class ChainSettings:
    chain_id: int
    name: str
    finality_depth_blocks: int  # blocks below head - this depth are treated as final
    block_time_hint_seconds: float  # expected seconds between blocks (a pacing hint)


# Why these numbers:
# - Ethereum: finality comes two epochs (64 slots) behind the head under normal conditions.
# - Monad testnet: MonadBFT finalizes a block two rounds after it is proposed (~0.8 s at 400 ms
#   blocks); 3 blocks keeps one block of margin over that without adding visible lag.
# - anvil: reorgs only happen when a test asks for one (`anvil_reorg`); 5 blocks keeps the
#   compaction path exercised in tests while leaving room for shallow reorg drills.
BUILTIN_CHAINS: dict[int, ChainSettings] = {
    1: ChainSettings(1, "ethereum", 64, 12.0),
    11155111: ChainSettings(11155111, "sepolia", 64, 12.0),
    10143: ChainSettings(10143, "monad-testnet", 3, 0.4),
    31337: ChainSettings(31337, "anvil", 5, 1.0),
}


def chain_settings(chain_id: int, environ: Mapping[str, str] | None = None) -> ChainSettings:
    """Settings for `chain_id`: the built-in entry (or conservative defaults for an unknown
    chain) with `TRACE_CHAIN_<ID>_FINALITY_DEPTH` and `TRACE_CHAIN_<ID>_BLOCK_TIME` applied."""
    if chain_id < 0:
        raise ValueError(f"chain_id must be non-negative, got {chain_id}")
    env = os.environ if environ is None else environ
    base = BUILTIN_CHAINS.get(chain_id) or ChainSettings(
        chain_id,
        f"chain-{chain_id}",
        CONSERVATIVE_FINALITY_DEPTH_BLOCKS,
        DEFAULT_BLOCK_TIME_HINT_SECONDS,
    )
    depth_var = f"TRACE_CHAIN_{chain_id}_FINALITY_DEPTH"
    time_var = f"TRACE_CHAIN_{chain_id}_BLOCK_TIME"
    depth = base.finality_depth_blocks
    if raw := env.get(depth_var, "").strip():
        try:
            depth = int(raw)
        except ValueError:
            raise ValueError(f"{depth_var} must be an integer, got {raw!r}") from None
        if depth < 0:
            raise ValueError(f"{depth_var} must be >= 0, got {raw!r}")
    block_time = base.block_time_hint_seconds
    if raw := env.get(time_var, "").strip():
        try:
            block_time = float(raw)
        except ValueError:
            raise ValueError(f"{time_var} must be a number of seconds, got {raw!r}") from None
        if not (block_time > 0 and math.isfinite(block_time)):
            raise ValueError(f"{time_var} must be a positive number of seconds, got {raw!r}")
    return ChainSettings(chain_id, base.name, depth, block_time)
