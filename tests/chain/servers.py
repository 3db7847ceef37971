"""Small HTTP servers on 127.0.0.1 for RPC failure drills: one that stalls, one that answers a
fixed status, and a JSON-RPC proxy in front of anvil whose answers a test can rewrite."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

# A hook sees the parsed request body and returns None (forward it) or (status, body) to answer.
Hook = Callable[[Any], tuple[int, Any] | None]


class _Server:
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                owner.requests.append(body)
                status, answer = owner.answer(body)
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout), which is the point of some tests

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval for the loop to notice.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def answer(self, body: Any) -> tuple[int, Any]:
        raise NotImplementedError

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class StallingServer(_Server):
    """Accepts the connection, then says nothing for `stall` seconds (or until closed)."""

    def __init__(self, stall: float = 30.0) -> None:
        super().__init__()
        self.stall = stall

    def answer(self, body: Any) -> tuple[int, Any]:
        self._release.wait(self.stall)
        return 200, {"jsonrpc": "2.0", "id": 1, "result": "0x0"}


class StatusServer(_Server):
    """Answers every request with `status` and a short non-JSON-RPC body."""

    def __init__(self, status: int = 500) -> None:
        super().__init__()
        self.status = status

    def answer(self, body: Any) -> tuple[int, Any]:
        return self.status, b"upstream exploded"


class RpcProxy(_Server):
    """Forwards JSON-RPC to `upstream` unless `hook` answers first; `transform` may rewrite
    the upstream answer (request body, answer) -> answer."""

    def __init__(
        self,
        upstream: str,
        hook: Hook | None = None,
        transform: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        super().__init__()
        self.upstream = upstream
        self.hook = hook
        self.transform = transform
        self.forwarded: list[Any] = []
        self._session = requests.Session()

    def answer(self, body: Any) -> tuple[int, Any]:
        if self.hook is not None:
            answered = self.hook(body)
            if answered is not None:
                return answered
        self.forwarded.append(body)
        upstream = self._session.post(self.upstream, json=body, timeout=30).json()
        if self.transform is not None:
            upstream = self.transform(body, upstream)
        return 200, upstream

    def methods(self) -> list[str]:
        """Every method the proxy saw, batch items included, in order."""
        seen: list[str] = []
        for body in self.requests:
            items = body if isinstance(body, list) else [body]
            seen += [item["method"] for item in items if isinstance(item, dict)]
        return seen

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._session.close()
