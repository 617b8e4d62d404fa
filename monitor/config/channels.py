"""Notification channels from settings.

``KVMON_CHANNELS`` holds a JSON list that names each channel, its kind and its filters; the
webhook URL (and a webhook's signing secret) each sit in a setting of their own that the entry
names, so that in Azure they can be Key Vault references while the list stays plain text::

    KVMON_CHANNELS='[{"name": "ops", "kind": "teams", "url_setting": "KVMON_TEAMS_URL",
                      "min_severity": "high", "events": ["opened", "resolved"],
                      "vault_pattern": "kv-prod-*", "report_url": "https://reports.example/{scan_id}"}]'
    KVMON_TEAMS_URL='https://prod-00.westeurope.logic.azure.com/workflows/...'
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from monitor.config.secret import Secret
from monitor.errors import ConfigurationError
from monitor.model import ChangeKind, FindingChange, Severity

CHANNELS_SETTING = "KVMON_CHANNELS"
REPORT_URL_SETTING = "KVMON_REPORT_URL"  # the report link of channels that do not name their own


class ChannelKind(StrEnum):
    TEAMS = "teams"  # a Teams Workflows webhook ("When a Teams webhook request is received")
    SLACK = "slack"  # a Slack incoming webhook
    WEBHOOK = "webhook"  # any HTTPS endpoint taking kvmon's documented JSON schema


class Event(StrEnum):
    """What a channel can subscribe to; a reopened finding is told as opened."""

    OPENED = "opened"
    CHANGED = "changed"
    RESOLVED = "resolved"

    @classmethod
    def of(cls, kind: ChangeKind) -> Event:
        return _EVENT_OF_CHANGE[kind]


_EVENT_OF_CHANGE = {
    ChangeKind.OPENED: Event.OPENED,
    ChangeKind.REOPENED: Event.OPENED,
    ChangeKind.CHANGED: Event.CHANGED,
    ChangeKind.RESOLVED: Event.RESOLVED,
}

ALL_EVENTS = frozenset(Event)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_FIELDS = frozenset(
    {"name", "kind", "url_setting", "secret_setting", "min_severity", "events", "vault_pattern", "report_url"}
)


class ChannelConfigError(ConfigurationError):
    """The channel settings are wrong; the message names the setting and the field."""


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    kind: ChannelKind
    url: Secret
    min_severity: Severity = Severity.INFO
    events: frozenset[Event] = ALL_EVENTS
    vault_pattern: str = "*"  # a glob over vault names, case-insensitive
    secret: Secret | None = None  # HMAC-SHA256 signing key (webhook channels)
    report_url: str | None = None  # may contain {scan_id}
    url_setting: str = field(default="", compare=False)  # where the URL came from, for messages

    def wants(self, change: FindingChange) -> bool:
        """Whether this channel is told about ``change``."""
        if Event.of(change.kind) not in self.events:
            return False
        severity = change.finding.severity
        if change.previous_severity is not None and change.previous_severity.rank > severity.rank:
            severity = change.previous_severity  # a downgrade from a level the channel follows
        if severity.rank < self.min_severity.rank:
            return False
        return fnmatch.fnmatchcase(change.finding.vault_name.lower(), self.vault_pattern.lower())

    def report_link(self, scan_id: str) -> str | None:
        if not self.report_url:
            return None
        return self.report_url.replace("{scan_id}", scan_id)

    @property
    def secrets(self) -> tuple[Secret, ...]:
        return (self.url,) if self.secret is None else (self.url, self.secret)


def load_channels(environ: Mapping[str, str]) -> list[ChannelConfig]:
    """The channels configured in ``environ``; none when ``KVMON_CHANNELS`` is unset or empty.

    Raises ``ChannelConfigError`` naming the setting, the entry and the field; never quoting a
    URL or secret."""
    text = (environ.get(CHANNELS_SETTING) or "").strip()
    if not text:
        return []
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChannelConfigError(
            f"{CHANNELS_SETTING}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(entries, list):
        raise ChannelConfigError(f"{CHANNELS_SETTING}: expected a JSON list of channels")
    channels: list[ChannelConfig] = []
    for index, entry in enumerate(entries, start=1):
        channel = _channel(entry, index, environ, default_report_url=_default_report_url(environ))
        if any(existing.name == channel.name for existing in channels):
            raise ChannelConfigError(
                f"{CHANNELS_SETTING}[{index}]: field 'name': {channel.name!r} is used twice"
            )
        channels.append(channel)
    return channels


def _default_report_url(environ: Mapping[str, str]) -> str | None:
    value = (environ.get(REPORT_URL_SETTING) or "").strip()
    if value and not _is_http_url(value):
        raise ChannelConfigError(f"{REPORT_URL_SETTING}: expected an http(s) URL, got {value!r}")
    return value or None


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value.replace("{scan_id}", "scan"))
    return parts.scheme in ("https", "http") and bool(parts.hostname)


def _channel(
    entry: Any, index: int, environ: Mapping[str, str], *, default_report_url: str | None
) -> ChannelConfig:
    where = f"{CHANNELS_SETTING}[{index}]"
    if not isinstance(entry, dict):
        raise ChannelConfigError(f"{where}: expected an object with name, kind and url_setting")
    name = entry.get("name")
    if isinstance(name, str) and _NAME.fullmatch(name):
        where = f"{where} ({name})"
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise ChannelConfigError(
            f"{where}: unknown field {unknown[0]!r}; known fields: {', '.join(sorted(_FIELDS))}"
        )
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ChannelConfigError(
            f"{where}: field 'name': expected letters, digits, '.', '_' or '-' (at most 64), got {name!r}"
        )
    kind_text = entry.get("kind")
    try:
        kind = ChannelKind(str(kind_text).strip().lower())
    except ValueError:
        accepted = ", ".join(k.value for k in ChannelKind)
        raise ChannelConfigError(f"{where}: field 'kind': {kind_text!r} is not one of {accepted}") from None
    url_setting = _setting_name(entry, "url_setting", where, required=True)
    assert url_setting is not None
    url = _url_from(environ, url_setting, where)
    secret_setting = _setting_name(entry, "secret_setting", where, required=False)
    secret: Secret | None = None
    if secret_setting is not None:
        if kind is not ChannelKind.WEBHOOK:
            raise ChannelConfigError(
                f"{where}: field 'secret_setting': only webhook channels are signed ({kind.value} channels are not)"
            )
        secret = Secret(_setting_value(environ, secret_setting, where, "secret_setting"))
    try:
        min_severity = Severity.parse(entry.get("min_severity", "info"))
    except ValueError as exc:
        raise ChannelConfigError(f"{where}: field 'min_severity': {exc}") from None
    return ChannelConfig(
        name=name,
        kind=kind,
        url=url,
        min_severity=min_severity,
        events=_events(entry.get("events"), where),
        vault_pattern=_text_field(entry, "vault_pattern", where) or "*",
        secret=secret,
        report_url=_report_url(entry, where) or default_report_url,
        url_setting=url_setting,
    )


def _setting_name(entry: dict[str, Any], field_name: str, where: str, *, required: bool) -> str | None:
    value = entry.get(field_name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ChannelConfigError(
            f"{where}: field {field_name!r}: expected the name of the setting that holds the value "
            f"(e.g. KVMON_TEAMS_URL), got {value!r}"
        )
    return value


def _setting_value(environ: Mapping[str, str], setting: str, where: str, field_name: str) -> str:
    value = (environ.get(setting) or "").strip()
    if not value:
        raise ChannelConfigError(f"{where}: field {field_name!r}: setting {setting} is not set or empty")
    if value.startswith("@Microsoft.KeyVault("):
        raise ChannelConfigError(
            f"{where}: field {field_name!r}: setting {setting} is an unresolved Key Vault reference "
            "(check that the app's identity may read the secret)"
        )
    return value


def _url_from(environ: Mapping[str, str], setting: str, where: str) -> Secret:
    value = _setting_value(environ, setting, where, "url_setting")
    # The message never quotes the value: it is the credential.
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ChannelConfigError(
            f"{where}: field 'url_setting': setting {setting} does not hold an http(s) URL"
        )
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ChannelConfigError(
            f"{where}: field 'url_setting': setting {setting} must be an https URL (plain http only on loopback)"
        )
    return Secret(value)


def _loopback(hostname: str) -> bool:
    return hostname == "localhost" or hostname == "::1" or hostname.startswith("127.")


def _events(value: Any, where: str) -> frozenset[Event]:
    if value is None:
        return ALL_EVENTS
    if isinstance(value, str) or not isinstance(value, list) or not value:
        raise ChannelConfigError(
            f'{where}: field \'events\': expected a non-empty list such as ["opened", "resolved"]'
        )
    events: set[Event] = set()
    for item in value:
        text = str(item).strip().lower()
        if text == "reopened":
            text = Event.OPENED.value
        try:
            events.add(Event(text))
        except ValueError:
            accepted = ", ".join(e.value for e in Event)
            raise ChannelConfigError(f"{where}: field 'events': {item!r} is not one of {accepted}") from None
    return frozenset(events)


def _text_field(entry: dict[str, Any], field_name: str, where: str) -> str | None:
    value = entry.get(field_name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ChannelConfigError(f"{where}: field {field_name!r}: expected a non-empty text, got {value!r}")
    return value.strip()


def _report_url(entry: dict[str, Any], where: str) -> str | None:
    value = _text_field(entry, "report_url", where)
    if value is not None and not _is_http_url(value):
        raise ChannelConfigError(f"{where}: field 'report_url': expected an http(s) URL, got {value!r}")
    return value
