"""trace query "SQL" --org SLUG [--format table|csv|json|parquet] [--output FILE]: run a query
over the org's datasets (as its admin would) through the same gate, sandbox and audit as
POST /v1/query, and print a table or write the rows to a file. Written to a file as parquet or
csv, a result past the inline caps comes whole (exported, then copied out)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from trace_web.errors import TraceError
from trace_web.orgs.models import Role
from trace_web.orgs.selectors import org_by_slug

FORMATS = ("table", "csv", "json", "parquet")


class Command(BaseCommand):
    help = "Run one SELECT over the org's chain data (blocks, transactions, logs)."

    def add_arguments(self, parser):
        parser.add_argument("sql")
        parser.add_argument("--org", required=True)
        parser.add_argument("--format", choices=FORMATS, default="table")
        parser.add_argument("--output", type=Path, help="write the rows here (else stdout)")
        parser.add_argument(
            "--max-rows", type=int, help="at most this many rows (default: every row to a file)"
        )

    def handle(self, *args, sql, org, format, output, max_rows, **options):
        from trace_chain.db import query_reader_dsn
        from trace_web.query import results
        from trace_web.query.selectors import query_catalog
        from trace_web.query.services import query_run

        target = org_by_slug(org)
        if target is None:
            raise CommandError(f"no org {org!r}")
        if format == "parquet" and output is None:
            raise CommandError("--format parquet needs --output FILE")
        if max_rows is not None and not 1 <= max_rows <= settings.TRACE_QUERY_MAX_ROWS:
            raise CommandError(f"--max-rows must be 1..{settings.TRACE_QUERY_MAX_ROWS}")
        whole = output is not None and format in ("parquet", "csv") and max_rows is None
        try:
            outcome = query_run(
                sql=sql,
                catalog=query_catalog(org=target, role=Role.ADMIN, hot_dsn=query_reader_dsn()),
                org_id=target.pk,
                timeout_seconds=settings.TRACE_USER_QUERY_SECONDS,
                max_rows=max_rows or settings.TRACE_QUERY_MAX_ROWS,
                export_format=format if whole else None,
            )
        except TraceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        table = outcome.table
        if outcome.export is not None:
            _copy_out(outcome.export, output)
            note = f"{outcome.export.row_count} row(s){' (truncated)' if outcome.truncated else ''}"
            sys.stderr.write(f"{note} in {outcome.seconds:.3f} s\n")
            return
        if format == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, output)
        else:
            text = {
                "table": lambda: _table(table),
                "csv": lambda: results.csv_bytes(table).decode(),
                "json": lambda: json.dumps(
                    {"columns": results.columns_of(table), "rows": results.json_rows(table)}
                ),
            }[format]()
            if output is None:
                self.stdout.write(text.rstrip("\n"))
            else:
                output.write_text(text)
        note = f"{table.num_rows} row(s){' (truncated)' if outcome.truncated else ''}"
        sys.stderr.write(f"{note} in {outcome.seconds:.3f} s\n")


def _copy_out(record, output: Path) -> None:
    import shutil

    from trace_web.query.services import query_result_open

    stream = query_result_open(record)
    try:
        with output.open("wb") as sink:
            shutil.copyfileobj(stream, sink, 1 << 20)
    finally:
        stream.close()


def _table(table) -> str:
    from trace_web.query import results

    names = [field.name for field in table.schema]
    rows = [[("" if v is None else str(v)) for v in row] for row in results.json_rows(table)]
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
