"""The sandbox's tests prove the portable layers (what Fargate has: no user namespaces, so no
bubblewrap) unless a test asks for bubblewrap's extra layer (test_bwrap.py)."""

import pytest

from trace_tasks import sandbox


@pytest.fixture(autouse=True)
def _portable_layers_only(monkeypatch, request):
    monkeypatch.setenv("TRACE_UDF_BWRAP", "1" if request.node.get_closest_marker("bwrap") else "0")
    sandbox._bwrap.cache_clear()
    sandbox.sandbox_probe.cache_clear()
    yield
    sandbox._bwrap.cache_clear()
    sandbox.sandbox_probe.cache_clear()
