"""The child runner: started as `python -I -S _child.py FD` by the supervisor, it reads its
run from the socket FD, confines itself (rlimits, the slot's uid, no_new_privs, Landlock,
seccomp) and only then imports the handler and calls it. Standard library only.

Every import after the confinement goes through /proc/self/fd/N paths of directories opened
before it: the handler's uid could not walk to them otherwise (a runtime under /root, the
bundle under the worker's private temporary directory), and Landlock still checks the real
hierarchy beneath each one.
"""

import json
import os
import socket
import struct
import sys
import traceback

sys.dont_write_bytecode = True
_FD = int(sys.argv[1])
_HEADER = struct.Struct(">cI")
_sock = socket.socket(fileno=_FD)
_sock.setblocking(True)


def _send(message, kind=b"m"):
    data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    _sock.sendall(_HEADER.pack(kind, len(data)) + data)


def _recv_exact(n):
    chunks = []
    while n:
        chunk = _sock.recv(min(n, 1 << 20))
        if not chunk:
            os._exit(70)  # the supervisor is gone
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv():
    _kind, size = _HEADER.unpack(_recv_exact(_HEADER.size))
    return json.loads(_recv_exact(size))


class QueryRefused(Exception):
    """The task query API refused the SQL; `.code` is the API's error code."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Context:
    """What a handler gets: `params`, `range` ((start, end), end-exclusive, or None),
    `query(sql)`, `log(msg)`, `heartbeat()` and `abi` (the eth-abi helpers, imported on first
    use)."""

    QueryRefused = QueryRefused

    def __init__(self, params, block_range, abi_path, message_bytes):
        self.params = params
        self._message_bytes = message_bytes
        self.range = tuple(block_range) if block_range is not None else None
        self._abi_path = abi_path
        self._abi = None

    def query(self, sql):
        """`{"columns": [...], "rows": [[...]], "truncated": bool}`; QueryRefused when the
        task query API refuses it."""
        if not isinstance(sql, str):
            raise TypeError("ctx.query(sql): sql must be a str")
        if len(sql.encode()) > self._message_bytes - 64:
            raise ValueError(f"ctx.query(sql): the SQL is over {self._message_bytes - 64} bytes")
        _send({"type": "query", "sql": sql})
        reply = _recv()
        if not reply.get("ok"):
            raise QueryRefused(reply.get("code", "refused"), reply.get("message", ""))
        return reply["result"]

    def log(self, message):
        """One log line (the supervisor keeps 4,096 characters of it)."""
        _send({"type": "log", "message": str(message)[:4096]})

    def heartbeat(self):
        _send({"type": "heartbeat"})

    @property
    def abi(self):
        if self._abi is None:
            import importlib.util

            if self._abi_path is None:
                raise ImportError("ctx.abi is not available in this sandbox")
            spec = importlib.util.spec_from_file_location("trace_abi", self._abi_path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._abi = module
        return self._abi


class _LogStream:
    """print() in a handler goes to its logs, a line at a time."""

    def __init__(self):
        self._buffer = ""

    def write(self, text):
        self._buffer += text
        if len(self._buffer) > 65536:  # a line that never ends
            self._buffer += "\n"
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            _send({"type": "log", "message": line[:4096]})
        return len(text)

    def flush(self):
        if self._buffer:
            _send({"type": "log", "message": self._buffer[:4096]})
            self._buffer = ""


def _confine(run):
    """Open what the handler may read, then apply every layer; raises Unavailable."""
    sys.path.insert(0, run["confine_dir"])
    import _confine as confine

    sys.path.pop(0)
    flags = os.O_PATH | os.O_CLOEXEC
    read_only = [os.open(path, flags) for path in run["read_only"]]
    read_write = [os.open(run["tmp"], flags)]
    imports = [os.open(path, flags) for path in run["import_paths"]]
    # ctx.abi: the one file of the sandbox package the handler may read
    abi_file = os.path.join(run["confine_dir"], "abi.py")
    abi = [os.open(abi_file, flags)] if os.path.exists(abi_file) else []
    confine.rlimits_set(run["limits"])
    confine.identity_drop(run["uid"], run["gid"])
    confine.no_new_privs()
    confine.landlock_restrict(read_only + imports + abi, read_write)
    confine.seccomp_install()
    os.chdir(f"/proc/self/fd/{read_write[0]}")
    sys.path[:] = [f"/proc/self/fd/{fd}" for fd in imports]
    return f"/proc/self/fd/{abi[0]}" if abi else None


def _short_traceback(exc, bundle_prefix):
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename.startswith(bundle_prefix)
    ][-8:]
    lines = []
    for frame in frames:
        name = frame.filename[len(bundle_prefix) :].lstrip("/")
        lines.append(f'  File "{name}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {frame.line}")
    return "\n".join(lines)


def _check_rows(rows, output_bytes):
    if not isinstance(rows, list):
        return (
            "malformed_output",
            f"handle() must return a list of objects, not {type(rows).__name__}",
        )
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            return "malformed_output", f"row {i} is a {type(row).__name__}, not an object"
    try:
        data = json.dumps(rows, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        return "malformed_output", f"the rows are not JSON: {exc}"
    if len(data.encode()) > output_bytes:
        return "output_too_large", f"the rows are over {output_bytes} bytes as JSON"
    return None, data


def main():
    run = _recv()
    try:
        abi_path = _confine(run)
    except Exception as exc:  # Unavailable or an OSError while opening the paths
        _send({"type": "unavailable", "message": f"{type(exc).__name__}: {exc}"})
        return 3
    _send({"type": "ready"})
    bundle_prefix = sys.path[0]
    sys.stdout = _LogStream()
    ctx = Context(run["params"], run["range"], abi_path, run["limits"]["message_bytes"])
    module_name, _, function = run["entrypoint"].partition(":")
    try:
        import importlib

        module = importlib.import_module(module_name)
        handle = getattr(module, function or "handle", None)
        if not callable(handle):
            raise AttributeError(f"{module_name} has no function {function or 'handle'}()")
        rows = handle(ctx)
        sys.stdout.flush()
    except MemoryError:
        _send({"type": "error", "code": "memory_limit", "message": "the handler ran out of memory"})
        return 1
    except BaseException as exc:  # SystemExit too: report it, do not obey it
        message = f"{type(exc).__name__}: {exc}"
        tb = _short_traceback(exc, bundle_prefix)
        _send({"type": "error", "code": "exception", "message": message, "traceback": tb})
        return 1
    code, data = _check_rows(rows, run["limits"]["output_bytes"])
    if code:
        _send({"type": "error", "code": code, "message": data})
        return 1
    payload = data.encode()
    _sock.sendall(_HEADER.pack(b"r", len(payload)) + payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
