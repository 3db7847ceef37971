"""Writes for user code: upload a bundle (checked whole, immutable, stored under the org's
prefix of the object store), set the org's signing keys and policy, and materialize a stored
bundle for a run after checking it again against its manifest (failing closed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from trace_web.errors import Conflict, TraceError, ValidationFailed
from trace_web.orgs.models import Org
from trace_web.udf.bundle_check import (
    BundleInvalid,
    BundleLimits,
    CheckedBundle,
    bundle_check,
    public_key_problem,
    signature_verify,
)
from trace_web.udf.models import Bundle, SigningKey, SigningPolicy
from trace_web.udf.selectors import signed_manifests_required, signing_keys_of

MAX_SIGNING_KEYS = 20


class BundleCorrupt(TraceError):
    """The stored bundle does not match what was accepted (bytes, manifest, signature): the run
    is refused, never attempted with what is there."""

    code = "bundle_corrupt"


@dataclass(frozen=True)
class Uploaded:
    bundle: Bundle
    created: bool


def bundle_limits() -> BundleLimits:
    return BundleLimits(
        max_bytes=settings.TRACE_UDF_BUNDLE_MAX_BYTES,
        max_files=settings.TRACE_UDF_BUNDLE_MAX_FILES,
        max_file_bytes=settings.TRACE_UDF_BUNDLE_MAX_FILE_BYTES,
        max_total_bytes=settings.TRACE_UDF_BUNDLE_MAX_TOTAL_BYTES,
        max_ratio=settings.TRACE_UDF_BUNDLE_MAX_RATIO,
    )


def bundle_key(*, org_id: int, sha256: str) -> str:
    # `_udf` cannot be a DAG name, so no job's publication prefix covers the bundles.
    return f"orgs/{org_id}/_udf/bundles/{sha256}.zip"


def _store():
    from trace_chain.object_store import object_store_from_url

    return object_store_from_url(settings.TRACE_OBJECT_STORE_URL)


def _signature_problem(*, org_id: int, checked: CheckedBundle) -> str | None:
    if checked.signed:
        if not signature_verify(checked, signing_keys_of(org_id=org_id)):
            return "manifest.signature: does not verify under any of the org's signing keys"
    elif signed_manifests_required(org_id=org_id):
        return "manifest.signature: required (this org accepts only signed manifests)"
    return None


def bundle_upload(*, org: Org, data: bytes, user=None) -> Uploaded:
    """Accept a bundle zip. The same bytes again return the stored bundle (created False);
    another content under a `name@version` the org already has is a Conflict."""
    try:
        checked = bundle_check(data, limits=bundle_limits())
    except BundleInvalid as exc:
        raise ValidationFailed.of(exc.errors) from None
    if problem := _signature_problem(org_id=org.pk, checked=checked):
        raise ValidationFailed.of([problem])
    manifest = checked.manifest
    with transaction.atomic():
        # One upload of an org at a time decides what a name@version is.
        Org.objects.select_for_update().filter(pk=org.pk).first()
        existing = Bundle.objects.filter(org=org, sha256=checked.sha256).first()
        if existing is not None:
            return Uploaded(bundle=existing, created=False)
        taken = Bundle.objects.filter(org=org, name=manifest.name, version=manifest.version).first()
        if taken is not None:
            raise Conflict(
                f"bundle {manifest.name}@{manifest.version} already exists with another "
                f"content ({taken.sha256}); bundles are immutable: upload a new version"
            )
        key = bundle_key(org_id=org.pk, sha256=checked.sha256)
        _store().put_bytes(data, key)  # content-addressed: a rollback leaves a harmless copy
        bundle = Bundle.objects.create(
            sha256=checked.sha256,
            org=org,
            name=manifest.name,
            version=manifest.version,
            runtime=manifest.runtime,
            entrypoint=manifest.entrypoint,
            manifest=checked.raw_manifest,
            size_bytes=len(data),
            key=key,
            signed=checked.signed,
            created_by=user if getattr(user, "pk", None) else None,
        )
    return Uploaded(bundle=bundle, created=True)


@transaction.atomic
def signing_policy_set(*, org: Org, keys: dict[str, str], require_signed: bool) -> SigningPolicy:
    """Replace the org's signing keys (name -> raw Ed25519 public key, base64) and its policy.
    Requiring signatures with no key would refuse every upload, so that is refused."""
    problems = [
        f"keys.{name}: {problem}"
        for name, encoded in keys.items()
        if (problem := public_key_problem(encoded))
    ]
    if len(keys) > MAX_SIGNING_KEYS:
        problems.append(f"keys: at most {MAX_SIGNING_KEYS} keys")
    if require_signed and not keys:
        problems.append("require_signed: needs at least one key")
    if problems:
        raise ValidationFailed.of(problems)
    SigningKey.objects.filter(org=org).delete()
    SigningKey.objects.bulk_create(
        SigningKey(org=org, name=name, public_key=encoded) for name, encoded in keys.items()
    )
    policy, _ = SigningPolicy.objects.update_or_create(
        org=org, defaults={"require_signed": require_signed}
    )
    return policy


def bundle_materialize(*, org_id: int, sha256: str, dest: Path) -> CheckedBundle:
    """Fetch the stored bundle, check it again as at upload (its sha256 is its id, every file
    against the manifest, the manifest against the one accepted, the signature when it has
    one or the org requires one) and write its files under `dest`. Any mismatch is
    BundleCorrupt, and nothing is written."""
    from trace_chain.object_store import ObjectNotFound, ObjectStoreError

    bundle = Bundle.objects.filter(org_id=org_id, sha256=sha256).first()
    if bundle is None:
        raise BundleCorrupt(f"bundle {sha256} is not in this org's registry")
    label = f"bundle {bundle}"
    try:
        data = _store().get_bytes(bundle.key)
    except (ObjectNotFound, ObjectStoreError, OSError) as exc:
        raise BundleCorrupt(f"{label}: its stored zip cannot be read ({exc})") from None
    import hashlib

    actual = hashlib.sha256(data).hexdigest()
    if actual != bundle.sha256:
        raise BundleCorrupt(f"{label}: the stored zip's sha256 is {actual}, not its id")
    try:
        checked = bundle_check(data, limits=bundle_limits())
    except BundleInvalid as exc:
        raise BundleCorrupt(f"{label}: {'; '.join(exc.errors)}") from None
    if checked.raw_manifest != bundle.manifest:
        raise BundleCorrupt(f"{label}: its manifest is not the one accepted at upload")
    if problem := _signature_problem(org_id=org_id, checked=checked):
        raise BundleCorrupt(f"{label}: {problem}")
    checked.extract(dest)
    return checked
