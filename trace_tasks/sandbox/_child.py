"""The child runner: started as `python -I -S _child.py FD` by the supervisor, it reads its
run from the socket FD, confines itself (rlimits, the slot's uid, no_new_privs, Landlock,
seccomp) and only then imports the handler and calls it. Standard library only.

Every import after the confinement goes through /proc/self/fd/N paths of directories opened
before it: the handler's uid could not walk to them otherwise (a runtime under /root, the
bundle under the worker's private temporary directory), and Landlock still checks the real
hierarchy beneath each one.
"""

import os
import sys


def _coverage_start():
    """Only in a measured test run (the supervisor sets TRACE_SANDBOX_COVERAGE when its
    worker is under coverage): measure this child from here on, coverage imported whole before
    the confinement and saving into the run's directory, the one place it may write."""
    spec = os.environ.pop("TRACE_SANDBOX_COVERAGE", "")
    if not spec:
        return []
    path, data_file, source = spec.split(os.pathsep)
    sys.path.insert(0, path)
    try:
        import coverage
        import coverage.sqldata  # nothing may be imported from there once confined
    except ImportError:
        return []
    finally:
        sys.path.pop(0)
    measured = coverage.Coverage(data_file=data_file, config_file=False)
    measured.set_option("run:source", [source])
    measured.start()
    return [measured]


_measured = _coverage_start()  # saved by _final
if _measured and __name__ == "__main__":
    # Coverage sees only frames started after it: run this file again as a module, so its
    # definitions are measured too, and let that copy do the work.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _child

    sys.path.pop(0)
    _child._measured = _measured
    sys.exit(_child.main())

import contextlib  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import traceback  # noqa: E402

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
            import importlib.machinery

            # a /proc/self/fd path has no .py suffix: name the loader
            loader = importlib.machinery.SourceFileLoader("trace_abi", self._abi_path)
            spec = importlib.util.spec_from_loader("trace_abi", loader)
            module = importlib.util.module_from_spec(spec)
            sys.modules["trace_abi"] = module  # dataclasses look their module up there
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


class _KitFinder:
    """Imports ctx.abi's packages, each by its own descriptor: only those of site-packages are
    reachable (not Django, not the database drivers)."""

    def __init__(self, modules):
        self._modules = modules  # top-level name -> /proc/self/fd/N (a package dir or a .py)

    def find_spec(self, name, path=None, target=None):
        import importlib.machinery
        import importlib.util

        where = self._modules.get(name)
        if where is None:
            return None
        if os.path.isdir(where):
            init = f"{where}/__init__.py"
            loader = importlib.machinery.SourceFileLoader(name, init)
            return importlib.util.spec_from_file_location(
                name, init, loader=loader, submodule_search_locations=[where]
            )
        loader = importlib.machinery.SourceFileLoader(name, where)
        return importlib.util.spec_from_loader(name, loader)

    def find_distributions(self, context=None):
        """importlib.metadata's hook: the kit's own dist-info, so `version("eth-typing")`
        answers (other distributions are not found: they are not there)."""
        import importlib.metadata
        import pathlib

        wanted = getattr(context, "name", None)
        for key, where in self._modules.items():
            if not key.endswith(".dist-info"):
                continue
            dist = importlib.metadata.PathDistribution(pathlib.Path(where))
            if wanted is None or _normalized(dist.metadata["Name"]) == _normalized(wanted):
                yield dist


def _normalized(name):
    import re

    return re.sub(r"[-_.]+", "-", name or "").lower()


def _rebased(path, rebase):
    for real, fd_path in rebase.items():
        if path == real or path.startswith(real + "/"):
            return fd_path + path[len(real) :]
    return path


