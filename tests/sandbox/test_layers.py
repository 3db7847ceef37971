"""Each layer of the sandbox stops a handler that tries to cross it; the kernel layers are
also checked one at a time in a bare process (so one layer cannot hide another's gap), and a
missing layer refuses the run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from tests.sandbox.helpers import SLOT, run
from trace_tasks import sandbox
from trace_tasks.sandbox import _confine

PROBE = """
import os, signal, socket

def attempt(f):
    try:
        f()
        return "allowed"
    except OSError as exc:
        return type(exc).__name__

def handle(ctx):
    return [{name: attempt(f) for name, f in CHECKS.items()}]
"""


def probe(tmp_path, checks: str, **kwargs) -> dict:
    """Run a handler that tries each `checks` entry (a dict literal of lambdas)."""
    source = PROBE + "\nCHECKS = " + textwrap.dedent(checks)
    return run(tmp_path, source, **kwargs).rows[0]


def test_the_child_starts_with_an_empty_environment_under_the_slots_uid(tmp_path):
    os.environ["TRACE_SECRET_FOR_TEST"] = "leak"
    try:
        rows = run(
            tmp_path,
            """
            import os, sys
            def handle(ctx):
                return [{"env": sorted(os.environ), "uid": os.getuid(), "gid": os.getgid(),
                         "groups": os.getgroups(), "flags": [sys.flags.isolated,
                         sys.flags.no_site], "fds": [fd for fd in range(64) if is_open(fd)]}]

            def is_open(fd):
                try:
                    os.fstat(fd)
                    return True
                except OSError:
                    return False
            """,
        ).rows
    finally:
        del os.environ["TRACE_SECRET_FOR_TEST"]
    (row,) = rows
    assert row["env"] == ["HOME", "LANG", "PYTHONDONTWRITEBYTECODE", "TMPDIR"]
    uid = sandbox.uid_base() + SLOT
    assert (row["uid"], row["gid"], row["groups"]) == (uid, uid, [])
    assert row["flags"] == [1, 1]
    assert len(row["fds"]) < 16  # std streams, its socket, the confined dirs: no worker fd


def test_landlock_confines_reads_to_the_runtime_and_bundle_and_writes_to_its_tmp(tmp_path):
    package = os.path.dirname(sandbox.__file__)
    project = os.path.dirname(os.path.dirname(package))
    result = probe(
        tmp_path,
        f"""{{
        "passwd": lambda: open("/etc/passwd").read(),
        "project": lambda: os.listdir({project!r}),
        "sandbox_source": lambda: open({package!r} + "/_confine.py").read(),
        "worker_environ": lambda: open("/proc/{os.getpid()}/environ").read(),
        "root_home": lambda: os.listdir("/root"),
        "write_elsewhere": lambda: open("/dev/shm/trace-sandbox-test", "w"),
        "exec": lambda: os.execv("/bin/sh", ["sh", "-c", "true"]),
        "write_tmp": lambda: open(os.environ["TMPDIR"] + "/x", "w").write("ok"),
        "read_stdlib": lambda: __import__("decimal"),
        }}""",
    )
    assert result == {
        "passwd": "PermissionError",
        "project": "PermissionError",
        "sandbox_source": "PermissionError",
        "worker_environ": "PermissionError",
        "root_home": "PermissionError",
        "write_elsewhere": "PermissionError",
        "exec": "PermissionError",
        "write_tmp": "allowed",
        "read_stdlib": "allowed",
    }
    assert not os.path.exists("/dev/shm/trace-sandbox-test")


def test_seccomp_refuses_sockets_namespaces_and_new_sessions(tmp_path):
    result = probe(
        tmp_path,
        """{
        "tcp": lambda: socket.socket(),
        "unix": lambda: socket.socket(socket.AF_UNIX),
        "socketpair": lambda: socket.socketpair(),
        "setsid": lambda: os.setsid(),
        "setuid": lambda: os.setuid(61000),
        }""",
    )
    assert set(result.values()) == {"PermissionError"}, result


def test_the_handler_cannot_signal_its_supervisor(tmp_path):
    result = probe(
        tmp_path,
        f"""{{
        "kill_worker": lambda: os.kill({os.getpid()}, signal.SIGTERM),
        "kill_parent": lambda: os.kill(os.getppid(), signal.SIGTERM),
        }}""",
    )
    assert result == {"kill_worker": "PermissionError", "kill_parent": "PermissionError"}


def test_processes_are_capped_and_none_outlives_the_run(tmp_path):
    result = run(
        tmp_path,
        """
        import os, time
        def handle(ctx):
            pids, error = [], None
            try:
                for _ in range(100):
                    pid = os.fork()
                    if pid == 0:
                        time.sleep(60)
                        os._exit(0)
                    pids.append(pid)
            except OSError as exc:
                error = type(exc).__name__
            return [{"pids": pids, "error": error}]
        """,
        max_processes=8,
    )
    (row,) = result.rows
    assert row["error"] == "BlockingIOError" and 0 < len(row["pids"]) < 8
    assert not set(row["pids"]) & set(sandbox.uid_processes(sandbox.uid_base() + SLOT))


def test_a_file_larger_than_the_limit_cannot_be_written(tmp_path):
    with pytest.raises(sandbox.HandlerFailed) as failed:
        run(
            tmp_path,
            """
            import os
            def handle(ctx):
                with open(os.environ["TMPDIR"] + "/big", "wb") as f:
                    f.write(b"x" * 2_000_000)
            """,
            file_size_bytes=1_000_000,
        )
    # SIGXFSZ is ignored by Python, so the write fails with EFBIG
    assert failed.value.code == "exception" and "File too large" in str(failed.value)


def _bare(code: str) -> subprocess.CompletedProcess:
    """`code` in a fresh `python -I -S` with only _confine importable."""
    prelude = f"import sys; sys.path.insert(0, {os.path.dirname(_confine.__file__)!r})\n"
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_landlock_alone_denies_tcp_connect_and_bind():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        done = _bare(
            f"""
            import os, socket, _confine
            _confine.no_new_privs()
            _confine.landlock_restrict([], [])
            for what, f in (("connect", lambda s: s.connect(("127.0.0.1", {port}))),
                            ("bind", lambda s: s.bind(("127.0.0.1", 0)))):
                try:
                    f(socket.socket())
                    print(what, "allowed")
                except OSError as exc:
                    print(what, type(exc).__name__)
            """
        )
    finally:
        listener.close()
    assert done.stdout.split("\n")[:2] == ["connect PermissionError", "bind PermissionError"], (
        done.stderr
    )


def test_seccomp_alone_refuses_socket_with_eperm_and_allows_the_rest():
    done = _bare(
        """
        import os, socket, _confine
        _confine.no_new_privs()
        _confine.seccomp_install()
        try:
            socket.socket()
        except PermissionError as exc:
            print("socket", exc.errno)
        print("pid", os.getpid() > 0)
        """
    )
    assert done.stdout.split() == ["socket", "1", "pid", "True"], done.stderr


def test_the_seccomp_program_checks_the_architecture_first():
    program = _confine.seccomp_program("aarch64")
    assert program[:8] == _confine._op(0x20, 0, 0, 4)  # load seccomp_data.arch
    assert program[8:16] == _confine._op(0x15, 1, 0, _confine.AUDIT_ARCH["aarch64"])
    assert program[16:24] == _confine._op(0x06, 0, 0, _confine.RET_KILL_PROCESS)
    with pytest.raises(_confine.Unavailable, match="no seccomp filter for architecture"):
        _confine.seccomp_program("riscv64")


def test_the_probe_reports_this_machines_layers():
    probe = sandbox.sandbox_probe()
    assert probe["landlock_abi"] == _confine.landlock_abi() >= 1
    assert probe["seccomp"] and probe["uid_switch"] and probe["missing"] == []


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (("trace_tasks.sandbox._confine.landlock_abi", lambda: 0), "Landlock"),
        (("os.geteuid", lambda: 1000), "must run as root"),
    ],
)
def test_a_missing_layer_refuses_the_run_before_any_process_starts(
    tmp_path, monkeypatch, patch, message
):
    marker = tmp_path / "ran"
    monkeypatch.setattr(*patch)
    sandbox.sandbox_probe.cache_clear()
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match=message):
            run(tmp_path, f"def handle(ctx):\n    open({str(marker)!r}, 'w')\n    return []\n")
    finally:
        monkeypatch.undo()
        sandbox.sandbox_probe.cache_clear()
    assert not marker.exists()


def test_a_crash_report_cannot_be_swapped_for_a_link_to_a_worker_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("TOP-SECRET")
    with pytest.raises(sandbox.HandlerFailed) as failed:
        run(
            tmp_path,
            f"""
            import os
            def handle(ctx):
                for name in (".stderr", "stderr"):
                    path = os.path.join(os.environ["TMPDIR"], name)
                    if os.path.exists(path):
                        os.unlink(path)
                    os.symlink({str(secret)!r}, path)
                os.write(2, b"crashing")
                os._exit(9)
            """,
        )
    assert failed.value.code == "protocol"
    assert "crashing" in str(failed.value) and "TOP-SECRET" not in str(failed.value)
