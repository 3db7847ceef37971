"""Chain settings: built-in defaults, environment overrides, conservative unknown chains."""

from __future__ import annotations

import pytest

from trace_chain.chains import CONSERVATIVE_FINALITY_DEPTH_BLOCKS, ChainSettings, chain_settings


def test_builtin_chains():
    assert chain_settings(1, {}) == ChainSettings(1, "ethereum", 64, 12.0)
    assert chain_settings(31337, {}) == ChainSettings(31337, "anvil", 5, 1.0)
    monad = chain_settings(10143, {})
    assert monad.name == "monad-testnet"
    assert 0 < monad.finality_depth_blocks <= 3
    assert monad.block_time_hint_seconds < 1


def test_unknown_chain_gets_conservative_defaults():
    settings = chain_settings(424242, {})
    assert settings.finality_depth_blocks == CONSERVATIVE_FINALITY_DEPTH_BLOCKS == 64
    assert settings.name == "chain-424242"


def test_environment_overrides():
    env = {"TRACE_CHAIN_31337_FINALITY_DEPTH": "2", "TRACE_CHAIN_31337_BLOCK_TIME": "0.2"}
    assert chain_settings(31337, env) == ChainSettings(31337, "anvil", 2, 0.2)
    assert chain_settings(1, env).finality_depth_blocks == 64  # other chains untouched
    assert (
        chain_settings(424242, {"TRACE_CHAIN_424242_FINALITY_DEPTH": "0"}).finality_depth_blocks
        == 0
    )


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TRACE_CHAIN_1_FINALITY_DEPTH", "-1"),
        ("TRACE_CHAIN_1_FINALITY_DEPTH", "ten"),
        ("TRACE_CHAIN_1_BLOCK_TIME", "0"),
        ("TRACE_CHAIN_1_BLOCK_TIME", "nan"),
    ],
)
def test_bad_overrides_name_the_variable(var, value):
    with pytest.raises(ValueError, match=var):
        chain_settings(1, {var: value})


def test_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("TRACE_CHAIN_1_FINALITY_DEPTH", "70")
    assert chain_settings(1).finality_depth_blocks == 70
