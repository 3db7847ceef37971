"""The UDF sandbox: a user's handler run in a fresh, confined child process, with one way
out, the socket to its supervisor here (the run's TaskChannel: queries and heartbeats).

Layers, each applied by the child runner (_child.py) before the handler is imported, and any
one missing refuses the run (SandboxUnavailable: user code never runs unsandboxed): a fresh
`python -I -S` process with an empty environment and only its socket inherited; the slot's own
uid with rlimits (CPU, address space, processes, file size, open files, no core); Landlock
(read only the runtime and the bundle, write only the run's temporary directory, no TCP, no
signals or abstract sockets out of the sandbox); a seccomp filter (no new sockets, tracing,
namespaces, mounts or kernel surfaces). The supervisor enforces the wall clock, the message and
output sizes and the protocol, and kills the whole process group (and anything left under the
slot's uid) when the run ends. See docs/udf.md, "Sandbox".
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import secrets
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trace_tasks.sandbox import _confine

_HERE = Path(__file__).resolve().parent
_CHILD = _HERE / "_child.py"
COVERAGE_FILE = ".coverage.sandbox"  # a measured child's data, in its run's directory
_HEADER = struct.Struct(">cI")
HEARTBEAT_SECONDS = 10.0
LOG_LINES = 1000
LOG_LINE_CHARS = 4096
UID_BASE_DEFAULT = 61000
# Codes a child may report about itself; anything else it claims is a protocol error.
_CHILD_CODES = {"exception", "malformed_output", "output_too_large", "memory_limit"}
# Directories of shared libraries an extension module may load (read only).
_LIBRARY_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/etc/ld.so.cache")


class SandboxUnavailable(Exception):
    """A kernel feature the sandbox requires is missing: the handler is never run."""


class HandlerFailed(Exception):
    """The handler's run failed; `code` is one of timeout, cpu_limit, memory_limit,
    output_too_large, malformed_output, exception, killed, protocol."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ChannelError(Exception):
    """The channel refused a query; the handler gets it as QueryRefused with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TaskChannel(Protocol):
    def query(self, sql: str) -> dict[str, Any]: ...

    def heartbeat(self) -> None: ...


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 30
    wall_seconds: float = 60
    memory_bytes: int = 512 * 1024 * 1024
    max_processes: int = 32
    file_size_bytes: int = 64 * 1024 * 1024
    open_files: int = 64
    output_bytes: int = 8 * 1024 * 1024
    message_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            integral = field.name != "wall_seconds"
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{field.name}: must be a number, not {type(value).__name__}")
            if integral and value != int(value):
                raise ValueError(f"{field.name}: must be a whole number, not {value!r}")
            if not value > 0:
                raise ValueError(f"{field.name}: must be positive, not {value!r}")
            if integral:
                object.__setattr__(self, field.name, int(value))


@dataclass(frozen=True)
class HandlerRun:
    runtime: str
    bundle_dir: Path
    entrypoint: str
    params: dict[str, Any]
    range: tuple[int, int] | None
    limits: SandboxLimits
    slot: int = 0


@dataclass(frozen=True)
class HandlerResult:
    rows: list[dict[str, Any]]
    logs: list[str]
    duration_seconds: float


def uid_base() -> int:
    """TRACE_UDF_UID_BASE (trace_web/settings/udf.py) when Django is configured, else the
    environment, else 61000: slot n runs as uid base + n."""
    try:
        from django.conf import settings

        if settings.configured:
            return int(getattr(settings, "TRACE_UDF_UID_BASE", UID_BASE_DEFAULT))
    except ImportError:
        pass
    return int(os.environ.get("TRACE_UDF_UID_BASE", UID_BASE_DEFAULT))


@functools.cache
def sandbox_probe() -> dict[str, Any]:
    """Which layers this machine can apply: the Landlock ABI (0: none), seccomp filters,
    uid switching (the worker runs as root), bubblewrap (optional: used when it works
    here) and the missing required ones."""
    abi = _confine.landlock_abi()
    seccomp = False
    try:
        status = Path("/proc/self/status").read_text()
        seccomp = "Seccomp:" in status
    except OSError:
        pass
    seccomp = seccomp and os.uname().machine in _confine.AUDIT_ARCH
    uid_switch = os.geteuid() == 0
    missing = []
    if abi < 1:
        missing.append("Landlock (kernel 5.13+ with landlock in the LSM list)")
    if not seccomp:
        missing.append(f"seccomp filters on {os.uname().machine}")
    if not uid_switch:
        missing.append("uid switching (the udf worker must run as root to drop to a slot uid)")
    return {
        "landlock_abi": abi,
        "landlock_net": abi >= 4,
        "landlock_scopes": abi >= 6,
        "seccomp": seccomp,
        "uid_switch": uid_switch,
        "bwrap": shutil.which("bwrap") is not None,
        "bwrap_used": _bwrap() is not None,
        "runtimes": ["python", *(["node"] if _node_available() else [])],
        "missing": missing,
    }


# The installed distributions a handler may import, with what they require: ctx.abi's. The
# rest of the worker's site-packages (Django, the database drivers, Celery) stays out of reach.
KIT_DISTRIBUTIONS = ("eth-abi", "pycryptodome")


@functools.cache
def kit_modules() -> tuple[tuple[str, str], ...]:
    """(top-level module name, path) of every importable top-level module of
    KIT_DISTRIBUTIONS and of the distributions they require (extras left out), and
    (`name.dist-info`, path) of their metadata."""
    import importlib.metadata as metadata
    import re

    seen: set[str] = set()
    pending = list(KIT_DISTRIBUTIONS)
    modules: dict[str, str] = {}
    while pending:
        name = re.sub(r"[-_.]+", "-", pending.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                pending.append(re.match(r"[A-Za-z0-9._-]+", requirement).group())
        for top in {f.parts[0] for f in dist.files or [] if len(f.parts) >= 1}:
            path = str(dist.locate_file(top))
            if top.endswith(".dist-info") and os.path.isdir(path):
                modules[top] = path  # its metadata: some read their own version at import
            elif os.path.isdir(path) and os.path.isfile(os.path.join(path, "__init__.py")):
                modules[top] = path
            elif top.endswith(".py") and os.path.isfile(path):
                modules[top[:-3]] = path
    return tuple(sorted(modules.items()))


# bubblewrap's extra layer: new pid, net, ipc, uts and cgroup namespaces and a read-only view
# of the file system, around the child (which still applies every layer itself). Run by root,
# bwrap needs no user namespace, so the child's own uid switch works inside it.
_BWRAP_FLAGS = (
    "--unshare-pid",
    "--unshare-net",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--die-with-parent",
    "--ro-bind",
    "/",
    "/",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
)


@functools.cache
def _bwrap() -> str | None:
    """The bwrap binary when it works on this machine (`TRACE_UDF_BWRAP=0` turns it off):
    a trial run of `true` in the namespaces it would make."""
    path = shutil.which("bwrap")
    if not path or os.environ.get("TRACE_UDF_BWRAP", "1") == "0" or os.geteuid() != 0:
        return None
    try:
        done = subprocess.run(
            [path, *_BWRAP_FLAGS, "--", "/bin/true"], capture_output=True, timeout=10, env={}
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if done.returncode == 0 else None


def _bwrap_prefix(tmp: str) -> list[str]:
    path = _bwrap()
    if path is None:
        return []
    return [path, *_BWRAP_FLAGS, "--bind", tmp, tmp, "--"]


def _node_available() -> bool:
    try:
        node_runtime()
    except SandboxUnavailable:
        return False
    return True


@functools.cache
def node_runtime() -> tuple[str, tuple[str, ...]]:
    """(the node binary, the files its exec needs execute on: itself and its ELF
    interpreter); SandboxUnavailable without a Node.js 18+ (`TRACE_UDF_NODE` or PATH)."""
    node = os.environ.get("TRACE_UDF_NODE") or shutil.which("node")
    if not node:
        raise SandboxUnavailable("no node binary for the node runtime (set TRACE_UDF_NODE)")
    node = os.path.realpath(node)
    try:
        with open(node, "rb") as binary:
            header = binary.read(1 << 16)
    except OSError as exc:
        raise SandboxUnavailable(f"the node runtime {node}: {exc.strerror}") from None
    interpreter = _elf_interpreter(header)
    if interpreter is None:
        raise SandboxUnavailable(f"{node}: not a dynamically linked ELF executable")
    return node, (node, os.path.realpath(interpreter))


def _elf_interpreter(header: bytes) -> str | None:
    """The PT_INTERP path of a 64-bit little-endian ELF, from its first bytes."""
    if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        return None
    (phoff,) = struct.unpack_from("<Q", header, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
    for i in range(phnum):
        offset = phoff + i * phentsize
        (kind,) = struct.unpack_from("<I", header, offset)
        if kind == 3:  # PT_INTERP
            (start,) = struct.unpack_from("<Q", header, offset + 8)
            (size,) = struct.unpack_from("<Q", header, offset + 32)
            return header[start : start + size].rstrip(b"\0").decode()
    return None


def _node_fields(run: HandlerRun) -> dict[str, Any]:
    node, execute = node_runtime()
    return {
        "node": node,
        "node_execute": list(execute),
        "handler": {
            "params": run.params,
            "range": list(run.range) if run.range is not None else None,
            "entrypoint": run.entrypoint,
            "limits": dataclasses.asdict(run.limits),
        },
    }


def _python_paths() -> tuple[list[str], list[str]]:
    """(import paths beyond the bundle, extra read-only paths) of the child's interpreter:
    the standard library and its extension modules, read only; the interpreter's own lib dir
    for libpython. (ctx.abi's packages come one by one: `kit_modules`.)"""
    paths = sysconfig.get_paths()
    stdlib = paths["stdlib"]
    dynload = os.path.join(stdlib, "lib-dynload")
    imports = [stdlib] + ([dynload] if os.path.isdir(dynload) else [])
    read_only = [p for p in _LIBRARY_DIRS if os.path.exists(p)]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and os.path.isdir(libdir) and not any(libdir.startswith(p + "/") for p in read_only):
        read_only.append(libdir)
    return imports, read_only


class _Supervisor:
    def __init__(
        self, run: HandlerRun, channel: TaskChannel, sock: socket.socket, stderr: Any
    ) -> None:
        self.run = run
        self.stderr = stderr
        self.deadline = time.monotonic() + run.limits.wall_seconds
        self.channel = channel
        self.sock = sock
        self.buffer = b""
        self.logs: list[str] = []
        self.dropped = 0
        self.ready = False  # the child said it is confined: user code may run from here on

    def send(self, message: dict[str, Any]) -> None:
        """One frame to the child, within the wall clock: a child that stops reading (a large
        query answer it never takes) cannot hold the supervisor past its deadline."""
        data = json.dumps(message, separators=(",", ":"), default=str).encode()
        self.sock.settimeout(max(self.deadline - time.monotonic(), 0.01))
        try:
            self.sock.sendall(_HEADER.pack(b"m", len(data)) + data)
        except TimeoutError:
            raise HandlerFailed(
                "timeout", f"the handler ran past {self.run.limits.wall_seconds}s"
            ) from None
        except OSError as exc:
            raise HandlerFailed(
                "protocol", f"the handler's process stopped reading: {exc}"
            ) from None
        finally:
            self.sock.setblocking(True)

    def frames(self) -> list[tuple[bytes, Any]]:
        """The complete frames received so far; size caps checked as soon as a header is in."""
        limits = self.run.limits
        out = []
        while len(self.buffer) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(self.buffer)
            if kind == b"r":
                if size > limits.output_bytes:
                    raise HandlerFailed(
                        "output_too_large",
                        f"the handler's rows are {size} bytes as JSON, over the "
                        f"{limits.output_bytes}-byte limit",
                    )
            elif kind == b"m":
                if size > limits.message_bytes:
                    raise HandlerFailed(
                        "protocol", f"a message of {size} bytes is over {limits.message_bytes}"
                    )
            else:
                raise HandlerFailed("protocol", f"unknown frame kind {kind!r}")
            if len(self.buffer) < _HEADER.size + size:
                break
            data = self.buffer[_HEADER.size : _HEADER.size + size]
            self.buffer = self.buffer[_HEADER.size + size :]
            try:
                out.append((kind, json.loads(data)))
            except ValueError:
                raise HandlerFailed("protocol", "a message that is not JSON") from None
        return out

    def log(self, message: Any) -> None:
        if not isinstance(message, str):
            raise HandlerFailed("protocol", "a log message that is not a string")
        if len(self.logs) >= LOG_LINES:
            self.dropped += 1
        else:
            self.logs.append(message[:LOG_LINE_CHARS])

    def handle(self, kind: bytes, message: Any) -> list[dict[str, Any]] | None:
        """Act on one frame; the rows once the result is in."""
        if kind == b"r":
            if not isinstance(message, list) or not all(isinstance(r, dict) for r in message):
                raise HandlerFailed("malformed_output", "the result is not a list of objects")
            return message
        kind_ = message.get("type") if isinstance(message, dict) else None
        if kind_ == "query" and isinstance(message.get("sql"), str):
            try:
                result = self.channel.query(message["sql"])
            except ChannelError as exc:
                self.send({"ok": False, "code": exc.code, "message": exc.message})
            else:
                self.send({"ok": True, "result": result})
        elif kind_ == "heartbeat":
            self.channel.heartbeat()
        elif kind_ == "log":
            self.log(message.get("message"))
        elif kind_ == "ready" and not self.ready:
            self.ready = True
        elif kind_ == "unavailable" and not self.ready:
            # Only while the child confines itself, before any user code is imported: after
            # `ready` the handler could forge it, to pass its own failure off as ops'.
            raise SandboxUnavailable(str(message.get("message")))
        elif kind_ == "error" and message.get("code") in _CHILD_CODES:
            text = str(message.get("message", ""))[:LOG_LINE_CHARS]
            if message.get("traceback"):
                text += "\n" + str(message["traceback"])[: 4 * LOG_LINE_CHARS]
            raise HandlerFailed(message["code"], text)
        else:
            raise HandlerFailed("protocol", f"an unexpected message {str(message)[:200]!r}")
        return None


def uid_processes(uid: int) -> list[int]:
    """The live (not zombie) processes running as `uid`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[0] not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def _kill_uid(uid: int) -> None:
    """SIGKILL every process still running as the slot's uid (one that left the process
    group) and wait until they are gone, so the slot's next run starts with none (and its
    RLIMIT_NPROC count at zero). Bounded: a process stuck in the kernel is left to die."""
    for _ in range(200):
        pids = uid_processes(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def run_handler(
    run: HandlerRun,
    channel: TaskChannel,
    *,
    stop_event: threading.Event | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> HandlerResult:
    """Run the handler once in a fresh sandboxed process and return its rows and logs;
    HandlerFailed with a code when it fails, SandboxUnavailable when a layer is missing.
    `stop_event` set (lease lost, task cancelled) kills the run: HandlerFailed("killed")."""
    if run.runtime == "node":
        node_runtime()  # SandboxUnavailable when there is none
    elif run.runtime != "python":
        raise SandboxUnavailable(f"no sandbox runtime {run.runtime!r}")
    probe = sandbox_probe()
    if probe["missing"]:
        raise SandboxUnavailable("missing " + "; ".join(probe["missing"]))
    if not isinstance(run.limits, SandboxLimits):
        raise TypeError("HandlerRun.limits must be a SandboxLimits")
    module, _, function = run.entrypoint.partition(":")
    if not module.isidentifier() or (function and not function.isidentifier()):
        raise HandlerFailed("exception", f"entrypoint {run.entrypoint!r} is not module[:function]")
    bundle_dir = Path(run.bundle_dir).resolve()
    if not bundle_dir.is_dir():
        raise HandlerFailed("exception", f"bundle directory {bundle_dir} does not exist")
    uid = uid_base() + int(run.slot)
    with _slot_lock(uid):
        return _run_locked(run, channel, uid, bundle_dir, stop_event, heartbeat_seconds)


@contextlib.contextmanager
def _slot_lock(uid: int):
    """One run at a time per uid, across processes: the end of a run kills everything under
    its uid, and RLIMIT_NPROC counts per uid, so two runs sharing a slot would kill or starve
    each other. A second run of the slot waits (its wall clock starts once it has the lock)."""
    locks = Path(tempfile.gettempdir()) / "trace-sandbox-locks"
    locks.mkdir(mode=0o700, exist_ok=True)
    with open(locks / f"uid-{uid}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_locked(
    run: HandlerRun,
    channel: TaskChannel,
    uid: int,
    bundle_dir: Path,
    stop_event: threading.Event | None,
    heartbeat_seconds: float,
) -> HandlerResult:
    limits = run.limits
    imports, read_only = _python_paths()
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="trace-sandbox-")
    os.chown(tmp, uid, uid)
    os.chmod(tmp, 0o700)
    parent, child = socket.socketpair()
    # The child's stderr (a crash before the protocol): an unnamed file of the worker's, never
    # a path in the run's directory, where the handler could swap it for a link to a secret.
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = None
    try:
        proc = subprocess.Popen(
            [
                *_bwrap_prefix(tmp),
                *(sys.executable, "-I", "-S", "-B", str(_CHILD), str(child.fileno())),
            ],
            env={
                "PYTHONDONTWRITEBYTECODE": "1",
                "TMPDIR": tmp,
                "HOME": tmp,
                "LANG": "C.UTF-8",
                **_coverage_env(tmp),
            },
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            close_fds=True,
            pass_fds=(child.fileno(),),
            start_new_session=True,
        )
        child.close()
        supervisor = _Supervisor(run, channel, parent, stderr)
        supervisor.send(
            {
                "uid": uid,
                "gid": uid,
                "limits": dataclasses.asdict(limits),
                "tmp": tmp,
                "confine_dir": str(_HERE),
                "import_paths": [str(bundle_dir), *imports],
                "kit": [list(module) for module in kit_modules()],
                "runtime": run.runtime,
                **(_node_fields(run) if run.runtime == "node" else {}),
                "read_only": read_only,
                "entrypoint": run.entrypoint,
                "params": run.params,
                "range": list(run.range) if run.range is not None else None,
            }
        )
        rows = _supervise(supervisor, proc, started, stop_event, heartbeat_seconds)
        logs = supervisor.logs + (
            [f"... {supervisor.dropped} more log lines dropped"] if supervisor.dropped else []
        )
        return HandlerResult(rows=rows, logs=logs, duration_seconds=time.monotonic() - started)
    finally:
        parent.close()
        stderr.close()
        if proc is not None:
            _reap(proc)
        _kill_uid(uid)
        _coverage_collect(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _coverage_env(tmp: str) -> dict[str, str]:
    """When this worker is itself measured (the test suite sets COVERAGE_PROCESS_START), the
    child measures its own code too (docs/testing.md, Coverage): coverage's location, the
    data file in the run's directory and the source to measure; never otherwise."""
    if not os.environ.get("COVERAGE_PROCESS_START"):
        return {}
    try:
        import coverage
    except ImportError:
        return {}
    path = str(Path(coverage.__file__).resolve().parents[1])
    spec = os.pathsep.join((path, os.path.join(tmp, COVERAGE_FILE), str(_HERE)))
    return {"TRACE_SANDBOX_COVERAGE": spec}


