"""manage.py chain_sync apply FILE --org ORG | status --job NAME --org ORG [--watch] |
retry --job NAME --org ORG (schedule ranges that failed for good again)

`status --watch` refreshes until the sync is complete: in a terminal it redraws the screen,
otherwise (a pipe, a log file) it appends one timestamped block per refresh, with no escape
codes."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from trace_web.chain_sync.selectors import chain_sync_get, chain_sync_status
from trace_web.chain_sync.services import chain_sync_apply, chain_sync_retry_failed
from trace_web.errors import TraceError
from trace_web.orgs.models import Org
from trace_web.orgs.selectors import org_by_slug

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
            progress = f"done {row['done_blocks']} blocks"
        target = row["plan_target"]
        plans = f"plans to {target}" if target is not None else "plans to -- (head not seen yet)"
        lines.append(
            f"{row['dataset']:<13}{progress}  {plans}  cursor {row['cursor']}"
            f"  in flight {row['inflight']}  errors {row['errors']}"
            f"  {row['blocks_per_second']:.1f} blk/s  ETA {_eta(row['eta_seconds'])}"
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
        status.add_argument(
            "--interval", type=float, default=1.0, help="seconds between refreshes (--watch)"
        )
        retry = sub.add_parser("retry", help="schedule the ranges that failed for good again")
        retry.add_argument("--job", required=True, help="the chain_sync name")
        retry.add_argument("--org", required=True)

    def handle(self, *args, action: str, org: str, **options):
        target = org_by_slug(org)
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
            return self._status(target, options["job"], options["watch"], options["interval"])
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

    def _status(self, org: Org, name: str, watch: bool, interval: float) -> None:
        if not interval > 0:
            raise CommandError(f"--interval: must be a number of seconds above 0, got {interval}")
        sync = chain_sync_get(org_id=org.pk, name=name)
        redraw = watch and self.stdout.isatty()  # escape codes only for a terminal
        while True:
            rows = chain_sync_status(sync=sync)
            header = f"{sync.name} (chain {sync.chain_id}, {sync.mode})" + (
                "" if sync.enabled else " paused"
            )
            if sync.mode == "follow_head":
                header += f", head {sync.head_block if sync.head_block is not None else '--'}"
            if redraw:
                self.stdout.write("\x1b[2J\x1b[H" + header)
            elif watch:
                self.stdout.write(f"{timezone.now():%Y-%m-%d %H:%M:%S} {header}")
            else:
                self.stdout.write(header)
            for line in render(rows):
                self.stdout.write(line)
            if not watch or all(r["complete"] for r in rows):
                return
            self.stdout.flush()
            time.sleep(interval)  # a refresh period, not a wait for a condition
            sync.refresh_from_db()
