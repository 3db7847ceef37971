"""The examples in docs/ say what the code does: the bad DAG of docs/orchestration.md is
refused with exactly the errors the page prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trace_web.orchestration.dag_spec import DagSpecError, parse_dag_yaml

DOCS = Path(__file__).resolve().parents[2] / "docs"


def block_after(text: str, marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```[a-z]*\n(.*?)```", text, re.S)
    assert match, f"no ```block after <!-- {marker} -->"
    return match.group(1)


def test_the_bad_dag_of_the_orchestration_page_reports_what_the_page_says():
    page = (DOCS / "orchestration.md").read_text()
    with pytest.raises(DagSpecError) as refused:
        parse_dag_yaml(block_after(page, "bad-dag"))
    assert str(refused.value) + "\n" == block_after(page, "bad-dag-errors")


def test_the_schema_page_lists_exactly_the_chain_schemas_columns():
    from trace_chain.chain_schema import schema_markdown

    page = (DOCS / "schema.md").read_text()
    assert page.endswith(schema_markdown())