def _coverage_collect(tmp: str) -> None:
    """Move the child's coverage data next to the run's other data files. Only a regular file
    is taken, read through a descriptor that does not follow links: the handler could have
    put a link to a secret in its place."""
    start = os.environ.get("COVERAGE_PROCESS_START")
    if not start:
        return
    try:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # no link, and no FIFO to block on
        fd = os.open(os.path.join(tmp, COVERAGE_FILE), flags)
    except OSError:
        return  # killed before saving, or not measured
    with os.fdopen(fd, "rb") as source:
        if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
            return
        # Beside the worker's own data files, named so that `coverage combine` takes it.
        data_file = Path(os.environ.get("COVERAGE_FILE") or Path(start).parent / ".coverage")
        target = data_file.with_name(
            f"{data_file.name}.sandbox.{os.getpid()}.{secrets.token_hex(4)}"
        )
        with open(target, "wb") as out:
            shutil.copyfileobj(source, out)
    try:  # a child killed while saving leaves a torn file, which `coverage combine` refuses
        import coverage

        coverage.CoverageData(basename=str(target)).read()
    except Exception:
        target.unlink(missing_ok=True)


def _reap(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _supervise(
    supervisor: _Supervisor,
    proc: subprocess.Popen,
    started: float,
    stop_event: threading.Event | None,
    heartbeat_seconds: float,
) -> list[dict[str, Any]]:
    limits = supervisor.run.limits
    deadline = supervisor.deadline = started + limits.wall_seconds
    next_heartbeat = started + heartbeat_seconds
    sock = supervisor.sock
    while True:
        now = time.monotonic()
        if stop_event is not None and stop_event.is_set():
            raise HandlerFailed("killed", "the run was stopped (lease lost or task cancelled)")
        if now >= deadline:
            raise HandlerFailed("timeout", f"the handler ran past {limits.wall_seconds}s")
        if now >= next_heartbeat:
            supervisor.channel.heartbeat()
            next_heartbeat = now + heartbeat_seconds
        ready, _, _ = select.select([sock], [], [], min(0.05, max(deadline - now, 0)))
        if not ready:
            continue
        data = sock.recv(1 << 20)
        if not data:
            return _ended(supervisor, proc, stop_event)
        supervisor.buffer += data
        for kind, message in supervisor.frames():
            rows = supervisor.handle(kind, message)
            if rows is not None:
                return rows


def _ended(
    supervisor: _Supervisor, proc: subprocess.Popen, stop_event: threading.Event | None
) -> list[dict[str, Any]]:
    """The child closed its socket without a result: why. Its exit is awaited within the
    wall clock (a handler may close the socket and keep running)."""
    limits = supervisor.run.limits
    usage = None
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        if stop_event is not None and stop_event.is_set():
            raise HandlerFailed("killed", "the run was stopped (lease lost or task cancelled)")
        if time.monotonic() >= supervisor.deadline:
            raise HandlerFailed("timeout", f"the handler ran past {limits.wall_seconds}s")
        time.sleep(0.01)
    code = proc.returncode
    if code > 128 and proc.args[0] == _bwrap():
        code = 128 - code  # bwrap relays a child killed by signal N as exit status 128 + N
    cpu = (usage.ru_utime + usage.ru_stime) if usage else 0.0
    # SIGXCPU comes only from RLIMIT_CPU's soft limit; SIGKILL from its hard limit (a second
    # later) when the handler ignores SIGXCPU. rusage is finer than the kernel's tick-based
    # limit check, so it may read a little under the limit.
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu >= limits.cpu_seconds * 0.9):
        raise HandlerFailed("cpu_limit", f"the handler used its {limits.cpu_seconds}s of CPU")
    if code == -signal.SIGKILL:
        raise HandlerFailed("memory_limit", "the handler was killed (out of memory)")
    size = supervisor.stderr.seek(0, os.SEEK_END)
    supervisor.stderr.seek(max(size - 2000, 0))
    stderr = supervisor.stderr.read().decode(errors="replace")
    if "MemoryError" in stderr or "JavaScript heap out of memory" in stderr:
        raise HandlerFailed("memory_limit", "the handler ran out of memory")
    raise HandlerFailed(
        "protocol", f"the handler's process exited ({code}) without a result: {stderr.strip()}"
    )
