"""A webhook receiver for trying alert channels locally (`trace alerts receive`, and the Lite
demo's receiver): it checks each delivery's signature as docs/alerts.md tells a receiver to
(HMAC-SHA256 of "<X-Trace-Timestamp>.<raw body>" with the channel's secret, a timestamp no
older than five minutes), answers 200 with an id Trace records as the provider message id, and
reports one line per delivery. A signature that does not verify is answered 401, so Trace
retries it and it shows in the delivery's error."""

from __future__ import annotations

import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from trace_operators.alert_deliver import signature

MAX_BODY_BYTES = 1 << 20
MAX_SKEW_SECONDS = 300
SHOWN_FIRST = ("from_address", "to_address", "value")  # of a payload, when it has them


def signature_check(secret: str, headers: Any, body: bytes, *, now: float | None = None) -> str:
    """ "" when the delivery is signed by `secret` and fresh, else why not."""
    timestamp = headers.get("X-Trace-Timestamp") or ""
    given = headers.get("X-Trace-Signature") or ""
    if not timestamp or not given:
        return "unsigned (no X-Trace-Timestamp or X-Trace-Signature)"
    try:
        skew = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return f"bad timestamp {timestamp[:20]!r}"
    if skew > MAX_SKEW_SECONDS:
        return f"timestamp {skew:.0f} s away from now (replayed?)"
    if not hmac.compare_digest(signature(secret, timestamp, body), given):
        return "signature does not verify"
    return ""


def delivery_line(document: Any, verdict: str) -> str:
    """One human line for a received delivery."""
    if not isinstance(document, dict) or not isinstance(document.get("event"), dict):
        return f"received a POST that is not a Trace delivery ({verdict})"
    event, definition = document["event"], document.get("definition") or {}
    what = "RETRACTED" if document.get("purpose") == "retract" else "alert"
    where = f"chain {event.get('chain_id')} block {event.get('block_number')}"
    if event.get("tx_hash"):
        where += f" tx {event['tx_hash']}"
    payload = event.get("payload") if isinstance(event.get("payload"), dict) else {}
    shown = {key: payload[key] for key in SHOWN_FIRST if key in payload} or payload
    payload = json.dumps(shown, sort_keys=True, default=str)[:200]
    return (
        f"{what} {definition.get('name')!r} ({definition.get('severity')}): {where} "
        f"{payload} [delivery {document.get('delivery_id')}, {verdict}]"
    )


def webhook_receiver(
    *,
    host: str,
    port: int,
    secret_for: Callable[[], str | None],
    report: Callable[[str], None],
) -> ThreadingHTTPServer:
    """A server (not yet serving: call serve_forever) that checks every POST against
    `secret_for()` (read per request, so a channel made or rotated later verifies; None: not
    checked) and reports it."""
    ids = itertools.count(1)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_BODY_BYTES:
                self._answer(413, {"error": "body too large"})
                return
            body = self.rfile.read(length)
            secret = secret_for()
            verdict = (
                "not checked" if secret is None else signature_check(secret, self.headers, body)
            )
            try:
                document = json.loads(body)
            except ValueError:
                document = None
            with lock:
                report(delivery_line(document, verdict or "signature verified"))
                number = next(ids)
            if verdict and secret is not None:
                self._answer(401, {"error": verdict})
            else:
                self._answer(200, {"id": f"received-{number}"})

        def _answer(self, status: int, document: dict[str, Any]) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one report line per delivery is the log

    return ThreadingHTTPServer((host, port), Handler)
