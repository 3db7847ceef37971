"""A handler in the sandbox: what it gets (params, range, queries, logs), what comes back,
and the code each limit fails it with."""

from __future__ import annotations

import threading

import pytest

from tests.sandbox.helpers import RecordingChannel, run
from trace_tasks import sandbox


def test_a_trivial_handler_gets_its_params_and_range_and_returns_rows_and_logs(tmp_path):
    result = run(
        tmp_path,
        """
        def handle(ctx):
            ctx.log("starting")
            print("printed too")
            start, end = ctx.range
            return [{"n": n, "k": ctx.params["k"]} for n in range(start, end)]
        """,
        params={"k": "v"},
        block_range=(3, 6),
    )
    assert result.rows == [{"n": 3, "k": "v"}, {"n": 4, "k": "v"}, {"n": 5, "k": "v"}]
    assert result.logs == ["starting", "printed too"]
    assert result.duration_seconds > 0


def test_without_a_range_ctx_range_is_none_and_a_named_function_is_called(tmp_path):
    result = run(
        tmp_path,
        "def other(ctx):\n    return [{'range': ctx.range}]\n",
        entrypoint="main:other",
    )
    assert result.rows == [{"range": None}]


def test_the_handler_imports_its_own_bundle_modules(tmp_path):
    result = run(
        tmp_path,
        "from lib.names import NAME\ndef handle(ctx):\n    return [{'name': NAME}]\n",
        files={"lib/__init__.py": "", "lib/names.py": "NAME = 'Transfer'\n"},
    )
    assert result.rows == [{"name": "Transfer"}]


def test_queries_go_through_the_channel_and_a_refusal_is_catchable(tmp_path):
    channel = RecordingChannel(refuse={"select secret": ("sql_refused", "not granted")})
    result = run(
        tmp_path,
        """
        def handle(ctx):
            answer = ctx.query("select n")
            try:
                ctx.query("select secret")
            except ctx.QueryRefused as exc:
                refused = [exc.code, exc.message]
            return [{"answer": answer, "refused": refused}]
        """,
        channel=channel,
    )
    assert result.rows == [
        {
            "answer": {"columns": ["n"], "rows": [[1], [2]], "truncated": False},
            "refused": ["sql_refused", "not granted"],
        }
    ]
    assert channel.queries == ["select n", "select secret"]


def test_the_supervisor_heartbeats_the_channel_while_the_handler_runs(tmp_path):
    channel = RecordingChannel()
    run(
        tmp_path,
        "import time\ndef handle(ctx):\n    time.sleep(1)\n    return []\n",
        channel=channel,
        heartbeat_seconds=0.1,
    )
    assert channel.heartbeats >= 1


def test_an_exception_reports_its_type_message_and_the_handlers_own_frames(tmp_path):
    with pytest.raises(sandbox.HandlerFailed) as failed:
        run(
            tmp_path,
            """
            import json

            def helper(x):
                return json.loads(x)

            def handle(ctx):
                helper("{")
            """,
        )
    assert failed.value.code == "exception"
    message = str(failed.value)
    assert message.startswith("JSONDecodeError: Expecting property name")
    assert 'File "main.py", line 5, in helper' in message
    assert "json/decoder.py" not in message  # only the handler's own files


@pytest.mark.parametrize(
    ("source", "limits", "code"),
    [
        ("import time\ndef handle(ctx):\n    time.sleep(30)\n", {"wall_seconds": 1}, "timeout"),
        ("def handle(ctx):\n    while True:\n        pass\n", {"cpu_seconds": 1}, "cpu_limit"),
        (
            "def handle(ctx):\n    return [{'x': 'y' * (400 * 1024 * 1024)}]\n",
            {"memory_bytes": 256 * 1024 * 1024},
            "memory_limit",
        ),
        (
            "def handle(ctx):\n    return [{'x': 'y' * 2000}]\n",
            {"output_bytes": 1000},
            "output_too_large",
        ),
        ("def handle(ctx):\n    return {'not': 'a list'}\n", {}, "malformed_output"),
        ("def handle(ctx):\n    return [1, 2]\n", {}, "malformed_output"),
        ("def handle(ctx):\n    return [{'x': object()}]\n", {}, "malformed_output"),
        ("def handle(ctx):\n    return [{'x': float('nan')}]\n", {}, "malformed_output"),
        ("def handle(ctx):\n    raise SystemExit(0)\n", {}, "exception"),
    ],
    ids=[
        "timeout",
        "cpu",
        "memory",
        "output",
        "dict",
        "not-objects",
        "not-json",
        "nan",
        "sys-exit",
    ],
)
def test_each_limit_fails_the_run_with_its_code(tmp_path, source, limits, code):
    with pytest.raises(sandbox.HandlerFailed) as failed:
        run(tmp_path, source, **limits)
    assert failed.value.code == code, str(failed.value)


def test_a_set_stop_event_kills_the_run(tmp_path):
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    try:
        with pytest.raises(sandbox.HandlerFailed) as failed:
            run(tmp_path, "import time\ndef handle(ctx):\n    time.sleep(30)\n", stop_event=stop)
    finally:
        timer.cancel()
    assert failed.value.code == "killed"


def test_a_missing_handler_function_is_an_exception(tmp_path):
    with pytest.raises(sandbox.HandlerFailed) as failed:
        run(tmp_path, "def other(ctx):\n    return []\n")
    assert failed.value.code == "exception"
    assert "no function handle()" in str(failed.value)


