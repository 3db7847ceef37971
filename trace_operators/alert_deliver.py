"""alert_deliver: the senders, one per channel kind, each a plain function of (channel,
message, options) returning the provider's message id or raising SendFailed (retryable or
terminal). They know neither Celery nor the Delivery row (trace_web.alerts.delivery does).

Outbound safety: a webhook or chat URL is http(s) only, its host is resolved once, every
address it resolves to must be public (not loopback, private, link-local, multicast, reserved
or unspecified) unless `allow_private`, and the request connects to the address that was
checked, so a DNS answer that changes between check and connect (rebinding) cannot slip
through. Redirects are not followed, and no proxy from the environment is used. Errors name
what failed, never the URL or the secret (a Telegram URL holds the bot's token).
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

USER_AGENT = "Trace-Alerts/1"
PAYLOAD_FIELDS_SHOWN = 5  # in the human message; the webhook body carries them all
SMS_MAX_CHARS = 300


class SendFailed(Exception):
    """A send that did not deliver. `retryable`: worth another attempt (5xx, 408, 429, a
    timeout, a connection error); else terminal (other 4xx, a refused address, a bad
    target). `retry_after`: the receiver's Retry-After, in seconds."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class ChannelTarget:
    kind: str  # trace_web.alerts.models.ChannelKind
    target: str  # URL, email address or E.164 phone number
    chat_id: str = ""
    secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class SendOptions:
    timeout_seconds: float = 10.0
    allow_private: bool = False
    sns_endpoint_url: str = ""
    sns_region: str = "us-east-1"


@dataclass(frozen=True)
class DeliveryMessage:
    """What one delivery says: the event, its definition and why it is sent (notify or
    retract)."""

    delivery_id: int
    purpose: str  # notify | retract
    definition_id: int
    definition_name: str
    severity: str
    event_id: int
    chain_id: int
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int | None
    event_time: str | None  # ISO 8601, the block's time
    payload: dict[str, Any]
    backtest: bool = False

    @classmethod
    def of(cls, *, delivery_id: int, purpose: str, event: Any, definition: Any) -> DeliveryMessage:
        """From an AlertEvent and its AlertDefinition (read by attribute only)."""
        return cls(
            delivery_id=delivery_id,
            purpose=purpose,
            definition_id=definition.pk,
            definition_name=definition.name,
            severity=definition.severity,
            event_id=event.pk,
            chain_id=event.chain_id,
            block_number=event.block_number,
            block_hash=event.block_hash,
            tx_hash=event.tx_hash,
            log_index=event.log_index,
            event_time=event.event_time.isoformat() if event.event_time else None,
            payload=dict(event.payload or {}),
            backtest=event.backtest,
        )

    def body(self) -> dict[str, Any]:
        """The webhook's JSON document."""
        return {
            "delivery_id": self.delivery_id,
            "purpose": self.purpose,
            "definition": {
                "id": self.definition_id,
                "name": self.definition_name,
                "severity": self.severity,
            },
            "event": {
                "id": self.event_id,
                "chain_id": self.chain_id,
                "block_number": self.block_number,
                "block_hash": self.block_hash,
                "tx_hash": self.tx_hash,
                "log_index": self.log_index,
                "event_time": self.event_time,
                "payload": self.payload,
                "backtest": self.backtest,
            },
        }

    def subject(self) -> str:
        head = f"[{self.severity.upper()}] {self.definition_name}"
        if self.purpose == "retract":
            return f"RETRACTED {head}: block {self.block_number} was reorged out"
        return f"{head}: chain {self.chain_id} block {self.block_number}"

    def text(self) -> str:
        """The short human message of chat, email and SMS (its first line is the subject)."""
        lines = [self.subject()]
        if self.purpose == "retract":
            lines.append("The match below is no longer on the canonical chain; disregard it.")
        lines.append(f"chain {self.chain_id}, block {self.block_number} ({self.block_hash})")
        if self.tx_hash:
            where = f"tx {self.tx_hash}"
            if self.log_index is not None:
                where += f" log {self.log_index}"
            lines.append(where)
        for key in sorted(self.payload)[:PAYLOAD_FIELDS_SHOWN]:
            value = self.payload[key]
            shown = value if isinstance(value, str) else json.dumps(value, default=str)
            lines.append(f"{key}: {_clip(shown, 80)}")
        if len(self.payload) > PAYLOAD_FIELDS_SHOWN:
            lines.append(f"(+{len(self.payload) - PAYLOAD_FIELDS_SHOWN} more fields)")
        if self.backtest:
            lines.append("(backtest)")
        lines.append(f"delivery {self.delivery_id}")
        return "\n".join(lines)


