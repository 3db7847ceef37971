"""GET /v1/integrity-checks (filters, paging, bad parameters) and the integrity_check
operator's config checks, each problem naming its field."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.dags import noop_dag
from trace_operators.registry import operator_config_problems
from trace_web.datasets.models import Dataset, IntegrityCheck
from trace_web.orchestration.services.dags import dag_sync


@pytest.fixture
def checks(org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    dataset = Dataset.objects.get(org=org, job_name="extract")

    def make(task_id, chain_id, start, end, status):
        return IntegrityCheck.objects.create(
            org=org,
            dataset=dataset,
            dag_name="chain",
            job_name="extract",
            task_id=task_id,
            attempt=1,
            chain_id=chain_id,
            range_start=start,
            range_end=end,
            blocks_checked=end - start,
            status=status,
            mismatches=0 if status == "clean" else 2,
            started_at=timezone.now(),
            finished_at=timezone.now(),
        )

    return [
        make(1, 31337, 0, 100, "clean"),
        make(2, 31337, 100, 200, "repaired"),
        make(3, 1, 0, 100, "mismatch"),
    ]


def ids(response):
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()]


def test_filters_and_newest_first(api, checks):
    first, second, third = (c.pk for c in checks)
    assert ids(api.get("/v1/integrity-checks")) == [third, second, first]
    assert ids(api.get("/v1/integrity-checks?chain_id=31337")) == [second, first]
    assert ids(api.get("/v1/integrity-checks?status=repaired")) == [second]
    assert ids(api.get("/v1/integrity-checks?chain_id=31337&range_start=150")) == [second]
    assert ids(api.get("/v1/integrity-checks?range_end=100")) == [third, first]
    row = api.get("/v1/integrity-checks?status=repaired").json()[0]
    assert (row["range_start"], row["range_end"], row["mismatches"]) == (100, 200, 2)
    assert (row["dag"], row["job"], row["task_id"]) == ("chain", "extract", 2)


def test_a_full_page_links_the_next(api, checks):
    page = api.get("/v1/integrity-checks?limit=2")
    assert ids(page) == [checks[2].pk, checks[1].pk]
    link = page["Link"]
    assert link.endswith('>; rel="next"') and f"before_id={checks[1].pk}" in link
    assert ids(api.get(f"/v1/integrity-checks?limit=2&before_id={checks[1].pk}")) == [checks[0].pk]


def test_bad_parameters_are_refused_naming_them(api, checks):
    unknown = api.get("/v1/integrity-checks?colour=red")
    assert unknown.status_code == 400
    assert unknown.json()["errors"] == ["colour: unknown field"]
    bad = api.get("/v1/integrity-checks?status=broken&chain_id=x")
    assert bad.status_code == 400
    fields = sorted(line.split(":")[0] for line in bad.json()["errors"])
    assert fields == ["chain_id", "status"]


def test_config_problems_name_their_fields():
    problems = dict(
        operator_config_problems(
            "integrity_check",
            {"chain_id": "1", "sample": 0, "max_details": 0, "bogus": 1},
            "platform",
        )
    )
    assert set(problems) == {
        "config",
        "config.chain_id",
        "config.sample",
        "config.max_details",
        "config.bogus",
    }
    assert "exactly one of rpc_pool" in problems["config"]
    assert operator_config_problems("integrity_check", {"chain_id": 1}, "udf")[0][0] == "runtime"
    assert (
        operator_config_problems(
            "integrity_check", {"chain_id": 1, "rpc_pool": "devchain", "sample": 0.1}, "platform"
        )
        == []
    )