@pytest.mark.parametrize(
    ("fields", "error", "text"),
    [
        ({"wall_seconds": 0}, ValueError, "wall_seconds: must be positive"),
        ({"memory_bytes": -1}, ValueError, "memory_bytes: must be positive"),
        ({"cpu_seconds": 1.5}, ValueError, "cpu_seconds: must be a whole number"),
        ({"open_files": "64"}, TypeError, "open_files: must be a number"),
        ({"bogus": 1}, TypeError, "bogus"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(fields, error, text):
    with pytest.raises(error, match=text):
        sandbox.SandboxLimits(**fields)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ("/nonexistent/node", "the node runtime /nonexistent/node: No such file"),
        ("/etc/hostname", "not a dynamically linked ELF executable"),
    ],
)
def test_without_a_usable_node_binary_a_node_run_is_refused(tmp_path, monkeypatch, node, message):
    monkeypatch.setenv("TRACE_UDF_NODE", node)
    sandbox.node_runtime.cache_clear()
    sandbox.sandbox_probe.cache_clear()
    try:
        handler = sandbox.HandlerRun(
            runtime="node",
            bundle_dir=tmp_path,
            entrypoint="main",
            params={},
            range=None,
            limits=sandbox.SandboxLimits(),
        )
        with pytest.raises(sandbox.SandboxUnavailable, match=message):
            sandbox.run_handler(handler, RecordingChannel())
        assert "node" not in sandbox.sandbox_probe()["runtimes"]
    finally:
        sandbox.node_runtime.cache_clear()
        sandbox.sandbox_probe.cache_clear()


def test_another_runtime_is_refused(tmp_path):
    handler = sandbox.HandlerRun(
        runtime="ruby",
        bundle_dir=tmp_path,
        entrypoint="main",
        params={},
        range=None,
        limits=sandbox.SandboxLimits(),
    )
    with pytest.raises(sandbox.SandboxUnavailable, match="no sandbox runtime 'ruby'"):
        sandbox.run_handler(handler, RecordingChannel())


def test_two_runs_of_one_slot_take_turns_instead_of_killing_each_other(tmp_path):
    """The end of a run kills everything under its slot's uid: without the slot lock the
    first run to end (0.2 s) would kill the other's process (1.2 s)."""
    results: list = []
    errors: list = []

    def one(i: int) -> None:
        try:
            results.append(
                run(
                    tmp_path / str(i),
                    "import time\ndef handle(ctx):\n"
                    f"    time.sleep({0.2 + i})\n    return [{{'i': {i}}}]\n",
                )
            )
        except Exception as exc:  # reported below
            errors.append(exc)

    for i in range(2):
        (tmp_path / str(i)).mkdir()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r.rows[0]["i"] for r in results) == [0, 1]


class _HugeAnswers(RecordingChannel):
    def query(self, sql: str) -> dict:
        super().query(sql)
        return {"columns": ["x"], "rows": [["y" * 1000]] * 4000, "truncated": False}


def test_a_handler_that_stops_reading_cannot_hold_the_supervisor_past_its_wall_clock(tmp_path):
    with pytest.raises(sandbox.HandlerFailed) as failed:
        run(
            tmp_path,
            """
            import json, socket, struct, sys, time
            def handle(ctx):
                sock = socket.socket(fileno=int(sys.argv[1]))  # its own end, by hand
                data = json.dumps({"type": "query", "sql": "select x"}).encode()
                sock.sendall(struct.pack(">cI", b"m", len(data)) + data)
                time.sleep(30)  # and never reads the 4 MB answer
            """,
            channel=_HugeAnswers(),
            wall_seconds=1,
        )
    assert failed.value.code == "timeout"


def test_long_log_lines_are_cut_and_an_oversized_query_is_refused_in_the_handler(tmp_path):
    result = run(
        tmp_path,
        """
        def handle(ctx):
            ctx.log("x" * 100_000)
            try:
                ctx.query("select " + "1" * 10_000)
            except ValueError as exc:
                return [{"error": str(exc)}]
        """,
        message_bytes=8192,
    )
    assert result.logs == ["x" * 4096]
    assert result.rows == [{"error": "ctx.query(sql): the SQL is over 8128 bytes"}]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('struct.pack(">cI", b"r", 10**9)', "output_too_large"),
        ('struct.pack(">cI", b"m", 10**8)', "protocol"),
        ('struct.pack(">cI", b"z", 2) + b"{}"', "protocol"),
        ('struct.pack(">cI", b"m", 3) + b"{x}"', "protocol"),
        ("frame(b'm', b'{\"type\": \"shell\"}')", "protocol"),
        ('frame(b\'m\', b\'{"type": "error", "code": "timeout"}\')', "protocol"),
    ],
    ids=["huge-result", "huge-message", "bad-kind", "not-json", "unknown-type", "claimed-code"],
)
def test_frames_outside_the_protocol_fail_the_run(tmp_path, frame, code):
    with pytest.raises(sandbox.HandlerFailed) as failed:
        run(
            tmp_path,
            f"""
            import socket, struct, sys, time
            def frame(kind, body):
                return struct.pack(">cI", kind, len(body)) + body
            def handle(ctx):
                sock = socket.socket(fileno=int(sys.argv[1]))
                sock.sendall({frame})
                time.sleep(30)
            """,
            wall_seconds=20,
        )
    assert failed.value.code == code, str(failed.value)


def test_a_handler_that_closes_its_socket_and_keeps_running_still_times_out(tmp_path):
    with pytest.raises(sandbox.HandlerFailed) as failed:
        run(
            tmp_path,
            """
            import os, sys, time
            def handle(ctx):
                os.close(int(sys.argv[1]))
                time.sleep(30)
            """,
            wall_seconds=1,
        )
    assert failed.value.code == "timeout"
