"""trace iceberg sync --org SLUG --chain-id N [--dataset D ...]: bring the org's Iceberg tables
of one chain up to its committed cold partitions now (what the `iceberg_sync` operator does on
each commit; docs/cold_storage.md, "Iceberg"), and print one JSON line per table."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from trace_chain.chain_schema import DATASETS
from trace_web.orgs.selectors import org_by_slug


class Command(BaseCommand):
    help = "Sync the org's Iceberg tables of one chain with its committed cold partitions."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        sync = actions.add_parser("sync", help="register committed files, drop superseded ones")
        sync.add_argument("--org", required=True)
        sync.add_argument("--chain-id", type=int, required=True)
        sync.add_argument(
            "--dataset",
            action="append",
            choices=DATASETS,
            help="a dataset to sync (repeatable; default every one)",
        )

    def handle(self, *args, action, org, chain_id, dataset, **options):
        from trace_chain import iceberg
        from trace_chain.db import data_engine
        from trace_web.query.selectors import org_cold_catalog

        target = org_by_slug(org)
        if target is None:
            raise CommandError(f"no org {org!r}")
        try:
            settings = iceberg.iceberg_settings_from_env()
        except iceberg.IcebergConfigError as exc:
            raise CommandError(str(exc)) from exc
        results = iceberg.chain_sync(
            catalog=lambda: org_cold_catalog(org_id=target.pk),
            engine=data_engine(),
            org_id=target.pk,
            chain_id=chain_id,
            datasets=list(dict.fromkeys(dataset or DATASETS)),
            settings=settings,
        )
        for result in results:
            self.stdout.write(json.dumps({"dataset": result.dataset, **result.summary()}))
