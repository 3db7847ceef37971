"""The commands that take input (run_job, sync_dag) refuse hostile arguments with a clear
CommandError and write nothing, like the API they mirror."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.hostile.conftest import row_counts


@pytest.mark.parametrize(
    "args, message",
    [
        (["--payload", "[1]"], "payload"),
        (["--payload", '{"a": "\\u0000"}'], "NUL"),
        (["--payload", '{"a": NaN}'], "NaN is not a JSON number"),
        (["--payload", "[" * 50_000 + "]" * 50_000], "nested too deeply"),
        (["--range", "0:99999999999999999999999"], "range_end"),
        (["--range", "5:5"], "empty range"),
        (["--range", "a:b"], "bad argument"),
        (["--partition-key", "k" * 201], "partition_key"),
    ],
)
def test_run_job_refuses_hostile_arguments(world, args, message):
    before = row_counts()
    with pytest.raises(CommandError, match=message):
        call_command("run_job", "chain", "extract", "--org", world.org_slug, *args)
    assert row_counts() == before


def test_run_job_accepts_a_range_from_block_zero(world):
    before = row_counts()["orchestration.Task"]
    call_command("run_job", "chain", "extract", "--org", world.org_slug, "--range", "0:10")
    assert row_counts()["orchestration.Task"] == before + 1


@pytest.mark.parametrize("slug", ["ac\x00me", "a" * 300, "nobody"])
def test_commands_refuse_an_org_no_one_has(world, slug, tmp_path):
    dag = tmp_path / "dag.yaml"
    dag.write_text("name: x\njobs: [{name: a, activation: manual, operator: noop}]\n")
    with pytest.raises(CommandError, match="no org"):
        call_command("run_job", "chain", "extract", "--org", slug)
    with pytest.raises(CommandError, match="no org"):
        call_command("sync_dag", str(dag), "--org", slug)


def test_sync_dag_refuses_a_file_that_is_not_utf8(world, tmp_path):
    dag = tmp_path / "dag.yaml"
    dag.write_bytes(b"name: \xff\xfe\n")
    before = row_counts()
    with pytest.raises(CommandError, match="as UTF-8 text"):
        call_command("sync_dag", str(dag), "--org", world.org_slug)
    assert row_counts() == before
