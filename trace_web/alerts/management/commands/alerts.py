"""trace alerts apply FILE --org SLUG | trace alerts receive --port N [--org SLUG --channel NAME]
| trace alerts dlq list [--org SLUG] | trace alerts dlq replay ID.

`apply` creates or updates an org's channels and alerts from one YAML file (`channels:` and
`alerts:`, the specs the API takes, matched by name), all or nothing, and prints each one's
state (and a new webhook secret, this once). `receive` runs a webhook receiver on loopback for
trying a channel: it verifies each delivery's signature with the channel's secret and prints
one line per delivery. `dlq list` prints the refused publications (oldest first, the order to
repair and replay in): id, org, task, attempt, rows, error, status, created. `dlq replay`
applies one again through the sink (trace_web.alerts.sink.dead_letter_replay) after its rows
were repaired, and prints what it wrote; a publication still refused exits 1 with the reason,
and stays in the queue.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from trace_web.errors import TraceError

COLUMNS = ("id", "org", "task", "attempt", "rows", "error", "status", "created")
ERROR_WIDTH = 60


class Command(BaseCommand):
    help = (
        "Alerting: apply channels and alerts from a file, receive webhooks locally, and the "
        "sink's dead-letter queue."
    )

    def add_arguments(self, parser):
        groups = parser.add_subparsers(dest="group", metavar="group", required=True)
        apply = groups.add_parser("apply", help="create or update channels and alerts from YAML")
        apply.add_argument("file", type=Path)
        apply.add_argument("--org", required=True, help="the org's slug")
        receive = groups.add_parser("receive", help="a local webhook receiver for a channel")
        receive.add_argument("--port", type=int, required=True)
        receive.add_argument("--host", default="127.0.0.1")
        receive.add_argument("--org", help="with --channel: verify with that channel's secret")
        receive.add_argument("--channel", help="the webhook channel's name")
        dlq = groups.add_parser("dlq", help="the dead-letter queue of refused alert batches")
        actions = dlq.add_subparsers(dest="action", metavar="action", required=True)
        listing = actions.add_parser("list", help="the dead letters, oldest first")
        listing.add_argument("--org", help="only this org's (its slug)")
        listing.add_argument(
            "--all", action="store_true", help="replayed ones too (default: pending only)"
        )
        replay = actions.add_parser("replay", help="apply one again through the sink")
        replay.add_argument("id", type=int, help="the dead letter's id (from `list`)")

    def handle(self, *args, group, action=None, **options):
        handlers = {"list": self._list, "replay": self._replay}
        handlers |= {"apply": self._apply, "receive": self._receive}
        try:
            return handlers[action or group](**options)
        except TraceError as exc:
            lines = exc.details if isinstance(exc.details, list) and exc.details else []
            raise CommandError("\n".join(lines) or exc.message) from None

    def _apply(self, *, file, org, **options):
        from trace_web.alerts.services import alerts_apply

        target = _org(org)
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        for applied in alerts_apply(org=target, yaml_text=text):
            line = f"{applied.what} {applied.name}: {applied.state}"
            if applied.secret:
                line += f" (signing secret, shown once: {applied.secret})"
            self.stdout.write(line)

    def _receive(self, *, host, port, org, channel, **options):
        from trace_web.alerts.receiver import webhook_receiver

        if (org is None) != (channel is None):
            raise CommandError("give --org and --channel together (or neither: no checking)")
        secret_for = (lambda: None) if org is None else _secret_reader(_org(org), channel)
        try:
            server = webhook_receiver(
                host=host, port=port, secret_for=secret_for, report=self._report
            )
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from None
        checked = f", verifying with channel {channel!r}" if channel else ""
        self._report(f"receiving webhooks on http://{host}:{port}/{checked}; Ctrl-C stops")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

    def _report(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def _list(self, *, org, all, **options):
        from trace_web.alerts.models import DeadLetterStatus
        from trace_web.alerts.selectors import dead_letter_rows, dead_letters

        org_id = None if org is None else _org(org).pk
        letters = dead_letters(org_id=org_id)
        if not all:
            letters = letters.filter(status=DeadLetterStatus.PENDING)
        rows = [
            (
                str(d.pk),
                d.org.slug,
                str(d.task_id),
                str(d.attempt),
                "?" if (count := dead_letter_rows(d)) is None else str(count),
                _one_line(d.error),
                d.status,
                d.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
            for d in letters
        ]
        if not rows:
            self.stdout.write("no dead letters" + (" pending" if not all else ""))
            return
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
        for line in (COLUMNS, *rows):
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))

    def _replay(self, *, id, **options):
        from trace_web.alerts.services import dead_letter_replay_by_id

        outcome = dead_letter_replay_by_id(dead_letter_id=id)
        self.stdout.write(
            f"dead letter {id} replayed: {outcome.created} event(s) created, "
            f"{outcome.existing} already there, {outcome.stale} stale (reorged out), "
            f"{outcome.retracted} retracted, {outcome.deliveries} deliveries queued"
        )


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= ERROR_WIDTH else flat[: ERROR_WIDTH - 1] + "…"


def _org(slug: str):
    from trace_web.orgs.selectors import org_by_slug

    found = org_by_slug(slug)
    if found is None:
        raise CommandError(f"no org {slug!r}")
    return found


def _secret_reader(org, name: str):
    """The channel's signing secret as it is at each call (a channel made or rotated after the
    receiver started verifies at once)."""
    from django.db import close_old_connections

    from trace_web.alerts.selectors import channel_secret

    def read() -> str | None:
        close_old_connections()  # a long-running command: a connection dropped meanwhile
        return channel_secret(org_id=org.pk, name=name)

    return read
