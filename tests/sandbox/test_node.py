"""The Node runtime under the same sandbox: `export async function handle(ctx)` gets its
params, range, queries and logs, returns its rows, and every limit and layer stops it with
the same codes as a Python handler (the hostile cases that apply to Node)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from tests.sandbox.helpers import RecordingChannel, run
from trace_tasks import sandbox

SECRET = "trace-node-secret-4f1c"


def node(tmp_path, source, **kwargs):
    return run(tmp_path, source, runtime="node", **kwargs)


def test_a_node_handler_gets_params_range_queries_and_logs(tmp_path):
    channel = RecordingChannel(refuse={"SELECT 2": ("query_refused", "not granted")})
    result = node(
        tmp_path,
        """
        import { helper } from "./lib.mjs";
        export async function handle(ctx) {
          const answer = await ctx.query("SELECT 1");
          let refused = null;
          try { await ctx.query("SELECT 2"); } catch (e) {
            if (!(e instanceof ctx.QueryRefused)) throw e;
            refused = e.code;
          }
          ctx.log("hello from node");
          console.log("console too", 42);
          return answer.rows.map(([n]) => ({ n, t: ctx.params.t, range: ctx.range, refused,
                                            h: helper(n), uid: process.getuid() }));
        }
        """,
        files={"lib.mjs": "export const helper = (n) => n * 10;\n"},
        channel=channel,
        params={"t": 7},
        block_range=(10, 20),
    )
    uid = result.rows[0]["uid"]
    assert uid >= sandbox.uid_base()
    assert result.rows == [
        {"n": n, "t": 7, "range": [10, 20], "refused": "query_refused", "h": n * 10, "uid": uid}
        for n in (1, 2)
    ]
    assert channel.queries == ["SELECT 1", "SELECT 2"]
    assert result.logs == ["hello from node", "console too 42"]


@pytest.mark.parametrize(
    ("source", "code", "message"),
    [
        (
            "export async function handle(ctx) { throw new RangeError('no such pool'); }",
            "exception",
            "RangeError: no such pool",
        ),
        ("export const other = 1;", "exception", "exports no function handle"),
        ("export async function handle(ctx) { return {a: 1}; }", "malformed_output", "array"),
        ("export async function handle(ctx) { return [1]; }", "malformed_output", "row 0"),
        ("export async function handle(ctx) { return [{x: NaN}]; }", "malformed_output", "NaN"),
        ("export async function handle(ctx) { return [{x: 1n}]; }", "malformed_output", "JSON"),
        (
            "export async function handle(ctx) { return [{x: 'y'.repeat(5000)}]; }",
            "output_too_large",
            "over 4096 bytes",
        ),
        (
            "export async function handle(ctx) {"
            " await new Promise(() => setTimeout(() => {}, 1e9)); }",
            "timeout",
            "ran past",
        ),
        ("export async function handle(ctx) { for (;;) {} }", "cpu_limit", "CPU"),
        (
            "export async function handle(ctx) {"
            " const a = []; for (;;) a.push(new Array(1e6).fill(1)); }",
            "memory_limit",
            "memory",
        ),
    ],
    ids=[
        "exception",
        "no-handle",
        "not-array",
        "not-object",
        "nan",
        "bigint",
        "too-large",
        "timeout",
        "cpu",
        "memory",
    ],
)
def test_each_node_failure_has_its_code(tmp_path, source, code, message):
    # The memory hog burns CPU too (filling arrays, V8's GC): on a loaded machine under
    # coverage it once used its 1 s of CPU before the 256 MB; it gets the CPU to reach them.
    hog = code == "memory_limit"
    with pytest.raises(sandbox.HandlerFailed) as failed:
        node(
            tmp_path,
            source,
            wall_seconds=20 if hog else 4,
            cpu_seconds=10 if hog else 1,
            output_bytes=4096,
            memory_bytes=256 * 1024 * 1024,
        )
    assert failed.value.code == code, str(failed.value)
    assert message in str(failed.value)


@pytest.fixture
def listener():
    """A loopback TCP listener that records whether anything connected."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    hits = []

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            hits.append(conn)

    stop = threading.Event()
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], hits
    stop.set()
    thread.join(2)
    server.close()


