"""`trace udf pack`: a handler directory becomes a bundle that uploads, the same files always
give the same bundle id, the author's tooling is left out, and what an upload would refuse is
refused at packing with the same words."""

from __future__ import annotations

import json
import os
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.query.test_query_api import world  # noqa: F401 - the fixture
from tests.udf_bundles import HANDLER, public_key_b64
from trace_web.udf.authoring import bundle_pack, bundle_read
from trace_web.udf.bundle_check import BundleInvalid
from trace_web.udf.services import bundle_upload, signing_policy_set

MANIFEST = {"name": "transfers", "version": "1.2.0", "runtime": "python", "entrypoint": "main"}


@pytest.fixture
def handler_dir(tmp_path):
    directory = tmp_path / "transfers"
    (directory / "lib").mkdir(parents=True)
    (directory / "main.py").write_text(HANDLER)
    (directory / "lib" / "helpers.py").write_text("LIMIT = 3\n")
    (directory / "manifest.json").write_text(json.dumps(MANIFEST))
    return directory


def test_a_packed_directory_uploads_as_the_bundle_it_names(org, handler_dir):
    packed = bundle_pack(handler_dir)
    assert packed.bundle.manifest.name == "transfers"
    assert sorted(packed.bundle.files) == ["lib/helpers.py", "main.py"]
    uploaded = bundle_upload(org=org, data=packed.data)
    assert uploaded.created and uploaded.bundle.sha256 == packed.bundle.sha256
    assert uploaded.bundle.version == "1.2.0"


def test_packing_is_reproducible_and_leaves_out_caches(handler_dir):
    first = bundle_pack(handler_dir)
    os.utime(handler_dir / "main.py", (0, 10**9))
    cache = handler_dir / "__pycache__"
    cache.mkdir()
    (cache / "main.cpython-311.pyc").write_bytes(b"\x00compiled")
    (handler_dir / "stale.pyc").write_bytes(b"\x00")
    second = bundle_pack(handler_dir)
    assert second.data == first.data
    assert second.bundle.sha256 == first.bundle.sha256
    (handler_dir / "lib" / "helpers.py").write_text("LIMIT = 4\n")
    assert bundle_pack(handler_dir).bundle.sha256 != first.bundle.sha256


def test_fields_given_win_over_the_directorys_manifest(handler_dir):
    packed = bundle_pack(handler_dir, fields={"version": "2.0.0"})
    assert (packed.bundle.manifest.name, packed.bundle.manifest.version) == ("transfers", "2.0.0")
    # the manifest inside lists the files, not what the directory's manifest said
    with zipfile.ZipFile(__import__("io").BytesIO(packed.data)) as archive:
        inner = json.loads(archive.read("manifest.json"))
    assert [f["path"] for f in inner["files"]] == ["lib/helpers.py", "main.py"]


def test_a_signed_pack_runs_where_signatures_are_required(org, handler_dir):
    key = Ed25519PrivateKey.generate()
    signing_policy_set(org=org, keys={"release": public_key_b64(key)}, require_signed=True)
    packed = bundle_pack(handler_dir, private_key=key)
    assert packed.bundle.signed
    assert bundle_upload(org=org, data=packed.data).created


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: (d / "manifest.json").unlink(), "manifest.name"),
        (lambda d: (d / "main.py").unlink(), "manifest.entrypoint"),
        (lambda d: (d / "bad name.py").write_text("x = 1\n"), "bad name.py"),
        (lambda d: (d / "link.py").symlink_to(d / "main.py"), "link.py: symlinks are not packed"),
        (lambda d: (d / "manifest.json").write_text("{nope"), "manifest.json: not JSON"),
        (lambda d: (d / "manifest.json").write_text("[1]"), "must be a JSON object"),
    ],
)
def test_what_an_upload_refuses_is_refused_at_packing(handler_dir, change, problem):
    change(handler_dir)
    with pytest.raises(BundleInvalid) as refused:
        bundle_pack(handler_dir)
    assert any(problem in error for error in refused.value.errors), refused.value.errors


def test_the_pack_command_writes_the_zip_and_reads_back(handler_dir, tmp_path, capsys):
    target = tmp_path / "out.zip"
    call_command("udf", "pack", str(handler_dir), "--output", str(target))
    read = bundle_read(target)
    assert read.manifest.name == "transfers"
    assert read.sha256 in capsys.readouterr().out
    assert bundle_read(handler_dir).sha256 == read.sha256


