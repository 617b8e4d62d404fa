"""What each channel is told about a scan: pure composition, no I/O, no clock.

One scan gives at most one message per channel: the changes the channel's filters let through,
grouped by vault, with counts by severity, each change's decisive evidence and the command that
fixes it. Each service gets its own format (Teams: an Adaptive Card in the Workflows message
envelope; Slack: Block Kit; anything else: kvmon's versioned JSON schema) and its own size
limits: when the changes do not fit, the least severe are left out and the message says how many.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.config.channels import ChannelConfig, ChannelKind, Event
from monitor.model import ChangeKind, Finding, FindingChange, Severity

WEBHOOK_SCHEMA = "kvmon.notification/v1"

# Teams renders Adaptive Cards up to 1.5 on desktop and web; 1.4 is also what the mobile clients
# and the Workflows "Post card" action render, and the card below needs nothing newer.
TEAMS_CARD_VERSION = "1.4"
# Teams refuses messages over about 28 KB; keep room for the envelope Workflows adds.
TEAMS_MAX_BYTES = 27_000
# Slack: at most 50 blocks, 3,000 characters per section text, 150 per header, 10 fields of
# 2,000; messages whose blocks hold more than about 13,000 characters in all are refused
# (msg_blocks_too_long), so kvmon stays under 11,000.
SLACK_MAX_BLOCKS = 50
SLACK_MAX_SECTION_TEXT = 3_000
SLACK_MAX_HEADER_TEXT = 150
SLACK_MAX_FIELD_TEXT = 2_000
SLACK_MAX_BLOCK_CHARACTERS = 11_000
SLACK_MAX_FALLBACK_TEXT = 3_000
# The generic webhook promises receivers at most this many bytes (docs/webhook-schema.md); it
# also keeps the outbox entity well inside Table storage's 64 KiB string property.
WEBHOOK_MAX_BYTES = 28_000

# One change never takes more than this much room, whatever a rule writes.
MAX_TITLE = 200
MAX_SUMMARY = 500
MAX_REMEDIATION = 800

_EVENT_ORDER = {Event.OPENED: 0, Event.CHANGED: 1, Event.RESOLVED: 2}
_LABEL = {
    ChangeKind.OPENED: "Opened",
    ChangeKind.REOPENED: "Reopened",
    ChangeKind.CHANGED: "Changed",
    ChangeKind.RESOLVED: "Resolved",
    ChangeKind.CONFIRMED: "Confirmed",
}
_SEVERITIES_DOWN = tuple(sorted(Severity, key=lambda s: s.rank, reverse=True))


@dataclass(frozen=True)
class ScanDigest:
    """What a scan has to tell: its changes plus, for context, the open findings by severity."""

    scan_id: str
    scanned_at: dt.datetime
    changes: tuple[FindingChange, ...] = ()
    open_by_severity: Mapping[Severity, int] = field(default_factory=dict)
    sample: bool = False  # a wiring check from ``kvmon notify-test``, not a real scan

    @functools.cached_property
    def lines(self) -> tuple[ChangeLine, ...]:
        """Every change as the formats show it, in the order of ``changes``: worked out once for
        all channels (a first scan of a large estate has a change per finding)."""
        return tuple(_line(change) for change in self.changes)


@dataclass(frozen=True)
class ChangeLine:
    """One change as every format shows it (texts already clipped to their room)."""

    event: Event
    kind: ChangeKind
    finding_id: str
    rule_id: str
    title: str
    severity: Severity
    previous_severity: Severity | None
    vault_id: str
    vault_name: str
    subject: str
    summary: str
    remediation: str
    confirmed_by: str | None = None  # the probe finding that proves this one's exposure

    @property
    def label(self) -> str:
        return _LABEL[self.kind]

    @property
    def confirmation(self) -> str | None:
        return f"Confirmed by the probes: {self.confirmed_by}" if self.confirmed_by else None


@dataclass(frozen=True)
class Notification:
    """One channel's share of one scan, before it is put in a service's format."""

    channel: str
    message_id: str
    scan_id: str
    scanned_at: dt.datetime
    lines: tuple[ChangeLine, ...]  # grouped by vault, most severe vault first
    counts: Mapping[Event, Mapping[Severity, int]]  # of every line, shown or not
    open_by_severity: Mapping[Severity, int]
    report_link: str | None
    sample: bool = False

    @property
    def headline(self) -> str:
        parts = [
            f"{sum(self.counts[event].values())} {event.value}"
            for event in Event
            if sum(self.counts[event].values())
        ]
        prefix = "kvmon test message" if self.sample else "kvmon"
        return f"{prefix}: {', '.join(parts) or 'no changes'} (scan {self.scan_id})"


def message_id(scan_id: str, channel_name: str) -> str:
    """Deterministic, so that enqueuing the same scan for the same channel twice stores it once."""
    return hashlib.sha256(f"kvmon-notification\n{scan_id}\n{channel_name}".encode()).hexdigest()[:32]


def select(channel: ChannelConfig, digest: ScanDigest) -> Notification | None:
    """The changes ``channel`` is told about, or None when there are none."""
    lines = [line for change, line in zip(digest.changes, digest.lines, strict=True) if channel.wants(change)]
    if not lines:
        return None
    worst: dict[str, int] = {}
    for line in lines:
        worst[line.vault_id.lower()] = max(worst.get(line.vault_id.lower(), 0), line.severity.rank)
    lines.sort(
        key=lambda line: (
            -worst[line.vault_id.lower()],
            line.vault_name.lower(),
            line.vault_id.lower(),
            _EVENT_ORDER[line.event],
            -line.severity.rank,
            line.rule_id,
            line.subject,
        )
    )
    counts = {event: {severity: 0 for severity in _SEVERITIES_DOWN} for event in Event}
    for line in lines:
        counts[line.event][line.severity] += 1
    return Notification(
        channel=channel.name,
        message_id=message_id(digest.scan_id, channel.name),
        scan_id=digest.scan_id,
        scanned_at=digest.scanned_at,
        lines=tuple(lines),
        counts=counts,
        open_by_severity=dict(digest.open_by_severity),
        report_link=channel.report_link(digest.scan_id),
        sample=digest.sample,
    )


def render(kind: ChannelKind, notification: Notification) -> dict[str, Any]:
    """The exact JSON body to POST to a channel of ``kind``."""
    return _RENDERERS[kind](notification)


def compose(channel: ChannelConfig, digest: ScanDigest) -> dict[str, Any] | None:
    notification = select(channel, digest)
    return None if notification is None else render(channel.kind, notification)


def body_bytes(payload: Mapping[str, Any]) -> bytes:
    """The bytes sent for ``payload`` (what size limits and signatures are computed over)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def open_counts(findings: Iterable[Finding]) -> dict[Severity, int]:
    """Open (not suppressed) findings by severity."""
    counts: dict[Severity, int] = {}
    for finding in findings:
        if not finding.suppressed:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------
