"""Bundles through the API: a zip with its manifest is stored under its sha256, immutable,
listed and shown by id or name@version; every malformed, oversized or escaping zip is refused
with an error naming what is wrong, and nothing is stored; signed manifests verify against
the org's keys."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.udf_bundles import (
    HANDLER,
    bundle,
    manifest_for,
    public_key_b64,
    sign,
    zip_bytes,
)
from trace_chain.object_store import object_store_from_url
from trace_web.orgs.models import Role
from trace_web.udf.models import Bundle

MAIN = {"main.py": HANDLER.encode()}


def upload(client, data: bytes):
    return client.generic("POST", "/v1/udf/bundles", data, content_type="application/zip")


def test_a_bundle_is_stored_under_its_sha256_and_listed_and_shown(api, org, settings):
    data = bundle({**MAIN, "lib/util.py": b"X = 1\n"})
    response = upload(api, data)
    assert response.status_code == 201, response.json()
    body = response.json()
    sha = hashlib.sha256(data).hexdigest()
    assert body["id"] == sha and body["ref"] == "demo@1.0.0" and body["runtime"] == "python"
    assert {f["path"] for f in body["files"]} == {"main.py", "lib/util.py"}
    stored = Bundle.objects.get(org=org, sha256=sha)
    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    assert stored.key.startswith(f"orgs/{org.pk}/") and store.get_bytes(stored.key) == data
    assert [b["id"] for b in api.get("/v1/udf/bundles").json()] == [sha]
    assert api.get(f"/v1/udf/bundles/{sha}").json()["ref"] == "demo@1.0.0"
    assert api.get("/v1/udf/bundles/demo@1.0.0").json()["id"] == sha
    assert api.get("/v1/udf/bundles/demo@9.9.9").status_code == 404


def test_the_same_bytes_again_are_the_same_bundle_and_other_content_is_a_409(api):
    data = bundle()
    assert upload(api, data).status_code == 201
    again = upload(api, data)
    assert again.status_code == 200 and again.json()["id"] == hashlib.sha256(data).hexdigest()
    changed = bundle({"main.py": HANDLER.encode() + b"\n# changed\n"})
    response = upload(api, changed)
    assert response.status_code == 409 and "immutable" in response.json()["detail"]
    assert Bundle.objects.count() == 1
    # A new version of the changed content is another bundle, with another id.
    other = upload(api, bundle({"main.py": HANDLER.encode() + b"\n#\n"}, version="1.0.1"))
    assert other.status_code == 201 and other.json()["id"] != again.json()["id"]


def _symlink() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("link.py")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _no_manifest() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", HANDLER)
    return buffer.getvalue()


def _listed(files: dict[str, bytes], **fields):
    return zip_bytes(files, manifest_for(files, **fields))


BOMB = b"\0" * (1536 * 1024)
REFUSED = {
    "not-a-zip": (b"PK-not-really", "zip: not a readable zip archive"),
    "no-manifest": (_no_manifest(), "manifest: no manifest.json at the root of the zip"),
    "absolute-path": (
        zip_bytes(MAIN, extra_members=[("/etc/x.py", b"1")]),
        "zip['/etc/x.py']: absolute paths are not allowed",
    ),
    "dot-dot": (
        zip_bytes(MAIN, extra_members=[("lib/../../x.py", b"1")]),
        "zip['lib/../../x.py']: '..' is not allowed",
    ),
    "symlink": (
        zip_bytes(MAIN, extra_members=[(_symlink(), b"/etc/passwd")]),
        "zip['link.py']: symlinks are not allowed",
    ),
    "duplicate": (
        zip_bytes(MAIN, extra_members=[("main.py", b"evil = 1")]),
        "zip['main.py']: duplicate name",
    ),
    "unlisted-file": (
        zip_bytes(MAIN, manifest_for(MAIN), extra_members=[("extra.py", b"1")]),
        "zip['extra.py']: not listed in manifest.files",
    ),
    "wrong-hash": (
        zip_bytes(
            MAIN,
            {
                **manifest_for(MAIN),
                "files": [{**manifest_for(MAIN)["files"][0], "sha256": "0" * 64}],
            },
        ),
        "manifest.files[0].sha256: 'main.py' does not match its hash",
    ),
    "wrong-size": (
        zip_bytes(
            MAIN, {**manifest_for(MAIN), "files": [{**manifest_for(MAIN)["files"][0], "size": 1}]}
        ),
        "manifest.files[0].size: 'main.py' is",
    ),
    "missing-entrypoint": (
        _listed({"other.py": b"1"}),
        "manifest.entrypoint: no file main.py in files for runtime 'python'",
    ),
    "node-entrypoint": (
        _listed(MAIN, runtime="node"),
        "manifest.entrypoint: no file main.mjs or main.js in files for runtime 'node'",
    ),
    "bad-runtime": (_listed(MAIN, runtime="ruby"), "manifest.runtime:"),
    "bad-name": (_listed(MAIN, name="Has Spaces"), "manifest.name:"),
    "unknown-manifest-field": (_listed(MAIN, colour="red"), "manifest.colour:"),
    "zip-bomb": (
        zip_bytes({**MAIN, "data.bin": BOMB}),
        "zip['data.bin']: compression ratio over 100 (a zip bomb is refused)",
    ),
}


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_bad_bundle_is_refused_naming_the_problem_and_nothing_is_stored(api, case, settings):
    data, message = REFUSED[case]
    response = upload(api, data)
    assert response.status_code == 400, (case, response.json())
    body = response.json()
    assert body["error"] in ("invalid", "parse_error")
    assert any(line.startswith(message) for line in body.get("errors", [body["detail"]])) or (
        message in body["detail"]
    ), body
    assert Bundle.objects.count() == 0
    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    assert store.list("orgs/") == []


def test_size_limits_are_settings(api, settings):
    settings.TRACE_UDF_BUNDLE_MAX_FILE_BYTES = 1000
    response = upload(api, bundle({**MAIN, "big.py": b"x = 1\n" * 200}))
    assert response.status_code == 400
    assert response.json()["errors"] == [
        "zip['big.py']: 1200 bytes, over the per-file limit of 1000"
    ]
    settings.TRACE_UDF_BUNDLE_MAX_FILE_BYTES = 10_000
    settings.TRACE_UDF_BUNDLE_MAX_FILES = 2
    response = upload(api, bundle({**MAIN, "a.py": b"", "b.py": b""}))
    assert response.json()["errors"] == ["zip: 3 files, over the limit of 2"]
    settings.TRACE_UDF_BUNDLE_MAX_BYTES = 200
    response = upload(api, bundle())
    assert response.status_code == 413 and response.json()["error"] == "too_large"
    assert Bundle.objects.count() == 0


def test_an_upload_must_be_a_zip_body(api):
    response = api.post("/v1/udf/bundles", {"zip": "x"}, format="json")
    assert response.status_code == 415
    empty = upload(api, b"")
    assert empty.status_code == 400


def test_a_viewer_may_list_but_not_upload(org, client_for):
    viewer = client_for(org, Role.VIEWER)
    assert viewer.get("/v1/udf/bundles").status_code == 200
    assert upload(viewer, bundle()).status_code == 403


def test_signed_manifests_verify_against_the_orgs_keys(api, org, client_for):
    key, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    member = client_for(org, Role.MEMBER)
    policy = {"keys": {"release": public_key_b64(key)}, "require_signed": True}
    assert member.put("/v1/udf/signing-policy", policy, format="json").status_code == 403
    response = api.put("/v1/udf/signing-policy", policy, format="json")
    assert response.json() == {"keys": ["release"], "require_signed": True}

    unsigned = upload(api, bundle())
    assert unsigned.json()["errors"] == [
        "manifest.signature: required (this org accepts only signed manifests)"
    ]
    forged = upload(api, zip_bytes(MAIN, sign(manifest_for(MAIN), stranger)))
    assert forged.json()["errors"] == [
        "manifest.signature: does not verify under any of the org's signing keys"
    ]
    # A signature over one manifest does not cover another (the version changed after signing).
    moved = {**sign(manifest_for(MAIN), key), "version": "6.6.6"}
    assert upload(api, zip_bytes(MAIN, moved)).status_code == 400
    good = upload(api, zip_bytes(MAIN, sign(manifest_for(MAIN), key)))
    assert good.status_code == 201 and good.json()["signed"] is True


@pytest.mark.parametrize(
    ("policy", "error"),
    [
        ({"keys": {"k": "bm90LWEta2V5"}, "require_signed": False}, "keys.k: must be a raw Ed25519"),
        ({"keys": {}, "require_signed": True}, "require_signed: needs at least one key"),
        ({"keys": {"a b": "x"}, "require_signed": False}, "keys: key name 'a b'"),
    ],
)
def test_a_bad_signing_policy_is_refused(api, policy, error):
    response = api.put("/v1/udf/signing-policy", policy, format="json")
    assert response.status_code == 400
    assert any(line.startswith(error) for line in response.json()["errors"]), response.json()
