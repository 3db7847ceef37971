# ruff: noqa: E501 - a handler's source keeps one of its statements a line
"""The hostile handler corpus: one attack each, what it aims at, and how the sandbox must stop
it (the HandlerFailed codes it may end with and a pattern its message must match). Each
handler raises when its attack fails and returns (or logs) its loot when it succeeds, so a
handler that got through shows what it reached; `control` marks the attacks that do reach
their target when the same handler runs unsandboxed, which the test checks too, so every case
is an attack that works without the sandbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Postgres's own unix socket, where this machine's Postgres has one (not here: TCP only).
PG_SOCKET = "/var/run/postgresql/.s.PGSQL.5432"

# Helpers every handler's module starts with: raw wire protocols, so no client library is needed.
PRELUDE = r"""
import os, socket, struct, json, time

def p(ctx, key):
    return ctx.params[key]

def pg(host, port, sql, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((host, port) if family != socket.AF_UNIX else host)
    startup = b"user\0postgres\0database\0postgres\0\0"
    s.sendall(struct.pack("!ii", 8 + len(startup), 196608) + startup)
    s.recv(65536)
    q = sql.encode() + b"\0"
    s.sendall(b"Q" + struct.pack("!i", 4 + len(q)) + q)
    time.sleep(0.2)
    return s.recv(65536).decode("latin-1")

def resp(*words):
    out = b"*%d\r\n" % len(words)
    for w in words:
        w = str(w).encode()
        out += b"$%d\r\n%s\r\n" % (len(w), w)
    return out

def redis_set(ctx, host, family=socket.AF_INET):
    s = connect(host, 6379, family)
    s.sendall(resp("SELECT", p(ctx, "redis_db")) + resp("SET", "trace-hostile-" + p(ctx, "token"), 1))
    time.sleep(0.2)
    return s.recv(1024).decode()

def connect(host, port, family=socket.AF_INET):
    # No getaddrinfo (create_connection): the socket and its connect are what is attacked.
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((host, port))
    return s

def channel_fd():
    import stat
    for fd in range(3, 256):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                return fd
        except OSError:
            pass
    raise LookupError("no inherited socket")
"""


@dataclass(frozen=True)
class Case:
    id: str
    aim: str
    body: str  # the handler's `handle(ctx)` and anything it needs, after PRELUDE
    codes: tuple[str, ...] = ("exception",)
    match: str = r"PermissionError|Operation not permitted|Permission denied|EPERM|EACCES"
    control: str | None = None  # the target the unsandboxed run reaches (Targets.reached)
    limits: dict = field(default_factory=dict)
    # Set when a bounded success is as good as a stop: what the run kept (rows and logs, as
    # JSON) must stay under this many bytes.
    bounded: int | None = None

    @property
    def source(self) -> str:
        return PRELUDE + self.body


DENIED = Case.__dataclass_fields__["match"].default
LIMIT = r"limit|killed|timeout|exceeded|signal"

CASES = [
    # --- environment secrets ------------------------------------------------------------------
    Case(
        "env-os-environ",
        "the worker's secret through os.environ",
        "def handle(ctx):\n    return [{'loot': os.environ[p(ctx, 'secret_var')]}]\n",
        match=r"KeyError",
        control="secret",
    ),
    Case(
        "env-proc-self",
        "the secret through /proc/self/environ",
        "def handle(ctx):\n"
        "    data = open('/proc/self/environ').read()\n"
        "    if p(ctx, 'secret_var') not in data:\n"
        "        raise LookupError('no secret in /proc/self/environ: ' + repr(data[:200]))\n"
        "    return [{'loot': data}]\n",
        match=DENIED + r"|no secret in /proc/self/environ",
        control="secret",
    ),
    Case(
        "env-proc-parent",
        "the supervisor's environment, /proc/<ppid>/environ",
        "def handle(ctx):\n    return [{'loot': open(f'/proc/{os.getppid()}/environ').read()}]\n",
        control="database_url",  # in the environment its parent started with
    ),
    Case(
        "env-proc-1",
        "PID 1's environment",
        "def handle(ctx):\n    return [{'loot': open('/proc/1/environ').read()}]\n",
    ),
    Case(
        "env-proc-every",
        "every /proc/*/environ",
        "def handle(ctx):\n"
        "    found = []\n"
        "    for pid in os.listdir('/proc'):\n"
        "        if pid.isdigit():\n"
        "            try:\n"
        "                data = open(f'/proc/{pid}/environ').read()\n"
        "            except OSError:\n"
        "                continue\n"
        "            if p(ctx, 'secret_var') in data:\n"
        "                found.append(data)\n"
        "    if not found:\n"
        "        raise PermissionError('no environ readable with the secret')\n"
        "    return [{'loot': d} for d in found]\n",
        control="secret",
    ),
    Case(
        "env-proc-parent-cmdline-and-maps",
        "the supervisor's memory through /proc/<ppid>/mem at its heap",
        "def handle(ctx):\n"
        "    ppid = os.getppid()\n"
        "    maps = open(f'/proc/{ppid}/maps').read().splitlines()\n"
        "    heap = next(l for l in maps if '[heap]' in l)\n"
        "    lo, hi = (int(x, 16) for x in heap.split()[0].split('-'))\n"
        "    with open(f'/proc/{ppid}/mem', 'rb') as mem:\n"
        "        mem.seek(lo)\n"
        "        data = mem.read(min(hi - lo, 64 << 20))\n"
        "    i = data.find(b'TRACE_HOSTILE_SECRET=')\n"
        "    if i < 0:\n"
        "        raise LookupError('no secret in the heap')\n"
        "    return [{'loot': data[i:i + 64].decode('latin-1')}]\n",
        match=DENIED + r"|No such file|StopIteration",
    ),
    # --- the network ----------------------------------------------------------------------
    Case(
        "tcp4-postgres",
        "Postgres on 127.0.0.1:5432 (trust auth): create a table",
        "def handle(ctx):\n"
        "    return [{'loot': pg('127.0.0.1', 5432, 'CREATE TABLE hostile_' + p(ctx, 'token') + ' ()')}]\n",
        control="postgres",
    ),
    Case(
        "tcp6-postgres",
        "Postgres on [::1]:5432",
        "def handle(ctx):\n"
        "    return [{'loot': pg('::1', 5432, 'CREATE TABLE hostile_' + p(ctx, 'token') + ' ()', socket.AF_INET6)}]\n",
    ),
    Case(
        "tcp4-redis",
        "Redis on 127.0.0.1:6379: set a key",
        "def handle(ctx):\n    return [{'loot': redis_set(ctx, '127.0.0.1')}]\n",
        control="redis",
    ),
    Case(
        "tcp6-redis",
        "Redis on [::1]:6379",
        "def handle(ctx):\n    return [{'loot': redis_set(ctx, '::1', socket.AF_INET6)}]\n",
    ),
    Case(
        "tcp4-listener",
        "a loopback TCP v4 listener",
        "def handle(ctx):\n"
        "    connect('127.0.0.1', p(ctx, 'tcp4'))\n"
        "    return [{'loot': 'connected'}]\n",
        control="tcp4",
    ),
    Case(
        "tcp6-listener",
        "a loopback TCP v6 listener",
        "def handle(ctx):\n"
        "    connect('::1', p(ctx, 'tcp6'), socket.AF_INET6)\n"
        "    return [{'loot': 'connected'}]\n",
        control="tcp6",
    ),
    Case(
        "tcp4-bind",
        "listening on a port of its own",
        "def handle(ctx):\n"
        "    s = socket.socket()\n"
        "    s.bind(('127.0.0.1', 0))\n"
        "    s.listen()\n"
        "    return [{'loot': s.getsockname()[1]}]\n",
    ),
    Case(
        "anvil-rpc",
        "the anvil node's JSON-RPC on loopback: mine a block",
        "def handle(ctx):\n"
        "    body = json.dumps({'jsonrpc': '2.0', 'id': 1, 'method': 'evm_mine'}).encode()\n"
        "    s = connect('127.0.0.1', p(ctx, 'anvil_port'))\n"
        "    s.sendall(b'POST / HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\n'\n"
        "              b'Content-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s' % (len(body), body))\n"
        "    time.sleep(0.5)\n"
        "    return [{'loot': s.recv(65536).decode()}]\n",
        control="anvil",
    ),
    Case(
        "unix-pathname",
        "a pathname unix socket open to every uid (Landlock does not cover connect)",
        "def handle(ctx):\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    s.connect(p(ctx, 'unix'))\n"
        "    return [{'loot': 'connected'}]\n",
        control="unix",
    ),
    Case(
        "unix-abstract",
        "an abstract unix socket of the worker",
        "def handle(ctx):\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    s.connect('\\0' + p(ctx, 'abstract'))\n"
        "    return [{'loot': 'connected'}]\n",
        control="abstract",
    ),
    Case(
        "udp-sendto",
        "a UDP datagram to a loopback receiver",
        "def handle(ctx):\n"
        "    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', p(ctx, 'udp')))\n"
        "    return [{'loot': 'sent'}]\n",
        control="udp",
    ),
    Case(
        "socket-ctypes",
        "socket(2) through ctypes, around Python's socket module",
        "import ctypes\n"
        "def handle(ctx):\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    fd = libc.socket(2, 1, 0)\n"
        "    if fd < 0:\n"
        "        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))\n"
        "    return [{'loot': fd}]\n",
    ),
    # --- other programs ---------------------------------------------------------------------
    Case(
        "subprocess-psql",
        "psql to the state database",
        "import subprocess\n"
        "def handle(ctx):\n"
        "    out = subprocess.run(['psql', '-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres',\n"
        "        '-c', 'CREATE TABLE hostile_' + p(ctx, 'token') + ' ()'],\n"
        "        capture_output=True, text=True, check=True)\n"
        "    return [{'loot': out.stdout}]\n",
        match=DENIED + r"|No such file|CalledProcessError",
        control="postgres",
    ),
    Case(
        "subprocess-sh",
        "a shell reading /etc/passwd",
        "import subprocess\n"
        "def handle(ctx):\n"
        "    out = subprocess.run(['/bin/sh', '-c', 'cat /etc/passwd'], capture_output=True,\n"
        "        text=True, check=True)\n"
        "    return [{'loot': out.stdout}]\n",
        match=DENIED + r"|No such file|CalledProcessError",
        control="passwd",
    ),
    Case(
        "exec-sh",
        "replacing itself with a shell (execv)",
        "def handle(ctx):\n    os.execv('/bin/sh', ['sh', '-c', 'cat /etc/passwd'])\n",
        codes=("exception", "protocol"),
        match=DENIED + r"|No such file|exited|protocol",
    ),
    # --- files outside the temp dir ---------------------------------------------------------
    Case(
        "read-project",
        "the project's files (pyproject.toml)",
        "def handle(ctx):\n    return [{'loot': open(p(ctx, 'project_file')).read()}]\n",
        control="project_file",
    ),
    Case(
        "read-settings-module",
        "the worker's settings module file",
        "def handle(ctx):\n    return [{'loot': open(p(ctx, 'settings_file')).read()}]\n",
        control="settings_file",
    ),
    Case(
        "read-dotenv",
        "a .env file outside, readable by every uid",
        "def handle(ctx):\n    return [{'loot': open(p(ctx, 'dotenv')).read()}]\n",
        control="dotenv",
    ),
    Case(
        "read-home",
        "the worker's home directory (/root)",
        "def handle(ctx):\n"
        "    home = p(ctx, 'home')\n"
        "    return [{'loot': open(os.path.join(home, f)).read()} for f in os.listdir(home)\n"
        "            if f.startswith('.trace-hostile-')]\n",
        control="home",
    ),
    Case(
        "read-shadow",
        "/etc/shadow",
        "def handle(ctx):\n    return [{'loot': open('/etc/shadow').read()}]\n",
        control="shadow",
    ),
    Case(
        "read-etc-passwd",
        "/etc/passwd (outside the runtime and the bundle)",
        "def handle(ctx):\n    return [{'loot': open('/etc/passwd').read()}]\n",
        control="passwd",
    ),
    Case(
        "write-outside",
        "writing a file in a directory open to every uid",
        "def handle(ctx):\n"
        "    open(os.path.join(p(ctx, 'outside'), 'written-' + p(ctx, 'token')), 'w').write('x')\n"
        "    return [{'loot': 'written'}]\n",
        control="write_outside",
    ),
    Case(
        "write-bundle",
        "rewriting its own bundle (read-only)",
        "def handle(ctx):\n"
        "    here = os.path.dirname(os.path.abspath(__file__))\n"
        "    os.chmod(here, 0o777)\n"
        "    open(os.path.join(here, 'main.py'), 'a').write('# changed')\n"
        "    return [{'loot': 'written'}]\n",
    ),
    Case(
        "import-trace-web",
        "the platform's own code (trace_web, Django settings)",
        "def handle(ctx):\n"
        "    import trace_web\n"
        "    return [{'loot': 'imported-' + trace_web.__name__}]\n",
        match=r"ModuleNotFoundError|ImportError|No module named",
        control="trace_web",
    ),
    Case(
        "import-django",
        "Django (and so the ORM and the state database)",
        "def handle(ctx):\n    import django\n    return [{'loot': django.__file__}]\n",
        match=r"ModuleNotFoundError|ImportError|No module named",
    ),
    # --- resources --------------------------------------------------------------------------
    Case(
        "fork-bomb",
        "exhausting the worker's processes",
        "def handle(ctx):\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(3600)\n",
        codes=("exception", "killed", "timeout", "memory_limit"),
        match=r"BlockingIOError|Resource temporarily unavailable|" + LIMIT,
        limits={"wall_seconds": 5},
    ),
    Case(
        "thread-bomb",
        "exhausting the worker's threads",
        "import threading\n"
        "def handle(ctx):\n"
        "    while True:\n"
        "        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n",
        codes=("exception", "killed", "timeout", "memory_limit"),
        match=r"can't start new thread|RuntimeError|MemoryError|" + LIMIT,
        limits={"wall_seconds": 5},
    ),
    Case(
        "memory-bomb",
        "exhausting the worker's memory",
        "def handle(ctx):\n"
        "    hoard = []\n"
        "    while True:\n"
        "        hoard.append(bytearray(64 << 20))\n",
        codes=("memory_limit",),
        match=r"memory|Memory",
        limits={"memory_bytes": 256 << 20},
    ),
    Case(
        "cpu-loop",
        "a CPU loop",
        "def handle(ctx):\n    while True:\n        pass\n",
        codes=("cpu_limit", "timeout"),
        match=r"cpu|CPU|time|past",
        limits={"cpu_seconds": 1, "wall_seconds": 10},
    ),
    Case(
        "cpu-raise-rlimit",
        "raising its own CPU limit, then a CPU loop",
        "import resource\n"
        "def handle(ctx):\n"
        "    try:\n"
        "        resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
        "    except (ValueError, OSError):\n"
        "        pass\n"
        "    while True:\n"
        "        pass\n",
        codes=("cpu_limit", "timeout"),
        match=r"cpu|CPU|time|past",
        limits={"cpu_seconds": 1, "wall_seconds": 10},
    ),
    Case(
        "sleep-forever",
        "time.sleep for ever (no CPU used)",
        "def handle(ctx):\n    time.sleep(10 ** 6)\n",
        codes=("timeout",),
        match=r"time|wall|past",
        limits={"wall_seconds": 2},
    ),
    Case(
        "block-on-read",
        "blocking on a read for ever",
        "def handle(ctx):\n    r, w = os.pipe()\n    os.read(r, 1)\n",
        codes=("timeout",),
        match=r"time|wall|past",
        limits={"wall_seconds": 2},
    ),
    Case(
        "ignore-sigterm",
        "ignoring SIGTERM and sleeping",
        "import signal\n"
        "def handle(ctx):\n"
        "    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
        "        signal.signal(s, signal.SIG_IGN)\n"
        "    time.sleep(10 ** 6)\n",
        codes=("timeout",),
        match=r"time|wall|past",
        limits={"wall_seconds": 2},
    ),
    Case(
        "escape-process-group",
        "a child in a session of its own, outliving the run's process group",
        "def handle(ctx):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(3600)\n"
        "        os._exit(0)\n"
        "    time.sleep(10 ** 6)\n",
        codes=("timeout", "exception"),
        match=r"time|wall|past|" + DENIED,
        limits={"wall_seconds": 2},
    ),
    Case(
        "huge-file",
        "filling the disk with one file (RLIMIT_FSIZE)",
        "import tempfile\n"
        "def handle(ctx):\n"
        "    with open(os.path.join(tempfile.gettempdir(), 'big'), 'wb') as f:\n"
        "        for _ in range(1024):\n"
        "            f.write(b'x' * (1 << 20))\n"
        "    return [{'loot': 'wrote 1 GiB'}]\n",
        codes=("exception", "killed", "output_too_large"),
        match=r"File too large|EFBIG|SIGXFSZ|file size|" + LIMIT,
        limits={"file_size_bytes": 4 << 20},
    ),
    # --- syscalls through ctypes ------------------------------------------------------------
    *[
        Case(
            f"ctypes-{name}",
            f"{name} through ctypes",
            "import ctypes\n"
            "def handle(ctx):\n"
            "    libc = ctypes.CDLL(None, use_errno=True)\n"
            f"    rc = libc.syscall({number}, {args})\n"
            "    if rc < 0:\n"
            "        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))\n"
            f"    return [{{'loot': '{name} returned ' + str(rc)}}]\n",
        )
        for name, number, args in [
            ("setuid", 105, "0"),
            ("setgid", 106, "0"),
            ("unshare-user", 272, "0x10000000"),  # CLONE_NEWUSER
            ("unshare-net", 272, "0x40000000"),  # CLONE_NEWNET
            ("ptrace-parent", 101, "16, os.getppid(), 0, 0"),  # PTRACE_ATTACH
            ("process-vm-readv", 310, "os.getppid(), 0, 0, 0, 0, 0"),
            ("mount", 165, "b'none', b'/tmp', b'tmpfs', 0, 0"),
            ("bpf", 321, "0, 0, 0"),
            ("perf-event-open", 298, "0, 0, -1, -1, 0"),
            ("io-uring-setup", 425, "1, 0"),
            ("keyctl", 250, "0, -3, 0, 0, 0"),  # KEYCTL_GET_KEYRING_ID of the user keyring
            ("userfaultfd", 323, "0"),
            ("setns", 308, "0, 0"),
        ]
    ],
    # --- signals ----------------------------------------------------------------------------
    Case(
        "kill-victim",
        "SIGKILL to another process of the worker's uid",
        "import signal\n"
        "def handle(ctx):\n"
        "    os.kill(p(ctx, 'victim'), signal.SIGKILL)\n"
        "    return [{'loot': 'killed'}]\n",
        match=DENIED + r"|ProcessLookupError",
        control="victim",
    ),
    Case(
        "killpg-victim",
        "SIGKILL to another process group",
        "import signal\n"
        "def handle(ctx):\n"
        "    os.killpg(p(ctx, 'victim'), signal.SIGKILL)\n"
        "    return [{'loot': 'killed'}]\n",
        match=DENIED + r"|ProcessLookupError",
        control="victim",
    ),
    Case(
        "signal-parent",
        "signalling the supervisor (signal 0: a probe that kills nothing)",
        "def handle(ctx):\n"
        "    os.kill(os.getppid(), 0)\n"
        "    return [{'loot': 'the parent can be signalled'}]\n",
    ),
    Case(
        # If this ever gets through, the test process itself dies: a loud failure, on purpose.
        "kill-parent",
        "SIGKILL to the supervisor, then to its process group",
        "import signal\n"
        "def handle(ctx):\n"
        "    try:\n"
        "        os.kill(os.getppid(), signal.SIGKILL)\n"
        "    finally:\n"
        "        os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n"
        "    return [{'loot': 'the parent was killed'}]\n",
        match=DENIED + r"|ProcessLookupError",
    ),
    # --- output -------------------------------------------------------------------------------
    Case(
        "huge-output",
        "a result far past the output cap",
        "def handle(ctx):\n    return [{'x': 'a' * 1000, 'i': i} for i in range(20000)]\n",
        codes=("output_too_large",),
        match=r"output|too large|limit|bytes",
    ),
    Case(
        "huge-logs",
        "logs far past the message cap",
        "def handle(ctx):\n"
        "    for _ in range(1000):\n"
        "        ctx.log('x' * (1 << 20))\n"
        "    return []\n",
        codes=("output_too_large", "protocol"),
        bounded=8
        << 20,  # no more than the default output cap (the sandbox keeps 1000 lines of 4 KiB)
        match=r"output|too large|limit|bytes|message",
    ),
    Case(
        "not-a-list",
        "a result that is not a list",
        "def handle(ctx):\n    return {'rows': 1}\n",
        codes=("malformed_output",),
        match=r"list",
    ),
    Case(
        "not-objects",
        "a list of non-objects",
        "def handle(ctx):\n    return [1, 2, 3]\n",
        codes=("malformed_output",),
        match=r"object|dict|mapping",
    ),
    Case(
        "nan",
        "NaN in a row",
        "def handle(ctx):\n    return [{'x': float('nan')}]\n",
        codes=("malformed_output",),
        match=r"NaN|nan|JSON",
    ),
    Case(
        "non-json",
        "a value JSON cannot hold",
        "def handle(ctx):\n    return [{'x': object()}]\n",
        codes=("malformed_output",),
        match=r"JSON|serializ|object",
    ),
    # --- the channel -------------------------------------------------------------------------
    Case(
        "channel-garbage",
        "garbage written straight to the inherited socket",
        "def handle(ctx):\n"
        "    fd = channel_fd()\n"
        "    os.write(fd, b'\\xff\\x00garbage' * 1000)\n"
        "    time.sleep(10 ** 6)\n",
        codes=("protocol",),
        match=r"protocol|message|malformed|invalid|frame",
        limits={"wall_seconds": 10},
    ),
    Case(
        "channel-oversized",
        "an oversized message frame straight to the inherited socket",
        "def handle(ctx):\n"
        "    os.write(channel_fd(), struct.pack('>cI', b'm', 1 << 31) + b'{')\n"
        "    time.sleep(10 ** 6)\n",
        codes=("protocol",),
        match=r"over|large|limit|bytes",
        limits={"wall_seconds": 10},
    ),
    *[
        Case(
            f"channel-{name}",
            f"asking the supervisor through the socket for {aim}",
            "def handle(ctx):\n"
            f"    raw = json.dumps({message!r}).encode()\n"
            "    os.write(channel_fd(), struct.pack('>cI', b'm', len(raw)) + raw)\n"
            "    time.sleep(10 ** 6)\n",
            codes=("protocol",),
            match=r"unexpected|protocol|message",
            limits={"wall_seconds": 10},
        )
        for name, aim, message in [
            ("token", "its capability token", {"type": "token"}),
            (
                "publish-other-task",
                "a publish for another task",
                {"type": "publish", "task_id": 1, "rows": [{"x": 1}]},
            ),
            ("complete", "completing the task", {"type": "complete"}),
            (
                "forge-unavailable",
                "a forged 'sandbox unavailable' (an ops failure)",
                {"type": "unavailable", "message": "forged"},
            ),
        ]
    ],
    Case(
        "channel-query-other-task",
        "a query frame naming another task and token (answered, if at all, as its own)",
        "def handle(ctx):\n"
        "    raw = json.dumps({'type': 'query', 'sql': 'SELECT 1', 'task_id': 1, 'token': 'x'}).encode()\n"
        "    os.write(channel_fd(), struct.pack('>cI', b'm', len(raw)) + raw)\n"
        "    time.sleep(10 ** 6)\n",
        codes=("protocol", "timeout"),
        match=r"unexpected|protocol|message|past",
        limits={"wall_seconds": 3},
    ),
    # --- the runner inside ------------------------------------------------------------------
    Case(
        "close-stdio",
        "closing stdout and stderr, then failing",
        "def handle(ctx):\n"
        "    os.close(1)\n"
        "    os.close(2)\n"
        "    raise RuntimeError('failed after closing stdio')\n",
        match=r"failed after closing stdio",
    ),
    Case(
        "chdir",
        "changing the working directory, then failing",
        "def handle(ctx):\n    os.chdir('/')\n    raise RuntimeError('failed after chdir')\n",
        match=r"failed after chdir",
    ),
    Case(
        "replace-builtins",
        "replacing json, isinstance and the exit functions to forge a success",
        "import builtins, sys\n"
        "def handle(ctx):\n"
        "    forged = [{'loot': 'forged-' + p(ctx, 'token')}]\n"
        "    json.dumps = lambda *a, **k: json.JSONEncoder().encode(forged)\n"
        "    builtins.isinstance = lambda *a: True\n"
        "    sys.exit = os._exit = lambda *a: None\n"
        "    raise RuntimeError('failed after replacing builtins')\n",
        codes=("exception", "protocol"),
        match=r"failed after replacing builtins",
    ),
    *(
        [
            Case(
                "unix-postgres",
                "Postgres's unix socket: create a table",
                "def handle(ctx):\n"
                f"    return [{{'loot': pg({PG_SOCKET!r}, 0, 'CREATE TABLE hostile_' + p(ctx, 'token') + ' ()', socket.AF_UNIX)}}]\n",
                control="postgres",
            )
        ]
        if Path(PG_SOCKET).exists()
        else []
    ),
]