# Fitting: show as many lines as the format allows, then say how many were left out.
# ---------------------------------------------------------------------------------------------


def _fit(
    lines: Sequence[ChangeLine],
    build: Callable[[Sequence[ChangeLine], int], dict[str, Any]],
    fits: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    """The payload with the longest prefix of ``lines`` that fits (lines are most severe first)."""
    payload = build(lines, 0)
    if fits(payload):
        return payload
    low, high = 0, len(lines) - 1  # ``low`` lines always fit (the frame alone is small)
    best = build(lines[:0], len(lines))
    while low < high:
        middle = (low + high + 1) // 2
        candidate = build(lines[:middle], len(lines) - middle)
        if fits(candidate):
            low, best = middle, candidate
        else:
            high = middle - 1
    return best


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split()) if "\n" not in text else text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _line(change: FindingChange) -> ChangeLine:
    finding = change.finding
    return ChangeLine(
        event=Event.of(change.kind),
        kind=change.kind,
        finding_id=finding.id,
        rule_id=finding.rule_id,
        title=_clip(finding.title, MAX_TITLE),
        severity=finding.severity,
        previous_severity=change.previous_severity,
        vault_id=finding.vault_id,
        vault_name=finding.vault_name,
        subject=_clip(finding.subject, MAX_TITLE),
        summary=_clip(finding.summary, MAX_SUMMARY),
        remediation=_clip(finding.remediation, MAX_REMEDIATION),
        confirmed_by=_clip(change.confirmed_by, MAX_SUMMARY) if change.confirmed_by else None,
    )


