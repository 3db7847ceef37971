"""manage.py chain_sync apply FILE --org ORG | status --job NAME --org ORG [--watch] |
retry --job NAME --org ORG (schedule ranges that failed for good again)"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from trace_web.chain_sync.selectors import chain_sync_get, chain_sync_status
from trace_web.chain_sync.services import chain_sync_apply, chain_sync_retry_failed
from trace_web.errors import TraceError
from trace_web.orgs.models import Org

BAR_WIDTH = 30


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def render(rows: list[dict]) -> list[str]:
    lines = []
    for row in rows:
        total = row["total_blocks"]
        if total:
            filled = int(BAR_WIDTH * min(row["done_blocks"] / total, 1.0))
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            progress = f"[{bar}] {row['done_blocks']}/{total}"
        else:
            progress = f"done {row['done_blocks']} blocks, head target {row['target']}"
        lines.append(
            f"{row['dataset']:<13}{progress}  cursor {row['cursor']}  in flight {row['inflight']}"
            f"  errors {row['errors']}  {row['blocks_per_second']:.1f} blk/s"
            f"  ETA {_eta(row['eta_seconds'])}"
        )
    return lines


class Command(BaseCommand):
    help = "Apply a chain_sync YAML, or show per-stream progress of one."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        apply = sub.add_parser("apply", help="create or update (enabled: false pauses)")
        apply.add_argument("file", type=Path)
        apply.add_argument("--org", required=True)
        status = sub.add_parser("status", help="cursor, in flight, done, errors per stream")
        status.add_argument("--job", required=True, help="the chain_sync name")
        status.add_argument("--org", required=True)
        status.add_argument("--watch", action="store_true", help="refresh until complete")
        retry = sub.add_parser("retry", help="schedule the ranges that failed for good again")
        retry.add_argument("--job", required=True, help="the chain_sync name")
        retry.add_argument("--org", required=True)

    def handle(self, *args, action: str, org: str, **options):
        target = Org.objects.filter(slug=org).first()
        if target is None:
            raise CommandError(f"no org {org!r}")
        try:
            if action == "apply":
                return self._apply(target, options["file"])
            if action == "retry":
                sync = chain_sync_get(org_id=target.pk, name=options["job"])
                count = chain_sync_retry_failed(sync=sync)
                self.stdout.write(
                    f"chain_sync {sync.name}: {count} failed range(s) scheduled again"
                )
                return None
            return self._status(target, options["job"], options["watch"])
        except TraceError as exc:
            raise CommandError("\n".join([exc.message, *(exc.details or [])])) from exc

    def _apply(self, org: Org, path: Path) -> None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        result = chain_sync_apply(org=org, yaml_text=text)
        sync = result.chain_sync
        state = "created" if result.created else ("updated" if result.changed else "unchanged")
        paused = "" if sync.enabled else " (paused)"
        self.stdout.write(f"chain_sync {sync.name}: {state}{paused}")

    def _status(self, org: Org, name: str, watch: bool) -> None:
        sync = chain_sync_get(org_id=org.pk, name=name)
        live = watch or sys.stdout.isatty()
        while True:
            rows = chain_sync_status(sync=sync)
            lines = render(rows)
            header = f"{sync.name} (chain {sync.chain_id}, {sync.mode})" + (
                "" if sync.enabled else " paused"
            )
            if live:
                self.stdout.write("\x1b[2J\x1b[H" + header)
            else:
                self.stdout.write(header)
            for line in lines:
                self.stdout.write(line)
            if not live or all(r["complete"] for r in rows):
                return
            time.sleep(1)
            sync.refresh_from_db()
