"""Composition: what each service is sent, within its limits, checked by the services' own rules
(Teams cards by Microsoft's Adaptive Cards parser)."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from monitor.config.channels import ALL_EVENTS, ChannelConfig, ChannelKind, Event
from monitor.config.secret import Secret
from monitor.model import ChangeKind, Severity
from monitor.outputs.notify.compose import (
    SLACK_MAX_BLOCK_CHARACTERS,
    SLACK_MAX_BLOCKS,
    SLACK_MAX_FALLBACK_TEXT,
    SLACK_MAX_HEADER_TEXT,
    SLACK_MAX_SECTION_TEXT,
    TEAMS_CARD_VERSION,
    TEAMS_MAX_BYTES,
    WEBHOOK_MAX_BYTES,
    WEBHOOK_SCHEMA,
    ScanDigest,
    body_bytes,
    compose,
    message_id,
    sample_digest,
    slack_block_characters,
)
from tests.notify.factories import SCAN_TIME, change, many_changes, mixed_changes

REPORT = "https://reports.example.org/kvmon/{scan_id}.html"
PROOF = "KV101 [internet]: admitted from internet (HTTP 404 for a missing secret)"


def channel(kind: ChannelKind, **options: Any) -> ChannelConfig:
    return ChannelConfig(
        name=f"{kind.value}-ops", kind=kind, url=Secret("https://hooks.example.org/x/abc123def"), **options
    )


def digest(changes: list[Any], **options: Any) -> ScanDigest:
    return ScanDigest(
        scan_id="20260301T093000Z-abcd1234", scanned_at=SCAN_TIME, changes=tuple(changes), **options
    )


# Every composition the Teams renderer is exercised with; each card is validated by the parser.
TEAMS_COMPOSITIONS = {
    "sample": lambda: (channel(ChannelKind.TEAMS, report_url=REPORT), sample_digest(now=SCAN_TIME)),
    "one-opened": lambda: (channel(ChannelKind.TEAMS), digest([change(ChangeKind.OPENED)])),
    "mixed-with-report-and-counts": lambda: (
        channel(ChannelKind.TEAMS, report_url=REPORT),
        digest(mixed_changes(), open_by_severity={Severity.CRITICAL: 2, Severity.HIGH: 5, Severity.LOW: 1}),
    ),
    "resolved-only": lambda: (
        channel(ChannelKind.TEAMS, events=frozenset({Event.RESOLVED})),
        digest(mixed_changes()),
    ),
    "changed-downgrade": lambda: (
        channel(ChannelKind.TEAMS),
        digest([change(ChangeKind.CHANGED, severity=Severity.LOW, previous=Severity.CRITICAL)]),
    ),
    "confirmed": lambda: (
        channel(ChannelKind.TEAMS),
        digest([dataclasses.replace(change(ChangeKind.CONFIRMED), confirmed_by=PROOF)]),
    ),
    "no-remediation": lambda: (
        channel(ChannelKind.TEAMS),
        digest([change(ChangeKind.OPENED, remediation="", summary="")]),
    ),
    "truncated-flood": lambda: (channel(ChannelKind.TEAMS, report_url=REPORT), digest(many_changes(400))),
    "huge-single-change": lambda: (
        channel(ChannelKind.TEAMS),
        digest(
            [
                change(
                    ChangeKind.OPENED,
                    summary="*_`<>&" * 3000,
                    title="T" * 5000,
                    remediation="az " + "x" * 9000,
                )
            ]
        ),
    ),
}


def teams_card(payload: dict[str, Any]) -> dict[str, Any]:
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == TEAMS_CARD_VERSION
    return card


def teams_change_lines(card: dict[str, Any]) -> list[str]:
    return [
        item["text"]
        for block in card["body"]
        if block["type"] == "Container"
        for item in block["items"]
        if item["type"] == "TextBlock" and item["text"].startswith("**")
    ]


def omitted_from(text: str) -> int:
    match = re.search(r"and (\d+) more change", text)
    assert match, text
    return int(match.group(1))


def test_every_teams_card_passes_microsofts_adaptive_cards_parser(card_problems: Any) -> None:
    cards = {}
    for name, make in TEAMS_COMPOSITIONS.items():
        target, scan = make()
        payload = compose(target, scan)
        assert payload is not None, name
        assert len(body_bytes(payload)) <= TEAMS_MAX_BYTES, name
        cards[name] = teams_card(payload)
    problems = dict(zip(cards, card_problems(list(cards.values())), strict=True))
    assert problems == {name: [] for name in cards}


def test_the_validator_reports_what_teams_would_not_render(card_problems: Any) -> None:
    """The parser check is not vacuous: newer or unknown elements and bad values are reported."""
    cards = [
        {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "Table", "columns": [], "rows": []}]},
        {
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [{"type": "TextBlock", "text": "x", "style": "heading"}],
        },
        {
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [{"type": "TextBlock", "text": "x", "color": "Purple"}],
        },
        {
            "type": "AdaptiveCard",
            "version": "1.4",
            "actions": [{"type": "Action.OpenUrl", "title": "no url"}],
        },
    ]
    assert all(problems for problems in card_problems(cards))


def test_teams_message_is_a_workflows_envelope_never_a_message_card() -> None:
    target, scan = TEAMS_COMPOSITIONS["mixed-with-report-and-counts"]()
    payload = compose(target, scan)
    assert payload is not None
    assert set(payload) == {"type", "attachments"}
    assert "MessageCard" not in json.dumps(payload)
    card = teams_card(payload)
    text = json.dumps(card)
    for evidence in (
        "internet vantage admitted",
        "caller 20.1.2.3 admitted 42 times",
        "az keyvault update --name kv-prod-1",
    ):
        assert evidence in text
    facts = {fact["title"]: fact["value"] for fact in card["body"][2]["facts"]}
    assert facts == {
        "Opened": "4 (1 critical, 1 high, 1 low, 1 info)",
        "Changed": "1 (1 high)",
        "Resolved": "1 (1 medium)",
        "Open now": "8 (2 critical, 5 high, 1 low)",
    }
    assert card["actions"] == [
        {
            "type": "Action.OpenUrl",
            "title": "Open the report",
            "url": REPORT.replace("{scan_id}", scan.scan_id),
        }
    ]
    vaults = [block["items"][0]["text"] for block in card["body"] if block["type"] == "Container"]
    assert vaults == ["kv-prod-1", "kv-prod-2", "kv-dev-1"]  # the vault with the worst change first


def test_teams_flood_is_truncated_within_the_size_limit_and_says_how_many_more() -> None:
    target, scan = TEAMS_COMPOSITIONS["truncated-flood"]()
    payload = compose(target, scan)
    assert payload is not None
    assert len(body_bytes(payload)) <= TEAMS_MAX_BYTES
    card = teams_card(payload)
    shown = len(teams_change_lines(card))
    assert 0 < shown < 400
    assert omitted_from(card["body"][-1]["text"]) == 400 - shown
    # Counts cover every change, not only those shown.
    facts = {fact["title"]: fact["value"] for fact in card["body"][2]["facts"]}
    assert sum(int(value.split()[0]) for value in facts.values()) == 400
    # The most severe changes are the ones kept.
    assert any("CRITICAL" in line for line in teams_change_lines(card))


def test_slack_message_uses_block_kit_within_slacks_limits() -> None:
    payload = compose(channel(ChannelKind.SLACK, report_url=REPORT), digest(mixed_changes()))
    assert payload is not None
    assert set(payload) == {"text", "blocks"}
    assert payload["text"].startswith("kvmon: 4 opened, 1 changed, 1 resolved")
    types = [block["type"] for block in payload["blocks"]]
    assert types[:4] == ["header", "context", "section", "divider"]
    sections = "\n".join(
        block["text"]["text"] for block in payload["blocks"] if block["type"] == "section" and "text" in block
    )
    assert "*kv-prod-1*" in sections and "caller 20.1.2.3 admitted 42 times" in sections
    assert (
        "`az keyvault update --name kv-prod-1 --resource-group rg-kv-prod-1 --default-action Deny`"
        in sections
    )
    assert "*MEDIUM → HIGH*" in sections
    assert (
        payload["blocks"][-1]["text"]["text"]
        == f"<{REPORT.replace('{scan_id}', '20260301T093000Z-abcd1234')}|Open the report>"
    )


@pytest.mark.parametrize("count", [1, 60, 400])
def test_slack_flood_stays_within_every_limit(count: int) -> None:
    payload = compose(
        channel(ChannelKind.SLACK, report_url=REPORT), digest(many_changes(count, text_size=480))
    )
    assert payload is not None
    blocks = payload["blocks"]
    assert len(blocks) <= SLACK_MAX_BLOCKS
    assert slack_block_characters(payload) <= SLACK_MAX_BLOCK_CHARACTERS
    assert len(payload["text"]) <= SLACK_MAX_FALLBACK_TEXT
    assert len(blocks[0]["text"]["text"]) <= SLACK_MAX_HEADER_TEXT
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= SLACK_MAX_SECTION_TEXT
        if "fields" in block:
            assert len(block["fields"]) <= 10
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
    shown = sum(
        block["text"]["text"].count("\n>")
        for block in blocks
        if block["type"] == "section" and "text" in block
    )
    contexts = [block["elements"][0]["text"] for block in blocks[2:] if block["type"] == "context"]
    if shown == count:
        assert contexts == []
    else:
        assert omitted_from(contexts[0]) == count - shown


def test_slack_text_is_escaped() -> None:
    payload = compose(
        channel(ChannelKind.SLACK), digest([change(ChangeKind.OPENED, summary="a <b> & c", vault="kv-<x>")])
    )
    assert payload is not None
    text = json.dumps(payload["blocks"])
    assert "a &lt;b&gt; &amp; c" in text and "kv-&lt;x&gt;" in text
    assert "<b>" not in text


def test_webhook_document_follows_schema_v1() -> None:
    scan = digest(mixed_changes(), open_by_severity={Severity.HIGH: 3})
    payload = compose(channel(ChannelKind.WEBHOOK, report_url=REPORT), scan)
    assert payload is not None
    assert payload["schema"] == WEBHOOK_SCHEMA
    assert payload["message_id"] == message_id(scan.scan_id, "webhook-ops")
    assert payload["scan"] == {"id": scan.scan_id, "scanned_at": "2026-03-01T09:30:00Z"}
    assert payload["counts"]["opened"] == {"critical": 1, "high": 1, "medium": 0, "low": 1, "info": 1}
    assert payload["open_by_severity"] == {"critical": 0, "high": 3, "medium": 0, "low": 0, "info": 0}
    assert payload["omitted"] == 0
    assert [c["vault"]["name"] for c in payload["changes"]] == ["kv-prod-1"] * 2 + ["kv-prod-2"] + [
        "kv-dev-1"
    ] * 3
    reopened = payload["changes"][0]
    assert (
        reopened["event"] == "opened"
        and reopened["kind"] == "reopened"
        and reopened["severity"] == "critical"
    )
    assert reopened["summary"] == "caller 20.1.2.3 admitted 42 times"
    changed = payload["changes"][2]
    assert changed["previous_severity"] == "medium" and changed["event"] == "changed"
    assert set(reopened) == {
        "event", "kind", "finding_id", "rule_id", "title", "severity", "previous_severity",
        "vault", "subject", "summary", "remediation", "confirmed_by",
    }  # fmt: skip


def test_webhook_flood_is_truncated_with_omitted_count() -> None:
    payload = compose(channel(ChannelKind.WEBHOOK), digest(many_changes(400)))
    assert payload is not None
    assert len(body_bytes(payload)) <= WEBHOOK_MAX_BYTES
    assert payload["omitted"] > 0
    assert len(payload["changes"]) + payload["omitted"] == 400
    assert sum(sum(by_severity.values()) for by_severity in payload["counts"].values()) == 400


def test_filters_choose_what_each_channel_is_told() -> None:
    changes = mixed_changes()
    high = compose(channel(ChannelKind.WEBHOOK, min_severity=Severity.HIGH), digest(changes))
    assert high is not None
    assert sorted(c["rule_id"] for c in high["changes"]) == ["KV001", "KV003", "KV201"]
    opened = compose(channel(ChannelKind.WEBHOOK, events=frozenset({Event.OPENED})), digest(changes))
    assert opened is not None
    assert {c["kind"] for c in opened["changes"]} == {"opened", "reopened"}  # reopened counts as opened
    prod = compose(channel(ChannelKind.WEBHOOK, vault_pattern="KV-PROD-*"), digest(changes))
    assert prod is not None
    assert {c["vault"]["name"] for c in prod["changes"]} == {"kv-prod-1", "kv-prod-2"}
    assert compose(channel(ChannelKind.WEBHOOK, vault_pattern="kv-test-*"), digest(changes)) is None
    assert compose(channel(ChannelKind.TEAMS), digest([])) is None


def test_a_downgrade_reaches_channels_that_followed_the_old_severity() -> None:
    downgrade = change(ChangeKind.CHANGED, severity=Severity.LOW, previous=Severity.CRITICAL)
    target = channel(ChannelKind.WEBHOOK, min_severity=Severity.HIGH, events=ALL_EVENTS)
    payload = compose(target, digest([downgrade]))
    assert payload is not None and payload["changes"][0]["previous_severity"] == "critical"


def test_message_ids_are_deterministic_per_scan_and_channel() -> None:
    assert message_id("scan-1", "ops") == message_id("scan-1", "ops")
    assert len({message_id("scan-1", "ops"), message_id("scan-2", "ops"), message_id("scan-1", "sec")}) == 3


def test_a_confirmation_says_which_probe_proved_the_finding_in_every_format() -> None:
    confirmed = dataclasses.replace(change(ChangeKind.CONFIRMED), confirmed_by=PROOF)
    teams = json.dumps(compose(channel(ChannelKind.TEAMS), digest([confirmed])))
    slack = compose(channel(ChannelKind.SLACK), digest([confirmed]))
    webhook = compose(channel(ChannelKind.WEBHOOK), digest([confirmed]))
    assert webhook is not None and slack is not None

    assert "**Confirmed**" in teams and f"Confirmed by the probes: {PROOF}" in teams
    assert "*Confirmed*" in json.dumps(slack) and f"Confirmed by the probes: {PROOF}" in json.dumps(slack)
    (line,) = webhook["changes"]
    assert (line["event"], line["kind"], line["confirmed_by"]) == ("changed", "confirmed", PROOF)
    # A channel told only openings and resolutions is not told a confirmation.
    assert (
        compose(channel(ChannelKind.WEBHOOK, events=frozenset({Event.OPENED})), digest([confirmed])) is None
    )