def _by_vault(lines: Sequence[ChangeLine]) -> list[list[ChangeLine]]:
    groups: list[list[ChangeLine]] = []
    for line in lines:
        if groups and groups[-1][0].vault_id.lower() == line.vault_id.lower():
            groups[-1].append(line)
        else:
            groups.append([line])
    return groups


def _count_text(counts: Mapping[Severity, int]) -> str:
    total = sum(counts.values())
    detail = ", ".join(f"{counts[s]} {s.value}" for s in _SEVERITIES_DOWN if counts.get(s))
    return f"{total} ({detail})" if detail else "0"


def _when(moment: dt.datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _severity_change(line: ChangeLine) -> str:
    if line.previous_severity is not None and line.previous_severity != line.severity:
        return f"{line.previous_severity.value} → {line.severity.value}"
    return line.severity.value


def _more(omitted: int) -> str:
    noun = "change" if omitted == 1 else "changes"
    return f"… and {omitted} more {noun} (see the report for all)"


# ---------------------------------------------------------------------------------------------
# Teams: an Adaptive Card in the Workflows message envelope (never an Office 365 MessageCard).
# ---------------------------------------------------------------------------------------------

_TEAMS_COLOR = {
    Severity.CRITICAL: "Attention",
    Severity.HIGH: "Attention",
    Severity.MEDIUM: "Warning",
    Severity.LOW: "Accent",
    Severity.INFO: "Default",
}


def render_teams(notification: Notification) -> dict[str, Any]:
    return _fit(
        notification.lines,
        lambda lines, omitted: _teams_envelope(notification, lines, omitted),
        lambda payload: len(body_bytes(payload)) <= TEAMS_MAX_BYTES,
    )


def _teams_envelope(notification: Notification, lines: Sequence[ChangeLine], omitted: int) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": _teams_card(notification, lines, omitted),
            }
        ],
    }


def _teams_card(notification: Notification, lines: Sequence[ChangeLine], omitted: int) -> dict[str, Any]:
    title = "kvmon test message" if notification.sample else "kvmon: Key Vault network exposure"
    facts = [
        {"title": event.value.capitalize(), "value": _count_text(notification.counts[event])}
        for event in Event
        if sum(notification.counts[event].values())
    ]
    if notification.open_by_severity:
        facts.append({"title": "Open now", "value": _count_text(notification.open_by_severity)})
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title, "size": "Large", "weight": "Bolder", "wrap": True},
        {
            "type": "TextBlock",
            "text": f"Scan {notification.scan_id} · {_when(notification.scanned_at)}",
            "isSubtle": True,
            "spacing": "None",
            "wrap": True,
        },
        {"type": "FactSet", "facts": facts},
    ]
    for group in _by_vault(lines):
        items: list[dict[str, Any]] = [
            {
                "type": "TextBlock",
                "text": group[0].vault_name,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            }
        ]
        for line in group:
            items.extend(_teams_line(line))
        body.append({"type": "Container", "separator": True, "spacing": "Medium", "items": items})
    if omitted:
        body.append(
            {"type": "TextBlock", "text": _more(omitted), "isSubtle": True, "wrap": True, "separator": True}
        )
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": TEAMS_CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    if notification.report_link:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open the report", "url": notification.report_link}
        ]
    return card


def _teams_line(line: ChangeLine) -> list[dict[str, Any]]:
    color = "Good" if line.event is Event.RESOLVED else _TEAMS_COLOR[line.severity]
    blocks: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": f"**{line.label}** · {_severity_change(line).upper()} · {line.rule_id} {line.title}",
            "color": color,
            "wrap": True,
            "spacing": "Small",
        }
    ]
    if line.summary:
        blocks.append({"type": "TextBlock", "text": line.summary, "wrap": True, "spacing": "None"})
    if line.confirmation:
        blocks.append(
            {
                "type": "TextBlock",
                "text": line.confirmation,
                "weight": "Bolder",
                "wrap": True,
                "spacing": "None",
            }
        )
    if line.remediation and line.event is not Event.RESOLVED:
        blocks.append(
            {
                "type": "TextBlock",
                "text": line.remediation,
                "fontType": "Monospace",
                "size": "Small",
                "isSubtle": True,
                "wrap": True,
                "spacing": "None",
            }
        )
    return blocks


