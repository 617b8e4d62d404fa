"""``kvmon notify-test``: a sample message reaches the named channel; the URL is never printed."""

from __future__ import annotations

import json

import pytest

from lab.sinks import WebhookSink
from lab.tls import LabPki
from monitor.cli import main


@pytest.fixture
def configured(sink: WebhookSink, pki: LabPki, monkeypatch: pytest.MonkeyPatch) -> WebhookSink:
    channels = [
        {
            "name": "ops",
            "kind": "teams",
            "url_setting": "TEST_TEAMS_URL",
            "min_severity": "critical",
            "events": ["changed"],
        },
        {"name": "dev", "kind": "slack", "url_setting": "TEST_SLACK_URL"},
    ]
    monkeypatch.setenv("KVMON_CHANNELS", json.dumps(channels))
    monkeypatch.setenv("TEST_TEAMS_URL", sink.teams_url())
    monkeypatch.setenv("TEST_SLACK_URL", sink.slack_url())
    monkeypatch.setenv("KVMON_CA_BUNDLE", pki.ca_path)
    return sink


def secret_parts(sink: WebhookSink) -> list[str]:
    return [
        "6f1c9d0e2b7a4c5e8d3f0a1b2c3d4e5f",
        "Xq3vLabSig0nature",
        "T0LAB0001",
        "labSlackT0ken7Hq2xW9vR4mZ",
        str(sink.server.port),
    ]


def test_sample_reaches_the_channel_whatever_its_filters(
    configured: WebhookSink, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["notify-test", "--channel", "ops"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "channel ops (teams): sample delivered (HTTP 202, 1 try)"
    (received,) = configured.messages("teams")
    card = received.json()["attachments"][0]["content"]
    assert card["body"][0]["text"] == "kvmon test message"
    for part in secret_parts(configured):
        assert part not in out.out + out.err


def test_a_refused_sample_is_reported_without_the_url(
    configured: WebhookSink, capsys: pytest.CaptureFixture[str]
) -> None:
    configured.fail("slack", status=404)
    assert main(["notify-test", "--channel", "dev", "--format", "json"]) == 1
    out = capsys.readouterr()
    outcome = json.loads(out.out)
    assert outcome["delivered"] is False and outcome["status"] == 404 and outcome["tries"] == 1
    assert "HTTP 404" in outcome["error"]
    for part in secret_parts(configured)[:-1]:
        assert part not in out.out + out.err
    assert configured.messages("slack") == []


def test_unknown_channel_is_a_usage_error(
    configured: WebhookSink, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["notify-test", "--channel", "nope"]) == 2
    assert "no channel named 'nope' in KVMON_CHANNELS; configured: ops, dev" in capsys.readouterr().err


def test_bad_channel_settings_are_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "KVMON_CHANNELS", json.dumps([{"name": "ops", "kind": "teams", "url_setting": "MISSING_URL"}])
    )
    monkeypatch.delenv("MISSING_URL", raising=False)
    assert main(["notify-test", "--channel", "ops"]) == 2
    assert "setting MISSING_URL is not set or empty" in capsys.readouterr().err