ATTACKS = {
    "env-secret": "return [{loot: JSON.stringify(process.env)}];",
    "proc-environ": (
        "const fs = await import('node:fs'); const out = [];"
        "for (const p of fs.readdirSync('/proc').filter((d) => /^\\d+$/.test(d))) {"
        "  try { out.push(fs.readFileSync(`/proc/${p}/environ`, 'latin1')); } catch (e) {} }"
        "return [{loot: out.join('|')}];"
    ),
    "read-etc-passwd": (
        "const fs = await import('node:fs');"
        "return [{loot: fs.readFileSync('/etc/passwd', 'utf8')}];"
    ),
    "read-secret-file": (
        "const fs = await import('node:fs'); return [{loot: fs.readFileSync(SECRET_FILE, 'utf8')}];"
    ),
    "write-outside": (
        "const fs = await import('node:fs'); fs.writeFileSync(OUTSIDE + '/pwned', 'x');"
        "return [{loot: 'wrote'}];"
    ),
    "spawn-sh": (
        "const cp = await import('node:child_process');"
        "return [{loot: cp.execSync('echo $TRACE_NODE_SECRET; id').toString()}];"
    ),
    "tcp-connect": (
        "const net = await import('node:net');"
        "const got = await new Promise((ok, no) => { const s = net.connect(PORT, '127.0.0.1');"
        "  s.on('connect', () => ok('connected')); s.on('error', no); });"
        "return [{loot: got}];"
    ),
    "kill-parent": "process.kill(process.ppid, 'SIGKILL'); return [{loot: 'killed'}];",
    "kill-pid-1": "process.kill(1, 'SIGTERM'); return [{loot: 'signalled'}];",
    "worker-bomb": (
        "const { Worker } = await import('node:worker_threads'); const ws = [];"
        "for (let i = 0; i < 200; i++) ws.push(new Worker('for(;;){}', {eval: true}));"
        "await new Promise(() => {});"
    ),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_a_hostile_node_handler_reaches_nothing(name, tmp_path, listener, monkeypatch, request):
    port, hits = listener
    monkeypatch.setenv("TRACE_NODE_SECRET", SECRET)
    # Outside the sandbox but reachable by any uid (0777 under /tmp): only the sandbox stops it.
    outside = Path(tempfile.mkdtemp(prefix="trace-node-outside-", dir="/tmp"))
    outside.chmod(0o777)
    request.addfinalizer(lambda: shutil.rmtree(outside, ignore_errors=True))
    secret_file = outside / ".env"
    secret_file.write_text(f"SECRET={SECRET}\n")
    secret_file.chmod(0o644)
    body = (
        ATTACKS[name]
        .replace("SECRET_FILE", repr(str(secret_file)))
        .replace("OUTSIDE", repr(str(outside)))
        .replace("PORT", str(port))
    )
    source = f"export async function handle(ctx) {{ {body} }}"
    try:
        (tmp_path / "run").mkdir()
        result = node(tmp_path / "run", source, wall_seconds=5, cpu_seconds=3)
    except sandbox.HandlerFailed as failed:
        assert failed.code in ("exception", "timeout", "cpu_limit", "memory_limit"), failed
        text = str(failed)
    else:
        text = repr(result.rows) + repr(result.logs)
        # these two read what they may (the run's own environment, nothing of anyone else's)
        assert name in ("env-secret", "proc-environ"), f"{name} was not stopped: {text}"
    assert SECRET not in text
    assert "root:" not in text
    assert not hits, "the listener was reached"
    assert not (outside / "pwned").exists()
    assert os.getpid() > 0  # the test process (the supervisor's) is alive
