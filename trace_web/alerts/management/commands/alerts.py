"""trace alerts dlq list [--org SLUG] | trace alerts dlq replay ID: the sink's dead-letter
queue, for operators.

`list` prints the refused publications (oldest first, the order to repair and replay in):
id, org, task, attempt, rows, error, status, created. `replay` applies one again through the
sink (trace_web.alerts.sink.dead_letter_replay) after its rows were repaired, and prints what
it wrote; a publication still refused exits 1 with the reason, and stays in the queue.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from trace_web.errors import TraceError

COLUMNS = ("id", "org", "task", "attempt", "rows", "error", "status", "created")
ERROR_WIDTH = 60


class Command(BaseCommand):
    help = "The alert sink's dead-letter queue: list it, or replay one after a repair."

    def add_arguments(self, parser):
        groups = parser.add_subparsers(dest="group", metavar="group", required=True)
        dlq = groups.add_parser("dlq", help="the dead-letter queue of refused alert batches")
        actions = dlq.add_subparsers(dest="action", metavar="action", required=True)
        listing = actions.add_parser("list", help="the dead letters, oldest first")
        listing.add_argument("--org", help="only this org's (its slug)")
        listing.add_argument(
            "--all", action="store_true", help="replayed ones too (default: pending only)"
        )
        replay = actions.add_parser("replay", help="apply one again through the sink")
        replay.add_argument("id", type=int, help="the dead letter's id (from `list`)")

    def handle(self, *args, group, action, **options):
        try:
            return {"list": self._list, "replay": self._replay}[action](**options)
        except TraceError as exc:
            raise CommandError(exc.message) from None

    def _list(self, *, org, all, **options):
        from trace_web.alerts.models import DeadLetterStatus
        from trace_web.alerts.selectors import dead_letter_rows, dead_letters
        from trace_web.orgs.selectors import org_by_slug

        org_id = None
        if org is not None:
            found = org_by_slug(org)
            if found is None:
                raise CommandError(f"no org {org!r}")
            org_id = found.pk
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
