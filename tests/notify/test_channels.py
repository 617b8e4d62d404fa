"""Channel settings: parsed from KVMON_CHANNELS plus one setting per URL/secret, with errors that
name the setting, the entry's field and the problem, and never quote a URL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from monitor.config.channels import ALL_EVENTS, ChannelConfigError, ChannelKind, Event, load_channels
from monitor.model import Severity

TEAMS_URL = "https://prod-07.westeurope.logic.azure.com:443/workflows/0a1b2c3d4e5f/triggers/manual/paths/invoke?api-version=2016-06-01&sig=S3cr3tSig-Xy9"
SLACK_URL = "https://hooks.slack.com/services/T0SECRET1/B0SECRET2/sEcReTtOkEn123456"
HOOK_URL = "https://siem.example.org/ingest/kvmon/t0ken-abc123"


def environ(channels: Any, **settings: str) -> dict[str, str]:
    return {"KVMON_CHANNELS": json.dumps(channels), **settings}


def test_channels_load_with_their_filters_and_secret_settings() -> None:
    channels = load_channels(
        environ(
            [
                {
                    "name": "ops-teams",
                    "kind": "teams",
                    "url_setting": "KVMON_TEAMS_URL",
                    "min_severity": "High",
                    "events": ["opened", "reopened", "resolved"],
                    "vault_pattern": "kv-prod-*",
                },
                {"name": "dev-slack", "kind": "slack", "url_setting": "KVMON_SLACK_URL"},
                {
                    "name": "siem",
                    "kind": "webhook",
                    "url_setting": "KVMON_HOOK_URL",
                    "secret_setting": "KVMON_HOOK_SECRET",
                    "report_url": "https://reports.example.org/{scan_id}",
                },
            ],
            KVMON_TEAMS_URL=TEAMS_URL,
            KVMON_SLACK_URL=SLACK_URL,
            KVMON_HOOK_URL=HOOK_URL,
            KVMON_HOOK_SECRET="hmac-key-42",
            KVMON_REPORT_URL="https://reports.example.org/latest",
        )
    )
    teams, slack, hook = channels
    assert (teams.name, teams.kind, teams.min_severity) == ("ops-teams", ChannelKind.TEAMS, Severity.HIGH)
    assert teams.events == frozenset({Event.OPENED, Event.RESOLVED})
    assert teams.vault_pattern == "kv-prod-*"
    assert teams.url.reveal() == TEAMS_URL
    assert teams.report_url == "https://reports.example.org/latest"  # the global default
    assert (slack.min_severity, slack.events, slack.vault_pattern, slack.secret) == (
        Severity.INFO,
        ALL_EVENTS,
        "*",
        None,
    )
    assert hook.secret is not None and hook.secret.reveal() == "hmac-key-42"
    assert hook.report_link("scan-9") == "https://reports.example.org/scan-9"
    shown = repr(channels) + str(channels)
    for secret in ("S3cr3tSig", "0a1b2c3d4e5f", "sEcReTtOkEn", "t0ken-abc123", "hmac-key-42"):
        assert secret not in shown


def test_no_setting_means_no_channels() -> None:
    assert load_channels({}) == []
    assert load_channels({"KVMON_CHANNELS": "  "}) == []


@pytest.mark.parametrize(
    ("channels", "settings", "expected"),
    [
        ("not json", {}, "KVMON_CHANNELS: not valid JSON (line 1, column 1: Expecting value)"),
        ({"name": "x"}, {}, "KVMON_CHANNELS: expected a JSON list of channels"),
        (["teams"], {}, "KVMON_CHANNELS: channels[0]: expected a mapping, got 'teams'"),
        (
            [{"name": "a b", "kind": "teams", "url_setting": "U"}],
            {"U": TEAMS_URL},
            "KVMON_CHANNELS: channels[0].name: expected 1-64 letters, digits, dots, hyphens or underscores, got 'a b'",
        ),
        (
            [{"name": "a", "kind": "email", "url_setting": "U"}],
            {"U": TEAMS_URL},
            "KVMON_CHANNELS: channels[0].kind: 'email' is not one of teams, slack, webhook",
        ),
        (
            [{"name": "a", "kind": "teams", "url_setting": "U", "url": TEAMS_URL}],
            {"U": TEAMS_URL},
            "KVMON_CHANNELS: channels[0].url: unknown field",
        ),
        (
            [{"name": "a", "kind": "teams"}],
            {},
            "KVMON_CHANNELS: channels[0].url_setting: required",
        ),
        (
            [{"name": "a", "kind": "teams", "url_setting": "KVMON_TEAMS_URL"}],
            {},
            "KVMON_CHANNELS: channels[0].url_setting: setting KVMON_TEAMS_URL is not set or empty",
        ),
        (
            [{"name": "a", "kind": "teams", "url_setting": "U"}],
            {"U": "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/teams/)"},
            "KVMON_CHANNELS: channels[0].url_setting: setting U is an unresolved Key Vault reference "
            "(check that the app's identity may read the secret)",
        ),
        (
            [{"name": "a", "kind": "teams", "url_setting": "U"}],
            {"U": "http://hooks.example.org/services/SECRETPATH99"},
            "KVMON_CHANNELS: channels[0].url_setting: setting U must be an https URL (plain http only on loopback)",
        ),
        (
            [{"name": "a", "kind": "teams", "url_setting": "U"}],
            {"U": "ftp://x/SECRETPATH99"},
            "KVMON_CHANNELS: channels[0].url_setting: setting U does not hold an http(s) URL",
        ),
        (
            [{"name": "a", "kind": "teams", "url_setting": "U", "secret_setting": "S"}],
            {"U": TEAMS_URL, "S": "k"},
            "KVMON_CHANNELS: channels[0].secret_setting: only webhook channels are signed (teams channels are not)",
        ),
        (
            [{"name": "a", "kind": "webhook", "url_setting": "U", "secret_setting": "S"}],
            {"U": HOOK_URL},
            "KVMON_CHANNELS: channels[0].secret_setting: setting S is not set or empty",
        ),
        (
            [{"name": "a", "kind": "slack", "url_setting": "U", "min_severity": "urgent"}],
            {"U": SLACK_URL},
            "KVMON_CHANNELS: channels[0].min_severity: unknown severity 'urgent': use one of info, low, medium, high, critical",
        ),
        (
            [{"name": "a", "kind": "slack", "url_setting": "U", "events": ["opened", "closed"]}],
            {"U": SLACK_URL},
            "KVMON_CHANNELS: channels[0].events: 'closed' is not one of opened, changed, resolved",
        ),
        (
            [{"name": "a", "kind": "slack", "url_setting": "U", "events": "opened"}],
            {"U": SLACK_URL},
            'KVMON_CHANNELS: channels[0].events: expected a non-empty list such as ["opened", "resolved"]',
        ),
        (
            [{"name": "a", "kind": "slack", "url_setting": "U", "report_url": "reports"}],
            {"U": SLACK_URL},
            "KVMON_CHANNELS: channels[0].report_url: expected an http(s) URL, got 'reports'",
        ),
        (
            [{"name": "a", "kind": "teams", "url_setting": "my url"}],
            {},
            "KVMON_CHANNELS: channels[0].url_setting: expected the name of an app setting "
            "(letters, digits and _), got 'my url'",
        ),
        (
            [{"name": "a", "kind": "slack", "url_setting": "U", "vault_pattern": " "}],
            {"U": SLACK_URL},
            "KVMON_CHANNELS: channels[0].vault_pattern: must not be empty",
        ),
        (
            [{"name": "a", "kind": "slack", "url_setting": "U"}],
            {"U": SLACK_URL, "KVMON_REPORT_URL": "reports"},
            "KVMON_REPORT_URL: expected an http(s) URL, got 'reports'",
        ),
        (
            [
                {"name": "a", "kind": "slack", "url_setting": "U"},
                {"name": "a", "kind": "teams", "url_setting": "U"},
            ],
            {"U": SLACK_URL},
            "KVMON_CHANNELS: channels[1].name: 'a' is used twice",
        ),
    ],
)
def test_bad_settings_give_one_clear_error(channels: Any, settings: dict[str, str], expected: str) -> None:
    raw = channels if isinstance(channels, str) else json.dumps(channels)
    with pytest.raises(ChannelConfigError) as caught:
        load_channels({"KVMON_CHANNELS": raw, **settings})
    assert str(caught.value) == expected
    for secret in ("SECRETPATH99", "S3cr3tSig", "sEcReTtOkEn", "t0ken-abc123"):
        assert secret not in str(caught.value)


def test_plain_http_is_accepted_on_loopback_only() -> None:
    (channel,) = load_channels(
        environ([{"name": "lab", "kind": "webhook", "url_setting": "U"}], U="http://127.0.0.1:8080/hooks/abc")
    )
    assert channel.url.reveal() == "http://127.0.0.1:8080/hooks/abc"


def test_null_filters_mean_the_defaults_and_names_are_case_sensitive() -> None:
    first, second = load_channels(
        environ(
            [
                {"name": "a", "kind": "Slack", "url_setting": "U", "events": None, "vault_pattern": None},
                {"name": "A", "kind": "webhook", "url_setting": "U", "report_url": None},
            ],
            U=f"  {SLACK_URL} ",
        )
    )
    assert (first.kind, first.events, first.vault_pattern) == (ChannelKind.SLACK, ALL_EVENTS, "*")
    assert first.url.reveal() == SLACK_URL and second.report_url is None


def test_an_empty_list_reads_no_other_setting() -> None:
    assert load_channels({"KVMON_CHANNELS": "[]", "KVMON_REPORT_URL": "reports"}) == []