def _confine(run):
    """Open what the handler may read, then apply every layer; raises Unavailable."""
    sys.path.insert(0, run["confine_dir"])
    import _confine as confine

    sys.path.pop(0)
    flags = os.O_PATH | os.O_CLOEXEC
    read_only = [os.open(path, flags) for path in run["read_only"]]
    read_write = [os.open(run["tmp"], flags)]
    imports = [os.open(path, flags) for path in run["import_paths"]]
    kit = {name: os.open(path, flags) for name, path in run["kit"]}
    # ctx.abi: the one file of the sandbox package the handler may read
    abi_file = os.path.join(run["confine_dir"], "abi.py")
    abi = [os.open(abi_file, flags)] if os.path.exists(abi_file) else []
    confine.rlimits_set(run["limits"])
    confine.identity_drop(run["uid"], run["gid"])
    confine.no_new_privs()
    confine.landlock_restrict(read_only + imports + list(kit.values()) + abi, read_write)
    confine.seccomp_install()
    os.chdir(f"/proc/self/fd/{read_write[0]}")
    sys.path[:] = [f"/proc/self/fd/{fd}" for fd in imports]
    # Packages imported before the switch (ctypes, by _confine) keep their real __path__,
    # which the slot uid cannot reach: point them at the descriptors too.
    fd_paths = zip(run["import_paths"], imports, strict=True)
    rebase = {path: f"/proc/self/fd/{fd}" for path, fd in fd_paths}
    for module in list(sys.modules.values()):
        paths = getattr(module, "__path__", None)
        if isinstance(paths, list):
            module.__path__ = [_rebased(p, rebase) for p in paths]
    sys.path_importer_cache.clear()
    sys.meta_path.append(_KitFinder({name: f"/proc/self/fd/{fd}" for name, fd in kit.items()}))
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


def _node_exec(run):
    """Confine this process for the Node runtime and exec node on _child.mjs: every layer
    holds across execve. Returns only by raising (Unavailable or an OSError)."""
    sys.path.insert(0, run["confine_dir"])
    import _confine as confine

    sys.path.pop(0)
    flags = os.O_PATH | os.O_CLOEXEC
    read_only = [os.open(path, flags) for path in run["read_only"]]
    read_write = [os.open(run["tmp"], flags)]
    bundle = os.open(run["import_paths"][0], flags)
    runner = os.open(os.path.join(run["confine_dir"], "_child.mjs"), flags)
    execute = tuple(os.open(path, flags) for path in run["node_execute"])
    # Node reads an OpenSSL config at start: an empty one of the run's own.
    openssl = os.path.join(run["tmp"], ".openssl.cnf")
    with open(openssl, "w"):
        pass
    os.chown(openssl, run["uid"], run["gid"])
    confine.rlimits_set(run["limits"], address_space=False)
    confine.identity_drop(run["uid"], run["gid"])
    confine.no_new_privs()
    confine.landlock_restrict([*read_only, bundle, runner], read_write, execute)
    confine.seccomp_install()
    os.chdir(f"/proc/self/fd/{read_write[0]}")
    for fd in (bundle, runner):
        os.set_inheritable(fd, True)
    os.set_inheritable(_FD, True)
    heap_mib = max(16, run["limits"]["memory_bytes"] * 3 // 4 // (1024 * 1024))
    _send({"type": "ready"})
    env = dict(os.environ)
    env.update(OPENSSL_CONF=openssl, UV_USE_IO_URING="0", TRACE_RUN=json.dumps(run["handler"]))
    os.execve(  # noqa: S606 - the node runtime, by its absolute path
        run["node"],
        [
            "node",
            f"--max-old-space-size={heap_mib}",
            "--preserve-symlinks",
            "--preserve-symlinks-main",
            f"/proc/self/fd/{runner}",
            str(_FD),
            f"/proc/self/fd/{bundle}",
        ],
        env,
    )


def _final(message=None, *, result=None):
    """The last frame to the supervisor, which kills the process group once it has it: a
    measured run's coverage is saved first."""
    for measured in _measured:
        # Out of memory or of file size: the run's answer matters, not its coverage.
        with contextlib.suppress(BaseException):
            measured.stop()
            measured.save()
    _measured.clear()
    if result is not None:
        _sock.sendall(_HEADER.pack(b"r", len(result)) + result)
    else:
        _send(message)


def main():
    return _main(_recv())


def _main(run):
    if run.get("runtime") == "node":
        try:
            _node_exec(run)
        except Exception as exc:  # Unavailable or an OSError while opening the paths
            _final({"type": "unavailable", "message": f"{type(exc).__name__}: {exc}"})
            return 3
    try:
        abi_path = _confine(run)
    except Exception as exc:  # Unavailable or an OSError while opening the paths
        _final({"type": "unavailable", "message": f"{type(exc).__name__}: {exc}"})
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
        _final(
            {"type": "error", "code": "memory_limit", "message": "the handler ran out of memory"}
        )
        return 1
    except BaseException as exc:  # SystemExit too: report it, do not obey it
        message = f"{type(exc).__name__}: {exc}"
        tb = _short_traceback(exc, bundle_prefix)
        _final({"type": "error", "code": "exception", "message": message, "traceback": tb})
        return 1
    code, data = _check_rows(rows, run["limits"]["output_bytes"])
    if code:
        _final({"type": "error", "code": code, "message": data})
        return 1
    _final(result=data.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