# ---------------------------------------------------------------------------------------------
# Slack: Block Kit for an incoming webhook.
# ---------------------------------------------------------------------------------------------

_SLACK_MARK = {
    Severity.CRITICAL: ":red_circle:",
    Severity.HIGH: ":large_orange_circle:",
    Severity.MEDIUM: ":large_yellow_circle:",
    Severity.LOW: ":large_blue_circle:",
    Severity.INFO: ":white_circle:",
}


def render_slack(notification: Notification) -> dict[str, Any]:
    return _fit(
        notification.lines, lambda lines, omitted: _slack_message(notification, lines, omitted), _slack_fits
    )


def slack_block_characters(payload: Mapping[str, Any]) -> int:
    """The characters of text in a message's blocks (what Slack's overall limit counts)."""

    def walk(value: Any) -> int:
        if isinstance(value, dict):
            return sum(len(v) if k == "text" and isinstance(v, str) else walk(v) for k, v in value.items())
        if isinstance(value, list):
            return sum(walk(v) for v in value)
        return 0

    return walk(payload.get("blocks", []))


def _slack_fits(payload: dict[str, Any]) -> bool:
    return (
        len(payload["blocks"]) <= SLACK_MAX_BLOCKS
        and slack_block_characters(payload) <= SLACK_MAX_BLOCK_CHARACTERS
    )


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_message(notification: Notification, lines: Sequence[ChangeLine], omitted: int) -> dict[str, Any]:
    title = "kvmon test message" if notification.sample else "kvmon: Key Vault network exposure"
    fields = [
        {"type": "mrkdwn", "text": f"*{event.value.capitalize()}*\n{_count_text(notification.counts[event])}"}
        for event in Event
        if sum(notification.counts[event].values())
    ]
    if notification.open_by_severity:
        fields.append({"type": "mrkdwn", "text": f"*Open now*\n{_count_text(notification.open_by_severity)}"})
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(title, SLACK_MAX_HEADER_TEXT), "emoji": True},
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"Scan `{_slack_escape(notification.scan_id)}` · {_when(notification.scanned_at)}",
                }
            ],
        },
        {
            "type": "section",
            "fields": [{**f, "text": _clip(f["text"], SLACK_MAX_FIELD_TEXT)} for f in fields[:10]],
        },
        {"type": "divider"},
    ]
    for group in _by_vault(lines):
        heading = f"*{_slack_escape(group[0].vault_name)}*"
        text = heading
        for line in group:
            entry = _slack_line(line)
            if len(text) + 1 + len(entry) > SLACK_MAX_SECTION_TEXT:
                blocks.append(_slack_section(text))
                text = f"{heading} (continued)"
            text = f"{text}\n{entry}"
        blocks.append(_slack_section(text))
    if omitted:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(_more(omitted))}]}
        )
    if notification.report_link:
        blocks.append(_slack_section(f"<{notification.report_link}|Open the report>"))
    return {"text": _clip(notification.headline, SLACK_MAX_FALLBACK_TEXT), "blocks": blocks}


def _slack_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SLACK_MAX_SECTION_TEXT)}}


def _slack_line(line: ChangeLine) -> str:
    mark = ":white_check_mark:" if line.event is Event.RESOLVED else _SLACK_MARK[line.severity]
    text = (
        f"{mark} *{line.label}* · *{_severity_change(line).upper()}* · "
        f"`{line.rule_id}` {_slack_escape(line.title)}"
    )
    if line.summary:
        text += f"\n>{_slack_escape(line.summary)}"
    if line.confirmation:
        text += f"\n>*{_slack_escape(line.confirmation)}*"
    if line.remediation and line.event is not Event.RESOLVED:
        command = line.remediation.replace("`", "'")
        text += f"\n`{_slack_escape(command)}`"
    return text


