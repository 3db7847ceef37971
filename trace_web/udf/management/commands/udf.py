"""trace udf pack DIR | trace udf test BUNDLE --range A:B --org SLUG: the author kit.

`pack` writes a directory's handler files as a bundle zip with its manifest (sizes and sha256
computed, optionally signed), checked as an upload would check it. `test` runs a bundle (a zip,
or a directory packed on the fly) once under the same sandbox as the `udf` runtime, against the
org's chain data (the Lite chain by default settings), printing its rows as JSON lines on
stdout and its logs on stderr; a refused or failing handler exits 1 with the sandbox's message.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from trace_web.orgs.selectors import org_by_slug


def _range(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+):(\d+)", text)
    if not match or int(match[1]) >= int(match[2]):
        raise CommandError(f"--range {text!r}: expected START:END with START < END (END excluded)")
    return int(match[1]), int(match[2])


def _limits(items: list[str]) -> dict[str, float]:
    limits: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            limits[name] = float(value) if "." in value else int(value)
        except ValueError:
            raise CommandError(f"--limit {item!r}: expected FIELD=NUMBER") from None
    return limits


class Command(BaseCommand):
    help = "Pack a handler directory into a bundle, or run a bundle locally in the sandbox."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", metavar="action", required=True)
        pack = actions.add_parser("pack", help="write DIR's files as a bundle zip")
        pack.add_argument("directory", type=Path)
        pack.add_argument("--output", type=Path, help="the zip (default: NAME-VERSION.zip)")
        for field in ("name", "version", "runtime", "entrypoint"):
            pack.add_argument(f"--{field}", help=f"manifest {field} (else DIR/manifest.json's)")
        pack.add_argument("--sign-key", type=Path, help="an Ed25519 private key (PEM) to sign")
        test = actions.add_parser("test", help="run a bundle once in the sandbox")
        test.add_argument("bundle", type=Path, help="a bundle zip, or a handler directory")
        test.add_argument("--org", required=True, help="whose datasets the handler reads")
        test.add_argument(
            "--range", dest="block_range", type=_range, help="START:END, the handler's ctx.range"
        )
        test.add_argument("--params", default="{}", help="ctx.params as a JSON object")
        test.add_argument("--entrypoint", help="another entrypoint than the manifest's")
        test.add_argument(
            "--limit",
            action="append",
            default=[],
            metavar="FIELD=N",
            help="a sandbox limit, e.g. wall_seconds=10 (repeatable)",
        )

    def handle(self, *args, action, **options):
        from trace_web.udf.bundle_check import BundleInvalid

        try:
            return {"pack": self._pack, "test": self._test}[action](**options)
        except BundleInvalid as exc:
            raise CommandError("bundle refused: " + "; ".join(exc.errors)) from None

    def _pack(self, *, directory, output, sign_key, **options):
        from trace_web.udf.authoring import bundle_pack

        key = _private_key(sign_key) if sign_key else None
        fields = {f: options[f] for f in ("name", "version", "runtime", "entrypoint") if options[f]}
        packed = bundle_pack(directory, fields=fields, private_key=key)
        manifest = packed.bundle.manifest
        target = output or Path(f"{manifest.name}-{manifest.version}.zip")
        target.write_bytes(packed.data)
        self.stdout.write(f"{target}  sha256 {packed.bundle.sha256}  ({len(packed.data)} bytes)")

    def _test(self, *, bundle, org, block_range, params, entrypoint, limit, **options):
        from trace_tasks import sandbox
        from trace_web.udf.authoring import bundle_local_run, bundle_read

        target = org_by_slug(org)
        if target is None:
            raise CommandError(f"no org {org!r}")
        try:
            parsed = json.loads(params)
        except ValueError as exc:
            raise CommandError(f"--params: not JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise CommandError("--params must be a JSON object")
        run_limits = _limits(limit)
        checked = bundle_read(bundle)
        try:
            result = bundle_local_run(
                checked,
                org=target,
                block_range=block_range,
                params=parsed,
                limits=run_limits,
                entrypoint=entrypoint,
            )
        except (TypeError, ValueError) as exc:
            raise CommandError(f"--limit: {exc}") from None
        except sandbox.SandboxUnavailable as exc:
            raise CommandError(f"sandbox unavailable: {exc}") from None
        except sandbox.HandlerFailed as exc:
            raise CommandError(f"handler failed ({exc.code}): {exc}") from None
        for line in result.logs:
            sys.stderr.write(f"log: {line}\n")
        for row in result.rows:
            self.stdout.write(json.dumps(row, sort_keys=True))
        sys.stderr.write(
            f"{len(result.rows)} row(s) in {result.duration_seconds:.3f} s "
            f"(bundle {checked.sha256[:12]})\n"
        )


def _private_key(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CommandError(f"--sign-key {path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CommandError(f"--sign-key {path}: not an Ed25519 key")
    return key
