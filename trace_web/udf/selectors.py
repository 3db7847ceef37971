"""Reads for user code: an org's bundles, one by `name@version` or sha256, and its keys."""

from __future__ import annotations

import re

from django.db.models import QuerySet

from trace_web.errors import NotFound
from trace_web.udf.models import Bundle, SigningKey, SigningPolicy

SHA256_RE = re.compile(r"[0-9a-f]{64}")
NAME_VERSION_RE = re.compile(r"([a-z][a-z0-9_-]{0,99})@([0-9A-Za-z][0-9A-Za-z._+-]{0,63})")


def bundles_of(*, org_id: int) -> QuerySet[Bundle]:
    return Bundle.objects.filter(org_id=org_id)


def bundle_find(*, org_id: int, ref: str) -> Bundle | None:
    """The org's bundle named by `ref`: its sha256 or `name@version`; None when there is none
    (another org's bundle is none too)."""
    if SHA256_RE.fullmatch(ref):
        return bundles_of(org_id=org_id).filter(sha256=ref).first()
    match = NAME_VERSION_RE.fullmatch(ref)
    if match is None:
        return None
    name, version = match.groups()
    return bundles_of(org_id=org_id).filter(name=name, version=version).first()


def bundle_get(*, org_id: int, ref: str) -> Bundle:
    bundle = bundle_find(org_id=org_id, ref=ref)
    if bundle is None:
        raise NotFound(f"no bundle {ref!r} in this org (name it by name@version or sha256)")
    return bundle


def signing_keys_of(*, org_id: int) -> list[str]:
    return list(SigningKey.objects.filter(org_id=org_id).values_list("public_key", flat=True))


def signed_manifests_required(*, org_id: int) -> bool:
    return SigningPolicy.objects.filter(org_id=org_id, require_signed=True).exists()


def bundle_out(bundle: Bundle) -> dict:
    return {
        "id": bundle.sha256,
        "name": bundle.name,
        "version": bundle.version,
        "ref": f"{bundle.name}@{bundle.version}",
        "runtime": bundle.runtime,
        "entrypoint": bundle.entrypoint,
        "size_bytes": bundle.size_bytes,
        "signed": bundle.signed,
        "files": [
            {"path": f["path"], "size": f["size"], "sha256": f["sha256"]}
            for f in bundle.manifest.get("files", [])
        ],
        "created_at": bundle.created_at,
    }
