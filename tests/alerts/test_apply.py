"""`trace alerts apply FILE --org`: an org's channels and alerts from one YAML file, matched by
name, created or updated, all or nothing (one bad entry writes none), every problem named by
its place in the file; against real Postgres."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from trace_web.alerts.models import AlertDefinition, Channel
from trace_web.alerts.services import alerts_apply
from trace_web.errors import ValidationFailed

FILE = """
channels:
  - {name: hook, kind: webhook, target: "http://127.0.0.1:9/hook"}
  - {name: ops, kind: email, target: ops@example.com}
alerts:
  - name: whale
    chain_id: 31337
    condition: {match: transaction, to: ["0x000000000000000000000000000000000000dead"]}
    channels: [hook, ops]
"""


def states(applied) -> list[tuple[str, str, str]]:
    return [(a.what, a.name, a.state) for a in applied]


def test_a_file_creates_then_leaves_unchanged_then_updates(org):
    first = alerts_apply(org=org, yaml_text=FILE)
    assert states(first) == [
        ("channel", "hook", "created"),
        ("channel", "ops", "created"),
        ("alert", "whale", "created"),
    ]
    hook = Channel.objects.get(org=org, name="hook")
    assert first[0].secret == hook.secret and first[1].secret is None  # only a webhook has one
    whale = AlertDefinition.objects.get(org=org, name="whale")
    assert sorted(c.name for c in whale.channels.all()) == ["hook", "ops"]

    again = alerts_apply(org=org, yaml_text=FILE)
    assert [a.state for a in again] == ["unchanged"] * 3
    assert again[0].secret is None  # the secret is kept, and not shown again
    assert Channel.objects.get(pk=hook.pk).secret == hook.secret

    changed = FILE.replace("channels: [hook, ops]", "channels: [ops]\n    severity: high")
    assert [a.state for a in alerts_apply(org=org, yaml_text=changed)] == [
        "unchanged",
        "unchanged",
        "updated",
    ]
    whale.refresh_from_db()
    assert whale.severity == "high" and [c.name for c in whale.channels.all()] == ["ops"]


def test_one_bad_entry_writes_nothing_and_every_problem_names_its_place(org):
    bad = FILE.replace("target: ops@example.com", "target: not-an-address").replace(
        "chain_id: 31337", "chain_id: 31337\n    surprise: 1"
    )
    with pytest.raises(ValidationFailed) as caught:
        alerts_apply(org=org, yaml_text=bad)
    problems = caught.value.details
    assert any(p.startswith("channels[1].target: ") for p in problems), problems
    assert "alerts[0].surprise: unknown field" in problems, problems
    assert not Channel.objects.exists() and not AlertDefinition.objects.exists()  # not even hook


def test_a_problem_of_an_entry_as_a_whole_is_named_by_the_entry(org):
    both = FILE.replace(
        "condition: {match",
        "bundle: demo@1.0.0\n    datasets: [transactions]\n    condition: {match",
    )
    with pytest.raises(ValidationFailed) as caught:
        alerts_apply(org=org, yaml_text=both)
    assert "alerts[0]: give exactly one of `condition` or `bundle`" in caught.value.details


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "the file must be a mapping with `channels` and `alerts`"),
        ("", "the file must be a mapping with `channels` and `alerts`"),
        ("alerts: {}", "alerts: must be a list"),
        ("channel: []", "channel: unknown field (use channels or alerts)"),
        ("alerts: [\n", "yaml: "),
        ("alerts: []\nalerts: []", "yaml: "),
    ],
)
def test_a_file_that_is_not_a_document_of_channels_and_alerts_is_refused(org, text, problem):
    with pytest.raises(ValidationFailed) as caught:
        alerts_apply(org=org, yaml_text=text)
    assert caught.value.details[0].startswith(problem), caught.value.details


def test_the_command_prints_each_state_and_the_new_secret_once(org, tmp_path):
    path = tmp_path / "alerts.yaml"
    path.write_text(FILE)
    out = io.StringIO()
    call_command("alerts", "apply", str(path), "--org", org.slug, stdout=out)
    secret = Channel.objects.get(org=org, name="hook").secret
    assert out.getvalue().splitlines() == [
        f"channel hook: created (signing secret, shown once: {secret})",
        "channel ops: created",
        "alert whale: created",
    ]
    path.write_text(FILE.replace("chain_id: 31337", "chain_id: x"))
    with pytest.raises(CommandError) as caught:
        call_command("alerts", "apply", str(path), "--org", org.slug)
    assert str(caught.value).startswith("alerts[0].chain_id: ")
    with pytest.raises(CommandError, match="no org 'nope'"):
        call_command("alerts", "apply", str(path), "--org", "nope")
    with pytest.raises(CommandError, match="cannot read"):
        call_command("alerts", "apply", str(tmp_path / "missing.yaml"), "--org", org.slug)


def test_the_lite_demo_file_applies(org):
    """deploy/demo/alerts.yaml, as `trace lite up` fills in its receiver's URL."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "deploy" / "demo" / "alerts.yaml").read_text()
    text = text.replace("${RECEIVER_URL}", "http://127.0.0.1:8025/hook")
    applied = alerts_apply(org=org, yaml_text=text)
    assert [(a.what, a.state) for a in applied] == [("channel", "created"), ("alert", "created")]
    (definition,) = AlertDefinition.objects.filter(org=org)
    assert "transactions" in definition.datasets and definition.severity == "high"