def test_the_pack_command_signs_with_a_pem_key_and_names_what_is_wrong(handler_dir, tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    target = tmp_path / "signed.zip"
    call_command("udf", "pack", str(handler_dir), "--output", str(target), "--sign-key", str(pem))
    assert bundle_read(target).signed
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(CommandError, match="not a PEM private key"):
        call_command("udf", "pack", str(handler_dir), "--sign-key", str(bad))
    (handler_dir / "main.py").unlink()
    with pytest.raises(CommandError, match=r"bundle refused: manifest\.entrypoint"):
        call_command("udf", "pack", str(handler_dir), "--output", str(target))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--range", "5:5"], "expected START:END with START < END"),
        (["--range", "a:b"], "expected START:END"),
        (["--params", "[1]"], "--params must be a JSON object"),
        (["--params", "{"], "--params: not JSON"),
        (["--limit", "wall_seconds=soon"], "expected FIELD=NUMBER"),
    ],
)
def test_the_test_command_refuses_bad_arguments_clearly(org, handler_dir, argv, message):
    with pytest.raises(CommandError, match=message):
        call_command("udf", "test", str(handler_dir), "--org", org.slug, *argv)


@pytest.mark.django_db
def test_the_test_command_refuses_an_unknown_org(handler_dir):
    with pytest.raises(CommandError, match="no org 'nobody'"):
        call_command("udf", "test", str(handler_dir), "--org", "nobody")


LOCAL_HANDLER = """
PING = "Ping(address indexed sender, uint256 indexed seq, bytes32 tag, uint256 value)"


def handle(ctx):
    start, end = ctx.range
    blocks = ctx.query(
        f"SELECT block_number, block_hash FROM blocks WHERE block_number >= {start}"
        f" AND block_number < {end} ORDER BY 1"
    )
    logs = ctx.query(
        "SELECT block_number, topic0, topic1, topic2, topic3, data FROM logs"
        f" WHERE topic0 = '{ctx.abi.event_topic(PING)}' AND block_number >= {start}"
        f" AND block_number < {end} ORDER BY block_number, log_index"
    )
    columns = logs["columns"]
    pings = [ctx.abi.decode_log(dict(zip(columns, row)), PING) for row in logs["rows"]]
    ctx.log(f"{len(blocks['rows'])} blocks, {len(pings)} pings")
    try:
        ctx.query("SELECT * FROM pg_catalog.pg_tables")
    except ctx.QueryRefused as exc:
        ctx.log(f"refused {exc.code}")
    rows = [{"block": n, "hash": h} for n, h in blocks["rows"]]
    return rows + [{"ping": p["seq"], "sender": p["sender"]} for p in pings]
"""


def test_the_test_command_runs_the_handler_sandboxed_over_the_orgs_cold_and_hot_rows(
    world,  # noqa: F811 - the fixture imported above
    org,
    tmp_path,
    capsys,
):
    from trace_chain.rpc import RpcPool
    from trace_tasks.sandbox import abi

    directory = tmp_path / "local"
    directory.mkdir()
    (directory / "main.py").write_text(LOCAL_HANDLER)
    (directory / "manifest.json").write_text(json.dumps(MANIFEST))
    start, end = world["line"] - 3, world["tip"] + 1  # across the line: cold, then hot
    call_command("udf", "test", str(directory), "--org", org.slug, "--range", f"{start}:{end}")
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    ping = "Ping(address indexed sender, uint256 indexed seq, bytes32 tag, uint256 value)"
    with RpcPool("udf-test", [world["url"]], timeout=10, max_retries=0) as rpc:
        node = [
            {"block": n, "hash": rpc.call("eth_getBlockByNumber", [hex(n), False])["hash"]}
            for n in range(start, end)
        ]
        logs = rpc.call(
            "eth_getLogs",
            [{"fromBlock": hex(start), "toBlock": hex(end - 1), "topics": [abi.event_topic(ping)]}],
        )
    pings = [abi.decode_log(log, ping) for log in logs]
    assert pings, "the traffic has ping calls in the range"
    assert rows == node + [{"ping": p["seq"], "sender": p["sender"]} for p in pings]
    assert f"log: {len(node)} blocks, {len(pings)} pings" in err
    assert "log: refused query_refused" in err
    assert f"{len(rows)} row(s)" in err


def test_the_test_command_exits_with_the_sandboxs_message(world, org, tmp_path):  # noqa: F811
    directory = tmp_path / "slow"
    directory.mkdir()
    (directory / "main.py").write_text("import time\n\ndef handle(ctx):\n    time.sleep(60)\n")
    (directory / "manifest.json").write_text(json.dumps(MANIFEST))
    with pytest.raises(CommandError, match=r"handler failed \(timeout\)"):
        call_command("udf", "test", str(directory), "--org", org.slug, "--limit", "wall_seconds=1")
    with pytest.raises(CommandError, match=r"--limit: .*no_such_limit"):
        call_command("udf", "test", str(directory), "--org", org.slug, "--limit", "no_such_limit=1")