def send(channel: ChannelTarget, message: DeliveryMessage, options: SendOptions) -> str:
    """Send `message` to `channel`; the provider's message id ("" when it gives none)."""
    sender = _SENDERS.get(channel.kind)
    if sender is None:
        raise SendFailed(f"unknown channel kind {channel.kind!r}", retryable=False)
    try:
        return sender(channel, message, options)
    except SendFailed as exc:
        raise SendFailed(
            redact(str(exc), channel), retryable=exc.retryable, retry_after=exc.retry_after
        ) from None


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`X-Trace-Signature`: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>."""
    signed = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def send_webhook(channel: ChannelTarget, message: DeliveryMessage, options: SendOptions) -> str:
    body = _json_bytes(message.body())
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Trace-Timestamp": timestamp,
        "X-Trace-Signature": signature(channel.secret, timestamp, body),
        "Idempotency-Key": str(message.delivery_id),
        "X-Trace-Delivery": str(message.delivery_id),
    }
    return _post(channel.target, body=body, headers=headers, options=options)


def send_slack(channel: ChannelTarget, message: DeliveryMessage, options: SendOptions) -> str:
    return _post_json(channel, {"text": message.text()}, options)


def send_discord(channel: ChannelTarget, message: DeliveryMessage, options: SendOptions) -> str:
    return _post_json(channel, {"content": _clip(message.text(), 2000)}, options)


def send_telegram(channel: ChannelTarget, message: DeliveryMessage, options: SendOptions) -> str:
    if not channel.chat_id:
        raise SendFailed("telegram channel has no chat_id", retryable=False)
    payload = {"chat_id": channel.chat_id, "text": _clip(message.text(), 4096)}
    return _post_json(channel, payload, options)


def send_email(channel: ChannelTarget, message: DeliveryMessage, options: SendOptions) -> str:
    """Through Django's email backend (EMAIL_* settings). The Message-ID is ours, set before
    sending, so it is the provider id and a receiver can thread or dedupe on it."""
    import smtplib

    from django.conf import settings
    from django.core.mail import EmailMessage

    sender = settings.DEFAULT_FROM_EMAIL
    domain = sender.rpartition("@")[2] or "trace.localhost"
    message_id = email.utils.make_msgid(idstring=f"delivery-{message.delivery_id}", domain=domain)
    mail = EmailMessage(
        subject=message.subject(),
        body=message.text(),
        from_email=sender,
        to=[channel.target],
        headers={"Message-ID": message_id, "X-Trace-Delivery": str(message.delivery_id)},
    )
    try:
        sent = mail.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise SendFailed(
            f"SMTP refused the recipient ({', '.join(map(str, codes))})",
            retryable=not all(code >= 500 for code in codes),
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise SendFailed(
            f"SMTP error {exc.smtp_code}: {_clip(_text(exc.smtp_error), 200)}",
            retryable=exc.smtp_code < 500,
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendFailed(f"SMTP unavailable ({type(exc).__name__})", retryable=True) from None
    if sent != 1:
        raise SendFailed("SMTP backend accepted no message", retryable=True)
    return message_id


def send_sms(channel: ChannelTarget, message: DeliveryMessage, options: SendOptions) -> str:
    """AWS SNS `Publish` to a phone number (boto3's usual credentials)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = _sns_client(options.sns_endpoint_url, options.sns_region)
    text = message.subject() + (f"\ntx {message.tx_hash}" if message.tx_hash else "")
    try:
        answer = client.publish(PhoneNumber=channel.target, Message=_clip(text, SMS_MAX_CHARS))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
        terminal = code in {"InvalidParameter", "InvalidParameterValue", "OptedOut"} or (
            400 <= status < 500 and code not in {"Throttling", "ThrottledException"}
        )
        raise SendFailed(
            f"SNS refused the message ({code or status})", retryable=not terminal
        ) from None
    except BotoCoreError as exc:
        raise SendFailed(f"SNS unavailable ({type(exc).__name__})", retryable=True) from None
    return answer["MessageId"]


_SENDERS = {
    "webhook": send_webhook,
    "email": send_email,
    "sms": send_sms,
    "slack": send_slack,
    "discord": send_discord,
    "telegram": send_telegram,
}


def classify(status: int, headers: Any) -> SendFailed | None:
    """The one retry rule of every HTTP channel: None for 2xx (delivered); 408, 429 and 5xx
    are retried (after Retry-After if given); everything else (other 4xx, a redirect, which
    is not followed) is terminal, since repeating it would only flood the receiver."""
    if 200 <= status < 300:
        return None
    if status in (408, 429) or status >= 500:
        return SendFailed(
            f"HTTP {status} from the receiver",
            retryable=True,
            retry_after=retry_after_seconds(headers.get("Retry-After")),
        )
    if 300 <= status < 400:
        return SendFailed(f"HTTP {status}: a redirect, not followed", retryable=False)
    return SendFailed(f"HTTP {status} from the receiver", retryable=False)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def address_refused(address: str) -> str | None:
    """Why an address may not be sent to (None: it is public)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # Most specific first: Python counts link-local, loopback and more as private too.
    for name in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if not ip.is_global:  # shared (100.64/10), documentation and other special ranges
        return "non-public"
    return None


def resolve_checked(host: str, port: int, *, allow_private: bool) -> str:
    """Resolve `host` once; every address must be public unless `allow_private`. Returns the
    address to connect to (the first checked one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SendFailed(f"cannot resolve host {host!r} ({exc})", retryable=True) from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise SendFailed(f"host {host!r} has no address", retryable=True)
    if not allow_private:
        for address in addresses:
            why = address_refused(address)
            if why is not None:
                raise SendFailed(
                    f"refused: host {host!r} resolves to {why} address {address} "
                    "(only public addresses are allowed; TRACE_DELIVERY_ALLOW_PRIVATE is off)",
                    retryable=False,
                )
    return addresses[0]


def redact(text: str, channel: ChannelTarget) -> str:
    """`text` without the channel's URL (its path and query: tokens live there) or secret."""
    secrets = [channel.secret, channel.target]
    if "://" in channel.target:
        parts = urlsplit(channel.target)
        secrets += [parts.path, parts.query, parts.password or ""]
    for secret in sorted(filter(lambda s: len(s) > 3, secrets), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text


def _post_json(channel: ChannelTarget, payload: dict[str, Any], options: SendOptions) -> str:
    headers = {"Content-Type": "application/json"}
    return _post(channel.target, body=_json_bytes(payload), headers=headers, options=options)


def _post(url: str, *, body: bytes, headers: dict[str, str], options: SendOptions) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise SendFailed(f"refused: scheme {parts.scheme!r} (only http and https)", retryable=False)
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise SendFailed("refused: the URL's port is not a number", retryable=False) from None
    if not host:
        raise SendFailed("refused: the URL has no host", retryable=False)
    address = resolve_checked(host, port, allow_private=options.allow_private)
    netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    default_port = port == (443 if parts.scheme == "https" else 80)
    shown_host = f"[{host}]" if ":" in host else host
    headers = {
        "User-Agent": USER_AGENT,
        **headers,
        "Host": shown_host if default_port else f"{shown_host}:{port}",
    }
    auth = None
    if parts.username is not None:
        auth = (unquote(parts.username), unquote(parts.password or ""))
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment: it would connect for us
        if parts.scheme == "https":
            session.mount("https://", _PinnedTLSAdapter(host))
        try:
            response = session.post(
                pinned,
                data=body,
                headers=headers,
                auth=auth,
                timeout=options.timeout_seconds,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise SendFailed(
                f"timed out after {options.timeout_seconds:g}s", retryable=True
            ) from None
        except requests.RequestException as exc:
            raise SendFailed(f"connection failed ({type(exc).__name__})", retryable=True) from None
        with response:
            failure = classify(response.status_code, response.headers)
            if failure is not None:
                raise failure
            return _provider_id(response)


class _PinnedTLSAdapter(HTTPAdapter):
    """TLS to a pinned address: SNI and certificate checks use the URL's host name, not the
    address the request connects to."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._hostname
        kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)


def _provider_id(response: requests.Response) -> str:
    """The receiver's id for the message when it says one: a JSON `id` or `message_id`
    (Discord, Telegram's `result.message_id`), else an X-Request-Id header."""
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict):
        result = document.get("result")
        for source in (document, result if isinstance(result, dict) else {}):
            for key in ("id", "message_id"):
                if isinstance(source.get(key), str | int) and not isinstance(source[key], bool):
                    return str(source[key])[:300]
    return response.headers.get("X-Request-Id", "")[:300]


@functools.cache
def _sns_client(endpoint_url: str, region: str):
    import boto3

    return boto3.client("sns", endpoint_url=endpoint_url or None, region_name=region)


def _json_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True, default=str).encode()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
