"""The author's side of bundles: pack a handler's directory into a bundle (`trace udf pack`),
and run a bundle locally under the same sandbox as the `udf` runtime, against an org's chain
data (`trace udf test`), before it is uploaded.

A packed bundle is reproducible: the same files give the same zip bytes, so the same sha256,
whatever the files' times or the order the file system lists them in. It passes exactly the
checks an upload makes (`bundle_check`), so a bundle that packs uploads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trace_web.udf.bundle_check import (
    BundleInvalid,
    CheckedBundle,
    bundle_check,
    canonical_manifest,
)

MANIFEST = "manifest.json"
# Left out of a packed bundle: byte-code caches and the author's tooling, never handler code.
SKIPPED_DIRS = {"__pycache__", "node_modules", ".git", ".venv", ".mypy_cache", ".pytest_cache"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")
# Zip members carry a time; a fixed one keeps packing reproducible.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
MANIFEST_FIELDS = ("name", "version", "runtime", "entrypoint")
# Local runs use sandbox slots (so uids) no worker's pool uses: slots 1000 and up.
LOCAL_SLOT_BASE = 1000


@dataclass(frozen=True)
class Packed:
    data: bytes
    bundle: CheckedBundle


def _bundle_files(directory: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if any(part in SKIPPED_DIRS for part in relative.parts):
            continue
        if path.is_symlink():
            raise BundleInvalid([(relative.as_posix(), "symlinks are not packed")])
        if not path.is_file() or path.name.endswith(SKIPPED_SUFFIXES):
            continue
        if relative.as_posix() != MANIFEST:
            files[relative.as_posix()] = path.read_bytes()
    return files


def bundle_pack(
    directory: Path, *, fields: dict[str, str] | None = None, private_key: Any = None
) -> Packed:
    """The bundle of every file under `directory`. The manifest's name, version, runtime and
    entrypoint come from `fields`, else from the directory's own manifest.json; its file list
    is always computed. With `private_key` (an Ed25519 private key) the manifest is signed.
    BundleInvalid names each problem, as an upload would."""
    if not directory.is_dir():
        raise BundleInvalid([(str(directory), "not a directory")])
    existing: dict[str, Any] = {}
    manifest_path = directory / MANIFEST
    if manifest_path.is_file():
        try:
            existing = json.loads(manifest_path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise BundleInvalid([(MANIFEST, f"not JSON ({exc})")]) from None
        if not isinstance(existing, dict):
            raise BundleInvalid([(MANIFEST, "must be a JSON object")])
    files = _bundle_files(directory)
    manifest: dict[str, Any] = {
        key: value
        for key in MANIFEST_FIELDS
        if (value := (fields or {}).get(key) or existing.get(key)) is not None
    }
    manifest["files"] = [
        {"path": path, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        for path, content in files.items()
    ]
    if private_key is not None:
        import base64

        manifest["signature"] = base64.b64encode(
            private_key.sign(canonical_manifest(manifest))
        ).decode()
    data = _zip(manifest, files)
    from trace_web.udf.services import bundle_limits

    return Packed(data=data, bundle=bundle_check(data, limits=bundle_limits()))


def _zip(manifest: dict[str, Any], files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        members = [(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")]
        for path, content in [*members, *files.items()]:
            info = zipfile.ZipInfo(path, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def bundle_read(path: Path) -> CheckedBundle:
    """A bundle from a zip file, or packed from a directory, checked as an upload is."""
    from trace_web.udf.services import bundle_limits

    if path.is_dir():
        return bundle_pack(path).bundle
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleInvalid([(str(path), f"cannot be read ({exc.strerror})")]) from None
    return bundle_check(data, limits=bundle_limits())


class _OrgChannel:
    """The local run's way out: the org's datasets, as its admin would query them (a deployed
    run reads only its task's inputs), through the same gate and limits."""

    def __init__(self, org, channel_error: type[Exception]) -> None:
        self._org = org
        self._channel_error = channel_error
        self.queries: list[str] = []

    def query(self, sql: str) -> dict[str, Any]:
        from trace_web.errors import TraceError
        from trace_web.query.services import org_query_rows

        self.queries.append(sql)
        try:
            return org_query_rows(org=self._org, sql=sql)
        except TraceError as exc:
            raise self._channel_error(exc.code, exc.message) from None

    def heartbeat(self) -> None:
        """No lease to keep: a local run is not a task."""


def bundle_local_run(
    bundle: CheckedBundle,
    *,
    org,
    block_range: tuple[int, int] | None,
    params: dict[str, Any],
    limits: dict[str, int | float] | None = None,
    entrypoint: str | None = None,
):
    """Run `bundle`'s handler once in the sandbox, as the `udf` operator would, over `org`'s
    data: the sandbox's HandlerResult, or its HandlerFailed / SandboxUnavailable."""
    from trace_tasks import sandbox

    run_limits = sandbox.SandboxLimits(**(limits or {}))
    with tempfile.TemporaryDirectory(prefix="trace-udf-test-") as tmp:
        bundle_dir = Path(tmp) / "bundle"
        bundle_dir.mkdir()
        bundle.extract(bundle_dir)
        bundle_dir.chmod(0o555)
        try:
            return sandbox.run_handler(
                sandbox.HandlerRun(
                    runtime=bundle.manifest.runtime,
                    bundle_dir=bundle_dir,
                    entrypoint=entrypoint or bundle.manifest.entrypoint,
                    params=params,
                    range=block_range,
                    limits=run_limits,
                    slot=LOCAL_SLOT_BASE + os.getpid() % 1000,
                ),
                _OrgChannel(org, sandbox.ChannelError),
            )
        finally:
            bundle_dir.chmod(0o755)  # so the temporary directory can be removed
