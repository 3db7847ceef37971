"""UDF bundle zips for tests: a manifest that lists its files with their sizes and sha256,
optionally signed with an Ed25519 key, and zips broken on purpose."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from typing import Any

from trace_web.udf.bundle_check import canonical_manifest

HANDLER = """
def handle(ctx):
    return [{"n": i} for i in range(3)]
"""


def manifest_for(
    files: dict[str, bytes],
    *,
    name: str = "demo",
    version: str = "1.0.0",
    runtime: str = "python",
    entrypoint: str = "main",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "runtime": runtime,
        "entrypoint": entrypoint,
        "files": [
            {"path": path, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
            for path, content in files.items()
        ],
        **extra,
    }


def sign(manifest: dict[str, Any], private_key) -> dict[str, Any]:
    signature = private_key.sign(canonical_manifest(manifest))
    return {**manifest, "signature": base64.b64encode(signature).decode()}


def public_key_b64(private_key) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def zip_bytes(
    files: dict[str, bytes],
    manifest: dict[str, Any] | None = None,
    *,
    extra_members: list[tuple[zipfile.ZipInfo | str, bytes]] = (),
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """A zip of `files` and its manifest (computed unless given), plus raw `extra_members`
    written as they are (duplicates, symlinks, bad paths)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        document = manifest if manifest is not None else manifest_for(files)
        # A fixed time: the same files give the same zip (so the same bundle id) even when
        # two calls straddle a second.
        members = [("manifest.json", json.dumps(document).encode()), *files.items()]
        for path, content in members:
            info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            archive.writestr(info, content)
        for member, content in extra_members:
            archive.writestr(member, content)
    return buffer.getvalue()


def bundle(files: dict[str, bytes] | None = None, **manifest_fields: Any) -> bytes:
    files = files if files is not None else {"main.py": HANDLER.encode()}
    return zip_bytes(files, manifest_for(files, **manifest_fields))