# ---------------------------------------------------------------------------------------------
# Generic webhook: kvmon.notification/v1 (docs/webhook-schema.md).
# ---------------------------------------------------------------------------------------------


def render_webhook(notification: Notification) -> dict[str, Any]:
    return _fit(
        notification.lines,
        lambda lines, omitted: _webhook_document(notification, lines, omitted),
        lambda payload: len(body_bytes(payload)) <= WEBHOOK_MAX_BYTES,
    )


def _severity_map(counts: Mapping[Severity, int]) -> dict[str, int]:
    return {severity.value: int(counts.get(severity, 0)) for severity in _SEVERITIES_DOWN}


def _webhook_document(
    notification: Notification, lines: Sequence[ChangeLine], omitted: int
) -> dict[str, Any]:
    scanned_at = notification.scanned_at
    if scanned_at.tzinfo is not None:
        scanned_at = scanned_at.astimezone(dt.UTC)
    return {
        "schema": WEBHOOK_SCHEMA,
        "message_id": notification.message_id,
        "channel": notification.channel,
        "sample": notification.sample,
        "scan": {"id": notification.scan_id, "scanned_at": scanned_at.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "counts": {event.value: _severity_map(notification.counts[event]) for event in Event},
        "open_by_severity": _severity_map(notification.open_by_severity)
        if notification.open_by_severity
        else None,
        "changes": [
            {
                "event": line.event.value,
                "kind": line.kind.value,
                "finding_id": line.finding_id,
                "rule_id": line.rule_id,
                "title": line.title,
                "severity": line.severity.value,
                "previous_severity": line.previous_severity.value if line.previous_severity else None,
                "vault": {"id": line.vault_id, "name": line.vault_name},
                "subject": line.subject,
                "summary": line.summary,
                "remediation": line.remediation,
                "confirmed_by": line.confirmed_by,
            }
            for line in lines
        ],
        "omitted": omitted,
        "report_url": notification.report_link,
    }


_RENDERERS: dict[ChannelKind, Callable[[Notification], dict[str, Any]]] = {
    ChannelKind.TEAMS: render_teams,
    ChannelKind.SLACK: render_slack,
    ChannelKind.WEBHOOK: render_webhook,
}


# ---------------------------------------------------------------------------------------------
# The sample ``kvmon notify-test`` sends.
# ---------------------------------------------------------------------------------------------


def sample_digest(*, now: dt.datetime) -> ScanDigest:
    """A made-up scan with one change of each kind, so every part of a message shows."""
    vault_id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-sample/providers/Microsoft.KeyVault/vaults/kv-sample"
    opened = Finding(
        rule_id="KV001",
        severity=Severity.HIGH,
        title="Public network access is open to every address",
        vault_id=vault_id,
        vault_name="kv-sample",
        summary="sample: internet vantage admitted",
        remediation="az keyvault update --name kv-sample --resource-group rg-sample --default-action Deny",
    )
    changed = Finding(
        rule_id="KV201",
        severity=Severity.HIGH,
        title="Public caller reached the vault",
        vault_id=vault_id,
        vault_name="kv-sample",
        subject="20.0.0.1",
        summary="sample: caller 20.0.0.1 admitted 42 times",
        remediation="az keyvault network-rule remove --name kv-sample --resource-group rg-sample --ip-address 20.0.0.1",
    )
    resolved = Finding(
        rule_id="KV009",
        severity=Severity.MEDIUM,
        title="Private endpoint connection is not healthy",
        vault_id=vault_id,
        vault_name="kv-sample",
        subject="pe-sample",
        summary="sample: connection pe-sample is Approved again",
    )
    return ScanDigest(
        scan_id=f"notify-test-{(now.astimezone(dt.UTC) if now.tzinfo else now).strftime('%Y%m%dT%H%M%SZ')}",
        scanned_at=now,
        changes=(
            FindingChange(kind=ChangeKind.OPENED, finding=opened),
            FindingChange(kind=ChangeKind.CHANGED, finding=changed, previous_severity=Severity.MEDIUM),
            FindingChange(kind=ChangeKind.RESOLVED, finding=resolved),
        ),
        sample=True,
    )
