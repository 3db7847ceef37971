"""bubblewrap's extra layer, where bwrap is installed and works (an optional OS package: the
portable layers hold without it, tests/sandbox/*): the handler runs in new pid, network, ipc
and uts namespaces with the file system read-only, and every other layer still applies
inside."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.sandbox.helpers import run
from trace_tasks import sandbox

pytestmark = pytest.mark.bwrap


def test_bwrap_is_used_when_it_works_and_only_then(monkeypatch):
    assert sandbox.sandbox_probe()["bwrap_used"] is (shutil.which("bwrap") is not None)
    monkeypatch.setenv("TRACE_UDF_BWRAP", "0")
    sandbox._bwrap.cache_clear()
    sandbox.sandbox_probe.cache_clear()
    assert sandbox.sandbox_probe()["bwrap_used"] is False


def test_inside_bwrap_the_handler_is_in_a_pid_namespace_of_its_own(tmp_path):
    source = """
    import os
    def handle(ctx):
        return [{"pid": os.getpid(), "ppid": os.getppid()}]
    """
    (row,) = run(tmp_path, source).rows
    if sandbox.sandbox_probe()["bwrap_used"]:
        # bwrap's reaper is pid 1 and the child pid 2: no worker process has a pid in there
        assert (row["pid"], row["ppid"]) == (2, 1)
    else:
        assert row["ppid"] == os.getpid()  # the supervisor, in the worker's namespace


def test_every_other_layer_holds_inside_bwrap(tmp_path):
    source = """
    import socket
    def handle(ctx):
        socket.socket()
    """
    with pytest.raises(sandbox.HandlerFailed) as failed:
        run(tmp_path, source)
    assert failed.value.code == "exception" and "PermissionError" in str(failed.value)


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("def handle(ctx):\n    while True:\n        pass\n", "cpu_limit"),
        (
            "import os, signal\ndef handle(ctx):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
            "memory_limit",
        ),
    ],
    ids=["sigxcpu", "sigkill"],
)
def test_a_child_killed_by_a_signal_inside_bwrap_keeps_its_code(tmp_path, source, code):
    # bwrap relays a child killed by signal N as exit status 128 + N: read back as the signal
    with pytest.raises(sandbox.HandlerFailed) as failed:
        run(tmp_path, source, cpu_seconds=1, wall_seconds=10)
    assert failed.value.code == code, str(failed.value)
